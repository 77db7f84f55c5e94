import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_ERROR_CODE_UNSPECIFIED: _ClassVar[EventErrorCode]
    INVALID_EVENT_ID: _ClassVar[EventErrorCode]
    INVALID_CUSTOMER: _ClassVar[EventErrorCode]
    UNKNOWN_METER: _ClassVar[EventErrorCode]
    MISSING_TIMESTAMP: _ClassVar[EventErrorCode]
    TIMESTAMP_TOO_OLD: _ClassVar[EventErrorCode]
    TIMESTAMP_IN_FUTURE: _ClassVar[EventErrorCode]
    INVALID_VALUE: _ClassVar[EventErrorCode]
    VALUE_SCALE_EXCEEDED: _ClassVar[EventErrorCode]
    VALUE_OVERFLOW: _ClassVar[EventErrorCode]
    INVALID_PROPERTIES: _ClassVar[EventErrorCode]
    EVENT_ID_CONFLICT: _ClassVar[EventErrorCode]
    BATCH_REFUSED: _ClassVar[EventErrorCode]
    STORAGE_REFUSED: _ClassVar[EventErrorCode]
EVENT_ERROR_CODE_UNSPECIFIED: EventErrorCode
INVALID_EVENT_ID: EventErrorCode
INVALID_CUSTOMER: EventErrorCode
UNKNOWN_METER: EventErrorCode
MISSING_TIMESTAMP: EventErrorCode
TIMESTAMP_TOO_OLD: EventErrorCode
TIMESTAMP_IN_FUTURE: EventErrorCode
INVALID_VALUE: EventErrorCode
VALUE_SCALE_EXCEEDED: EventErrorCode
VALUE_OVERFLOW: EventErrorCode
INVALID_PROPERTIES: EventErrorCode
EVENT_ID_CONFLICT: EventErrorCode
BATCH_REFUSED: EventErrorCode
STORAGE_REFUSED: EventErrorCode

class Event(_message.Message):
    __slots__ = ("event_id", "customer", "meter", "timestamp", "value", "properties")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    customer: str
    meter: str
    timestamp: _timestamp_pb2.Timestamp
    value: str
    properties: _containers.ScalarMap[str, str]
    def __init__(self, event_id: _Optional[str] = ..., customer: _Optional[str] = ..., meter: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[str] = ..., properties: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EventColumns(_message.Message):
    __slots__ = ("event_ids", "customers", "meters", "timestamps_unix_us", "value_units", "value_scale", "properties")
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    METERS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_UNIX_US_FIELD_NUMBER: _ClassVar[int]
    VALUE_UNITS_FIELD_NUMBER: _ClassVar[int]
    VALUE_SCALE_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    customers: _containers.RepeatedScalarFieldContainer[str]
    meters: _containers.RepeatedScalarFieldContainer[str]
    timestamps_unix_us: _containers.RepeatedScalarFieldContainer[int]
    value_units: _containers.RepeatedScalarFieldContainer[int]
    value_scale: int
    properties: _containers.RepeatedCompositeFieldContainer[PropertyColumn]
    def __init__(self, event_ids: _Optional[_Iterable[str]] = ..., customers: _Optional[_Iterable[str]] = ..., meters: _Optional[_Iterable[str]] = ..., timestamps_unix_us: _Optional[_Iterable[int]] = ..., value_units: _Optional[_Iterable[int]] = ..., value_scale: _Optional[int] = ..., properties: _Optional[_Iterable[_Union[PropertyColumn, _Mapping]]] = ...) -> None: ...

class PropertyColumn(_message.Message):
    __slots__ = ("key", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("batch_id", "events", "columns", "atomic")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ATOMIC_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    events: _containers.RepeatedCompositeFieldContainer[Event]
    columns: EventColumns
    atomic: bool
    def __init__(self, batch_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., columns: _Optional[_Union[EventColumns, _Mapping]] = ..., atomic: _Optional[bool] = ...) -> None: ...

class EventError(_message.Message):
    __slots__ = ("index", "field", "code", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    field: str
    code: EventErrorCode
    reason: str
    def __init__(self, index: _Optional[int] = ..., field: _Optional[str] = ..., code: _Optional[_Union[EventErrorCode, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class IngestAck(_message.Message):
    __slots__ = ("batch_id", "sequence", "accepted", "duplicate", "rejected", "errors", "refused")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    sequence: int
    accepted: int
    duplicate: int
    rejected: int
    errors: _containers.RepeatedCompositeFieldContainer[EventError]
    refused: bool
    def __init__(self, batch_id: _Optional[str] = ..., sequence: _Optional[int] = ..., accepted: _Optional[int] = ..., duplicate: _Optional[int] = ..., rejected: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[EventError, _Mapping]]] = ..., refused: _Optional[bool] = ...) -> None: ...
