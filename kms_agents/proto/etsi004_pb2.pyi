from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUCCESSFUL: _ClassVar[Status]
    PEER_NOT_CONNECTED: _ClassVar[Status]
    INSUFFICIENT_KEY: _ClassVar[Status]
    PEER_APPLICATION_NOT_CONNECTED: _ClassVar[Status]
    NO_QKD_CONNECTION: _ClassVar[Status]
    KEY_STREAM_ID_IN_USE: _ClassVar[Status]
    TIMEOUT: _ClassVar[Status]
    QOS_NOT_MET: _ClassVar[Status]
    METADATA_SIZE_INSUFFICIENT: _ClassVar[Status]
SUCCESSFUL: Status
PEER_NOT_CONNECTED: Status
INSUFFICIENT_KEY: Status
PEER_APPLICATION_NOT_CONNECTED: Status
NO_QKD_CONNECTION: Status
KEY_STREAM_ID_IN_USE: Status
TIMEOUT: Status
QOS_NOT_MET: Status
METADATA_SIZE_INSUFFICIENT: Status

class QoS(_message.Message):
    __slots__ = ("key_chunk_size", "max_bps", "min_bps", "jitter", "priority", "timeout", "ttl", "metadata_mimetype")
    KEY_CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_BPS_FIELD_NUMBER: _ClassVar[int]
    MIN_BPS_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    METADATA_MIMETYPE_FIELD_NUMBER: _ClassVar[int]
    key_chunk_size: int
    max_bps: int
    min_bps: int
    jitter: int
    priority: int
    timeout: int
    ttl: int
    metadata_mimetype: str
    def __init__(self, key_chunk_size: _Optional[int] = ..., max_bps: _Optional[int] = ..., min_bps: _Optional[int] = ..., jitter: _Optional[int] = ..., priority: _Optional[int] = ..., timeout: _Optional[int] = ..., ttl: _Optional[int] = ..., metadata_mimetype: _Optional[str] = ...) -> None: ...

class OpenConnectRequest(_message.Message):
    __slots__ = ("source", "destination", "qos", "key_stream_id")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    KEY_STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    source: str
    destination: str
    qos: QoS
    key_stream_id: str
    def __init__(self, source: _Optional[str] = ..., destination: _Optional[str] = ..., qos: _Optional[_Union[QoS, _Mapping]] = ..., key_stream_id: _Optional[str] = ...) -> None: ...

class OpenConnectResponse(_message.Message):
    __slots__ = ("status", "key_stream_id", "qos")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KEY_STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    status: Status
    key_stream_id: str
    qos: QoS
    def __init__(self, status: _Optional[_Union[Status, str]] = ..., key_stream_id: _Optional[str] = ..., qos: _Optional[_Union[QoS, _Mapping]] = ...) -> None: ...

class Metadata(_message.Message):
    __slots__ = ("size", "mimetype", "buffer")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MIMETYPE_FIELD_NUMBER: _ClassVar[int]
    BUFFER_FIELD_NUMBER: _ClassVar[int]
    size: int
    mimetype: str
    buffer: bytes
    def __init__(self, size: _Optional[int] = ..., mimetype: _Optional[str] = ..., buffer: _Optional[bytes] = ...) -> None: ...

class GetKeyRequest(_message.Message):
    __slots__ = ("key_stream_id", "index", "metadata")
    KEY_STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    key_stream_id: str
    index: int
    metadata: Metadata
    def __init__(self, key_stream_id: _Optional[str] = ..., index: _Optional[int] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ...) -> None: ...

class GetKeyResponse(_message.Message):
    __slots__ = ("status", "key_buffer", "index", "metadata")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KEY_BUFFER_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    status: Status
    key_buffer: bytes
    index: int
    metadata: Metadata
    def __init__(self, status: _Optional[_Union[Status, str]] = ..., key_buffer: _Optional[bytes] = ..., index: _Optional[int] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ...) -> None: ...

class CloseRequest(_message.Message):
    __slots__ = ("key_stream_id",)
    KEY_STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    key_stream_id: str
    def __init__(self, key_stream_id: _Optional[str] = ...) -> None: ...

class CloseResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: Status
    def __init__(self, status: _Optional[_Union[Status, str]] = ...) -> None: ...
