from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RelayStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELAY_STATUS_UNSPECIFIED: _ClassVar[RelayStatus]
    RELAYED: _ClassVar[RelayStatus]
    VOIDED: _ClassVar[RelayStatus]
    FAILED: _ClassVar[RelayStatus]
    KEY_NOT_PRESENT: _ClassVar[RelayStatus]
RELAY_STATUS_UNSPECIFIED: RelayStatus
RELAYED: RelayStatus
VOIDED: RelayStatus
FAILED: RelayStatus
KEY_NOT_PRESENT: RelayStatus

class RelayRequest(_message.Message):
    __slots__ = ("version", "path_id", "share_index", "share_count", "seq", "key_id", "initiator_sae_id", "target_sae_ids", "src_node", "dst_node", "from_node", "link_id", "pad_key_ids", "mac_key_ids", "ciphertext", "tag", "size_bits", "security_level", "extensions", "key_ids")
    class ExtensionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_ID_FIELD_NUMBER: _ClassVar[int]
    SHARE_INDEX_FIELD_NUMBER: _ClassVar[int]
    SHARE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_SAE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_SAE_IDS_FIELD_NUMBER: _ClassVar[int]
    SRC_NODE_FIELD_NUMBER: _ClassVar[int]
    DST_NODE_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    PAD_KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    MAC_KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    SIZE_BITS_FIELD_NUMBER: _ClassVar[int]
    SECURITY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    version: str
    path_id: str
    share_index: int
    share_count: int
    seq: int
    key_id: str
    initiator_sae_id: str
    target_sae_ids: _containers.RepeatedScalarFieldContainer[str]
    src_node: str
    dst_node: str
    from_node: str
    link_id: str
    pad_key_ids: _containers.RepeatedScalarFieldContainer[str]
    mac_key_ids: _containers.RepeatedScalarFieldContainer[str]
    ciphertext: bytes
    tag: bytes
    size_bits: int
    security_level: str
    extensions: _containers.ScalarMap[str, str]
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., path_id: _Optional[str] = ..., share_index: _Optional[int] = ..., share_count: _Optional[int] = ..., seq: _Optional[int] = ..., key_id: _Optional[str] = ..., initiator_sae_id: _Optional[str] = ..., target_sae_ids: _Optional[_Iterable[str]] = ..., src_node: _Optional[str] = ..., dst_node: _Optional[str] = ..., from_node: _Optional[str] = ..., link_id: _Optional[str] = ..., pad_key_ids: _Optional[_Iterable[str]] = ..., mac_key_ids: _Optional[_Iterable[str]] = ..., ciphertext: _Optional[bytes] = ..., tag: _Optional[bytes] = ..., size_bits: _Optional[int] = ..., security_level: _Optional[str] = ..., extensions: _Optional[_Mapping[str, str]] = ..., key_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RelayAck(_message.Message):
    __slots__ = ("status", "message", "key_id", "extensions")
    class ExtensionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    status: RelayStatus
    message: str
    key_id: str
    extensions: _containers.ScalarMap[str, str]
    def __init__(self, status: _Optional[_Union[RelayStatus, str]] = ..., message: _Optional[str] = ..., key_id: _Optional[str] = ..., extensions: _Optional[_Mapping[str, str]] = ...) -> None: ...

class VoidRequest(_message.Message):
    __slots__ = ("version", "path_id", "key_id", "reason", "from_node", "key_ids")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    version: str
    path_id: str
    key_id: str
    reason: str
    from_node: str
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., path_id: _Optional[str] = ..., key_id: _Optional[str] = ..., reason: _Optional[str] = ..., from_node: _Optional[str] = ..., key_ids: _Optional[_Iterable[str]] = ...) -> None: ...
