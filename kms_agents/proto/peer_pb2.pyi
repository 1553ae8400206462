from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StreamEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_EVENT_UNSPECIFIED: _ClassVar[StreamEventKind]
    OPENED: _ClassVar[StreamEventKind]
    CLOSED: _ClassVar[StreamEventKind]
    CHUNK: _ClassVar[StreamEventKind]
STREAM_EVENT_UNSPECIFIED: StreamEventKind
OPENED: StreamEventKind
CLOSED: StreamEventKind
CHUNK: StreamEventKind

class DirectKey(_message.Message):
    __slots__ = ("key_id", "link_key_ids", "size_bits")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    LINK_KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BITS_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    link_key_ids: _containers.RepeatedScalarFieldContainer[str]
    size_bits: int
    def __init__(self, key_id: _Optional[str] = ..., link_key_ids: _Optional[_Iterable[str]] = ..., size_bits: _Optional[int] = ...) -> None: ...

class DirectDelivery(_message.Message):
    __slots__ = ("link_id", "master_sae_id", "slave_sae_ids", "keys", "extensions")
    class ExtensionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    MASTER_SAE_ID_FIELD_NUMBER: _ClassVar[int]
    SLAVE_SAE_IDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    master_sae_id: str
    slave_sae_ids: _containers.RepeatedScalarFieldContainer[str]
    keys: _containers.RepeatedCompositeFieldContainer[DirectKey]
    extensions: _containers.ScalarMap[str, str]
    def __init__(self, link_id: _Optional[str] = ..., master_sae_id: _Optional[str] = ..., slave_sae_ids: _Optional[_Iterable[str]] = ..., keys: _Optional[_Iterable[_Union[DirectKey, _Mapping]]] = ..., extensions: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DirectAck(_message.Message):
    __slots__ = ("stored",)
    STORED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    def __init__(self, stored: _Optional[int] = ...) -> None: ...

class StreamEventRequest(_message.Message):
    __slots__ = ("kind", "key_stream_id", "source", "destination", "key_chunk_size", "index", "ttl", "origin_node", "target_node", "hop_limit", "sent_unix_ms", "origin_cert", "origin_signature")
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    KEY_CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_NODE_FIELD_NUMBER: _ClassVar[int]
    TARGET_NODE_FIELD_NUMBER: _ClassVar[int]
    HOP_LIMIT_FIELD_NUMBER: _ClassVar[int]
    SENT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_CERT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    kind: StreamEventKind
    key_stream_id: str
    source: str
    destination: str
    key_chunk_size: int
    index: int
    ttl: int
    origin_node: str
    target_node: str
    hop_limit: int
    sent_unix_ms: int
    origin_cert: bytes
    origin_signature: bytes
    def __init__(self, kind: _Optional[_Union[StreamEventKind, str]] = ..., key_stream_id: _Optional[str] = ..., source: _Optional[str] = ..., destination: _Optional[str] = ..., key_chunk_size: _Optional[int] = ..., index: _Optional[int] = ..., ttl: _Optional[int] = ..., origin_node: _Optional[str] = ..., target_node: _Optional[str] = ..., hop_limit: _Optional[int] = ..., sent_unix_ms: _Optional[int] = ..., origin_cert: _Optional[bytes] = ..., origin_signature: _Optional[bytes] = ...) -> None: ...

class StreamEventReply(_message.Message):
    __slots__ = ("status", "message", "peer_connected")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PEER_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    status: int
    message: str
    peer_connected: bool
    def __init__(self, status: _Optional[int] = ..., message: _Optional[str] = ..., peer_connected: _Optional[bool] = ...) -> None: ...
