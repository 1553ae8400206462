from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Reach(_message.Message):
    __slots__ = ("rate_bps", "stored_bits", "hops")
    RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    STORED_BITS_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    rate_bps: float
    stored_bits: int
    hops: int
    def __init__(self, rate_bps: _Optional[float] = ..., stored_bits: _Optional[int] = ..., hops: _Optional[int] = ...) -> None: ...

class Border(_message.Message):
    __slots__ = ("node", "crossing", "kind", "peer_domain", "peer_node", "up")
    NODE_FIELD_NUMBER: _ClassVar[int]
    CROSSING_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PEER_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    PEER_NODE_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    node: str
    crossing: str
    kind: str
    peer_domain: str
    peer_node: str
    up: bool
    def __init__(self, node: _Optional[str] = ..., crossing: _Optional[str] = ..., kind: _Optional[str] = ..., peer_domain: _Optional[str] = ..., peer_node: _Optional[str] = ..., up: _Optional[bool] = ...) -> None: ...

class BorderPair(_message.Message):
    __slots__ = ("a", "b", "reach")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    REACH_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    reach: Reach
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ..., reach: _Optional[_Union[Reach, _Mapping]] = ...) -> None: ...

class SaeReach(_message.Message):
    __slots__ = ("sae", "from_border")
    class FromBorderEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Reach
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Reach, _Mapping]] = ...) -> None: ...
    SAE_FIELD_NUMBER: _ClassVar[int]
    FROM_BORDER_FIELD_NUMBER: _ClassVar[int]
    sae: str
    from_border: _containers.MessageMap[str, Reach]
    def __init__(self, sae: _Optional[str] = ..., from_border: _Optional[_Mapping[str, Reach]] = ...) -> None: ...

class DomainExport(_message.Message):
    __slots__ = ("seq", "borders", "links", "saes", "transit")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    BORDERS_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    SAES_FIELD_NUMBER: _ClassVar[int]
    TRANSIT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    borders: _containers.RepeatedCompositeFieldContainer[Border]
    links: _containers.RepeatedCompositeFieldContainer[BorderPair]
    saes: _containers.RepeatedCompositeFieldContainer[SaeReach]
    transit: bool
    def __init__(self, seq: _Optional[int] = ..., borders: _Optional[_Iterable[_Union[Border, _Mapping]]] = ..., links: _Optional[_Iterable[_Union[BorderPair, _Mapping]]] = ..., saes: _Optional[_Iterable[_Union[SaeReach, _Mapping]]] = ..., transit: _Optional[bool] = ...) -> None: ...

class ExportAck(_message.Message):
    __slots__ = ("seq", "interval_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    interval_ms: int
    def __init__(self, seq: _Optional[int] = ..., interval_ms: _Optional[int] = ...) -> None: ...

class ChainRequest(_message.Message):
    __slots__ = ("dst_sae", "need_bits", "src_reach", "allow_pqc", "exclude")
    class SrcReachEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Reach
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Reach, _Mapping]] = ...) -> None: ...
    DST_SAE_FIELD_NUMBER: _ClassVar[int]
    NEED_BITS_FIELD_NUMBER: _ClassVar[int]
    SRC_REACH_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PQC_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    dst_sae: str
    need_bits: int
    src_reach: _containers.MessageMap[str, Reach]
    allow_pqc: bool
    exclude: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dst_sae: _Optional[str] = ..., need_bits: _Optional[int] = ..., src_reach: _Optional[_Mapping[str, Reach]] = ..., allow_pqc: _Optional[bool] = ..., exclude: _Optional[_Iterable[str]] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("domain", "entry", "exit")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    domain: str
    entry: str
    exit: str
    def __init__(self, domain: _Optional[str] = ..., entry: _Optional[str] = ..., exit: _Optional[str] = ...) -> None: ...

class Crossing(_message.Message):
    __slots__ = ("id", "kind", "from_domain", "from_node", "to_domain", "to_node")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FROM_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    TO_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    from_domain: str
    from_node: str
    to_domain: str
    to_node: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., from_domain: _Optional[str] = ..., from_node: _Optional[str] = ..., to_domain: _Optional[str] = ..., to_node: _Optional[str] = ...) -> None: ...

class Chain(_message.Message):
    __slots__ = ("dst_domain", "segments", "crossings", "security", "cost")
    DST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    CROSSINGS_FIELD_NUMBER: _ClassVar[int]
    SECURITY_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    dst_domain: str
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    crossings: _containers.RepeatedCompositeFieldContainer[Crossing]
    security: str
    cost: float
    def __init__(self, dst_domain: _Optional[str] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., crossings: _Optional[_Iterable[_Union[Crossing, _Mapping]]] = ..., security: _Optional[str] = ..., cost: _Optional[float] = ...) -> None: ...
