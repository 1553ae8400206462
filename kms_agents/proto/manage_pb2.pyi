from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FaultState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAULT_STATE_UNSPECIFIED: _ClassVar[FaultState]
    FAULT_STATE_UP: _ClassVar[FaultState]
    FAULT_STATE_DOWN: _ClassVar[FaultState]
    FAULT_STATE_QBER: _ClassVar[FaultState]
FAULT_STATE_UNSPECIFIED: FaultState
FAULT_STATE_UP: FaultState
FAULT_STATE_DOWN: FaultState
FAULT_STATE_QBER: FaultState

class SetLinkFaultRequest(_message.Message):
    __slots__ = ("link_id", "state", "qber")
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QBER_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    state: FaultState
    qber: float
    def __init__(self, link_id: _Optional[str] = ..., state: _Optional[_Union[FaultState, str]] = ..., qber: _Optional[float] = ...) -> None: ...

class LinkFault(_message.Message):
    __slots__ = ("link_id", "peer_node", "state", "qber", "alarm", "skr_bps", "nominal_skr_bps", "kms_kind")
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_NODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QBER_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    SKR_BPS_FIELD_NUMBER: _ClassVar[int]
    NOMINAL_SKR_BPS_FIELD_NUMBER: _ClassVar[int]
    KMS_KIND_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    peer_node: str
    state: FaultState
    qber: float
    alarm: str
    skr_bps: float
    nominal_skr_bps: float
    kms_kind: str
    def __init__(self, link_id: _Optional[str] = ..., peer_node: _Optional[str] = ..., state: _Optional[_Union[FaultState, str]] = ..., qber: _Optional[float] = ..., alarm: _Optional[str] = ..., skr_bps: _Optional[float] = ..., nominal_skr_bps: _Optional[float] = ..., kms_kind: _Optional[str] = ...) -> None: ...

class GetLinkFaultsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LinkFaults(_message.Message):
    __slots__ = ("links",)
    LINKS_FIELD_NUMBER: _ClassVar[int]
    links: _containers.RepeatedCompositeFieldContainer[LinkFault]
    def __init__(self, links: _Optional[_Iterable[_Union[LinkFault, _Mapping]]] = ...) -> None: ...
