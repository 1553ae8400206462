from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LinkStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINK_STATUS_UNSPECIFIED: _ClassVar[LinkStatus]
    LINK_STATUS_ACTIVE: _ClassVar[LinkStatus]
    LINK_STATUS_PASSIVE: _ClassVar[LinkStatus]
    LINK_STATUS_OFF: _ClassVar[LinkStatus]
LINK_STATUS_UNSPECIFIED: LinkStatus
LINK_STATUS_ACTIVE: LinkStatus
LINK_STATUS_PASSIVE: LinkStatus
LINK_STATUS_OFF: LinkStatus

class QkdLinkState(_message.Message):
    __slots__ = ("link_id", "peer_node", "skr_bps", "stored_bits", "consumption_bps", "status", "kms_kind", "peer_stored_bits", "alarm", "qber")
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_NODE_FIELD_NUMBER: _ClassVar[int]
    SKR_BPS_FIELD_NUMBER: _ClassVar[int]
    STORED_BITS_FIELD_NUMBER: _ClassVar[int]
    CONSUMPTION_BPS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KMS_KIND_FIELD_NUMBER: _ClassVar[int]
    PEER_STORED_BITS_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    QBER_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    peer_node: str
    skr_bps: float
    stored_bits: int
    consumption_bps: float
    status: LinkStatus
    kms_kind: str
    peer_stored_bits: int
    alarm: str
    qber: float
    def __init__(self, link_id: _Optional[str] = ..., peer_node: _Optional[str] = ..., skr_bps: _Optional[float] = ..., stored_bits: _Optional[int] = ..., consumption_bps: _Optional[float] = ..., status: _Optional[_Union[LinkStatus, str]] = ..., kms_kind: _Optional[str] = ..., peer_stored_bits: _Optional[int] = ..., alarm: _Optional[str] = ..., qber: _Optional[float] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("node_id", "relay_addr", "etsi014_url", "etsi004_addr", "data_ip", "trust_level", "links", "saes", "agent_version")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RELAY_ADDR_FIELD_NUMBER: _ClassVar[int]
    ETSI014_URL_FIELD_NUMBER: _ClassVar[int]
    ETSI004_ADDR_FIELD_NUMBER: _ClassVar[int]
    DATA_IP_FIELD_NUMBER: _ClassVar[int]
    TRUST_LEVEL_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    SAES_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    relay_addr: str
    etsi014_url: str
    etsi004_addr: str
    data_ip: str
    trust_level: int
    links: _containers.RepeatedCompositeFieldContainer[QkdLinkState]
    saes: _containers.RepeatedScalarFieldContainer[str]
    agent_version: str
    def __init__(self, node_id: _Optional[str] = ..., relay_addr: _Optional[str] = ..., etsi014_url: _Optional[str] = ..., etsi004_addr: _Optional[str] = ..., data_ip: _Optional[str] = ..., trust_level: _Optional[int] = ..., links: _Optional[_Iterable[_Union[QkdLinkState, _Mapping]]] = ..., saes: _Optional[_Iterable[str]] = ..., agent_version: _Optional[str] = ...) -> None: ...

class LinkReport(_message.Message):
    __slots__ = ("links", "threshold_crossed")
    LINKS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_CROSSED_FIELD_NUMBER: _ClassVar[int]
    links: _containers.RepeatedCompositeFieldContainer[QkdLinkState]
    threshold_crossed: bool
    def __init__(self, links: _Optional[_Iterable[_Union[QkdLinkState, _Mapping]]] = ..., threshold_crossed: _Optional[bool] = ...) -> None: ...

class AuthorisationAck(_message.Message):
    __slots__ = ("path_id",)
    PATH_ID_FIELD_NUMBER: _ClassVar[int]
    path_id: str
    def __init__(self, path_id: _Optional[str] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("register", "report", "auth_ack")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    AUTH_ACK_FIELD_NUMBER: _ClassVar[int]
    register: Register
    report: LinkReport
    auth_ack: AuthorisationAck
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., report: _Optional[_Union[LinkReport, _Mapping]] = ..., auth_ack: _Optional[_Union[AuthorisationAck, _Mapping]] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("node_id", "report_interval_ms")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    report_interval_ms: int
    def __init__(self, node_id: _Optional[str] = ..., report_interval_ms: _Optional[int] = ...) -> None: ...

class RelayAuthorisation(_message.Message):
    __slots__ = ("path_id", "prev_hop", "next_hop", "prev_hop_addr", "next_hop_addr", "expires_unix_ms", "src_node", "dst_node", "share_index", "share_count", "src_sae", "dst_saes", "security_level", "handoff", "foreign_src_sae")
    PATH_ID_FIELD_NUMBER: _ClassVar[int]
    PREV_HOP_FIELD_NUMBER: _ClassVar[int]
    NEXT_HOP_FIELD_NUMBER: _ClassVar[int]
    PREV_HOP_ADDR_FIELD_NUMBER: _ClassVar[int]
    NEXT_HOP_ADDR_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SRC_NODE_FIELD_NUMBER: _ClassVar[int]
    DST_NODE_FIELD_NUMBER: _ClassVar[int]
    SHARE_INDEX_FIELD_NUMBER: _ClassVar[int]
    SHARE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SRC_SAE_FIELD_NUMBER: _ClassVar[int]
    DST_SAES_FIELD_NUMBER: _ClassVar[int]
    SECURITY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    FOREIGN_SRC_SAE_FIELD_NUMBER: _ClassVar[int]
    path_id: str
    prev_hop: str
    next_hop: str
    prev_hop_addr: str
    next_hop_addr: str
    expires_unix_ms: int
    src_node: str
    dst_node: str
    share_index: int
    share_count: int
    src_sae: str
    dst_saes: _containers.RepeatedScalarFieldContainer[str]
    security_level: str
    handoff: Handoff
    foreign_src_sae: bool
    def __init__(self, path_id: _Optional[str] = ..., prev_hop: _Optional[str] = ..., next_hop: _Optional[str] = ..., prev_hop_addr: _Optional[str] = ..., next_hop_addr: _Optional[str] = ..., expires_unix_ms: _Optional[int] = ..., src_node: _Optional[str] = ..., dst_node: _Optional[str] = ..., share_index: _Optional[int] = ..., share_count: _Optional[int] = ..., src_sae: _Optional[str] = ..., dst_saes: _Optional[_Iterable[str]] = ..., security_level: _Optional[str] = ..., handoff: _Optional[_Union[Handoff, _Mapping]] = ..., foreign_src_sae: _Optional[bool] = ...) -> None: ...

class Handoff(_message.Message):
    __slots__ = ("crossing", "kind", "peer_domain", "peer_kme", "exit_node")
    CROSSING_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PEER_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    PEER_KME_FIELD_NUMBER: _ClassVar[int]
    EXIT_NODE_FIELD_NUMBER: _ClassVar[int]
    crossing: str
    kind: str
    peer_domain: str
    peer_kme: str
    exit_node: str
    def __init__(self, crossing: _Optional[str] = ..., kind: _Optional[str] = ..., peer_domain: _Optional[str] = ..., peer_kme: _Optional[str] = ..., exit_node: _Optional[str] = ...) -> None: ...

class Revocation(_message.Message):
    __slots__ = ("path_id", "reason")
    PATH_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    path_id: str
    reason: str
    def __init__(self, path_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ControllerMessage(_message.Message):
    __slots__ = ("registered", "authorise", "revoke")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    AUTHORISE_FIELD_NUMBER: _ClassVar[int]
    REVOKE_FIELD_NUMBER: _ClassVar[int]
    registered: Registered
    authorise: RelayAuthorisation
    revoke: Revocation
    def __init__(self, registered: _Optional[_Union[Registered, _Mapping]] = ..., authorise: _Optional[_Union[RelayAuthorisation, _Mapping]] = ..., revoke: _Optional[_Union[Revocation, _Mapping]] = ...) -> None: ...

class PathRequest(_message.Message):
    __slots__ = ("src_node", "dst_node", "src_sae", "dst_sae", "key_size_bits", "key_count", "application", "dst_saes")
    SRC_NODE_FIELD_NUMBER: _ClassVar[int]
    DST_NODE_FIELD_NUMBER: _ClassVar[int]
    SRC_SAE_FIELD_NUMBER: _ClassVar[int]
    DST_SAE_FIELD_NUMBER: _ClassVar[int]
    KEY_SIZE_BITS_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNT_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    DST_SAES_FIELD_NUMBER: _ClassVar[int]
    src_node: str
    dst_node: str
    src_sae: str
    dst_sae: str
    key_size_bits: int
    key_count: int
    application: str
    dst_saes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, src_node: _Optional[str] = ..., dst_node: _Optional[str] = ..., src_sae: _Optional[str] = ..., dst_sae: _Optional[str] = ..., key_size_bits: _Optional[int] = ..., key_count: _Optional[int] = ..., application: _Optional[str] = ..., dst_saes: _Optional[_Iterable[str]] = ...) -> None: ...

class Hop(_message.Message):
    __slots__ = ("node_id", "relay_addr")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RELAY_ADDR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    relay_addr: str
    def __init__(self, node_id: _Optional[str] = ..., relay_addr: _Optional[str] = ...) -> None: ...

class RelayPath(_message.Message):
    __slots__ = ("path_id", "hops", "cost", "share_index")
    PATH_ID_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    SHARE_INDEX_FIELD_NUMBER: _ClassVar[int]
    path_id: str
    hops: _containers.RepeatedCompositeFieldContainer[Hop]
    cost: float
    share_index: int
    def __init__(self, path_id: _Optional[str] = ..., hops: _Optional[_Iterable[_Union[Hop, _Mapping]]] = ..., cost: _Optional[float] = ..., share_index: _Optional[int] = ...) -> None: ...

class PathReply(_message.Message):
    __slots__ = ("paths", "security_level", "rule", "reason", "expires_unix_ms", "flows_installed", "handoff")
    PATHS_FIELD_NUMBER: _ClassVar[int]
    SECURITY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FLOWS_INSTALLED_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    paths: _containers.RepeatedCompositeFieldContainer[RelayPath]
    security_level: str
    rule: str
    reason: str
    expires_unix_ms: int
    flows_installed: int
    handoff: Handoff
    def __init__(self, paths: _Optional[_Iterable[_Union[RelayPath, _Mapping]]] = ..., security_level: _Optional[str] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ..., expires_unix_ms: _Optional[int] = ..., flows_installed: _Optional[int] = ..., handoff: _Optional[_Union[Handoff, _Mapping]] = ...) -> None: ...

class PathRefusal(_message.Message):
    __slots__ = ("reason", "rule", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    rule: str
    message: str
    def __init__(self, reason: _Optional[str] = ..., rule: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("path_id",)
    PATH_ID_FIELD_NUMBER: _ClassVar[int]
    path_id: str
    def __init__(self, path_id: _Optional[str] = ...) -> None: ...

class ReleaseReply(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: bool
    def __init__(self, released: _Optional[bool] = ...) -> None: ...
