from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Vectors(_message.Message):
    __slots__ = ("data", "rows", "dim")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    rows: int
    dim: int
    def __init__(self, data: _Optional[bytes] = ..., rows: _Optional[int] = ..., dim: _Optional[int] = ...) -> None: ...

class OptionalString(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: str
    def __init__(self, value: _Optional[str] = ...) -> None: ...

class Fields(_message.Message):
    __slots__ = ("layer", "kind", "tags", "project", "session", "metadata", "importance")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    layer: str
    kind: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    project: str
    session: str
    metadata: bytes
    importance: float
    def __init__(self, layer: _Optional[str] = ..., kind: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., project: _Optional[str] = ..., session: _Optional[str] = ..., metadata: _Optional[bytes] = ..., importance: _Optional[float] = ...) -> None: ...

class AddRequest(_message.Message):
    __slots__ = ("texts", "vectors", "fields", "on_duplicate")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ON_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    vectors: Vectors
    fields: Fields
    on_duplicate: str
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., vectors: _Optional[_Union[Vectors, _Mapping]] = ..., fields: _Optional[_Union[Fields, _Mapping]] = ..., on_duplicate: _Optional[str] = ...) -> None: ...

class AddReply(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("id", "text", "layer", "kind", "tags", "project", "session", "metadata", "created_at", "updated_at", "last_access", "access_count", "importance", "fingerprint", "layer_since")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ACCESS_FIELD_NUMBER: _ClassVar[int]
    ACCESS_COUNT_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    LAYER_SINCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    layer: str
    kind: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    project: str
    session: str
    metadata: bytes
    created_at: float
    updated_at: float
    last_access: float
    access_count: int
    importance: float
    fingerprint: str
    layer_since: float
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., layer: _Optional[str] = ..., kind: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., project: _Optional[str] = ..., session: _Optional[str] = ..., metadata: _Optional[bytes] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., last_access: _Optional[float] = ..., access_count: _Optional[int] = ..., importance: _Optional[float] = ..., fingerprint: _Optional[str] = ..., layer_since: _Optional[float] = ...) -> None: ...

class Records(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Record]
    def __init__(self, records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "vector", "k", "layers", "tags", "has_tags", "project", "session", "kind", "since", "until", "min_score", "mode", "contains")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    HAS_TAGS_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CONTAINS_FIELD_NUMBER: _ClassVar[int]
    query: str
    vector: Vectors
    k: int
    layers: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    has_tags: bool
    project: str
    session: str
    kind: str
    since: float
    until: float
    min_score: float
    mode: str
    contains: str
    def __init__(self, query: _Optional[str] = ..., vector: _Optional[_Union[Vectors, _Mapping]] = ..., k: _Optional[int] = ..., layers: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., has_tags: _Optional[bool] = ..., project: _Optional[str] = ..., session: _Optional[str] = ..., kind: _Optional[str] = ..., since: _Optional[float] = ..., until: _Optional[float] = ..., min_score: _Optional[float] = ..., mode: _Optional[str] = ..., contains: _Optional[str] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "score", "layer", "record", "scores")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    layer: str
    record: Record
    scores: _containers.ScalarMap[str, float]
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., layer: _Optional[str] = ..., record: _Optional[_Union[Record, _Mapping]] = ..., scores: _Optional[_Mapping[str, float]] = ...) -> None: ...

class SearchReply(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("texts", "query")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    query: bool
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., query: _Optional[bool] = ...) -> None: ...

class EmbedReply(_message.Message):
    __slots__ = ("vectors",)
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    vectors: Vectors
    def __init__(self, vectors: _Optional[_Union[Vectors, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetReply(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: Record
    def __init__(self, record: _Optional[_Union[Record, _Mapping]] = ...) -> None: ...

class RecentRequest(_message.Message):
    __slots__ = ("layer", "limit")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    layer: str
    limit: int
    def __init__(self, layer: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class UpdateRequest(_message.Message):
    __slots__ = ("id", "text", "set_tags", "tags", "metadata", "importance", "layer", "kind", "project", "session", "vector")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SET_TAGS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    set_tags: bool
    tags: _containers.RepeatedScalarFieldContainer[str]
    metadata: bytes
    importance: float
    layer: str
    kind: str
    project: OptionalString
    session: OptionalString
    vector: Vectors
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., set_tags: _Optional[bool] = ..., tags: _Optional[_Iterable[str]] = ..., metadata: _Optional[bytes] = ..., importance: _Optional[float] = ..., layer: _Optional[str] = ..., kind: _Optional[str] = ..., project: _Optional[_Union[OptionalString, _Mapping]] = ..., session: _Optional[_Union[OptionalString, _Mapping]] = ..., vector: _Optional[_Union[Vectors, _Mapping]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteReply(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class LifecycleRequest(_message.Message):
    __slots__ = ("now", "dry_run")
    NOW_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    now: float
    dry_run: bool
    def __init__(self, now: _Optional[float] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class Move(_message.Message):
    __slots__ = ("id", "from_layer", "to_layer", "reason", "at")
    ID_FIELD_NUMBER: _ClassVar[int]
    FROM_LAYER_FIELD_NUMBER: _ClassVar[int]
    TO_LAYER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    from_layer: str
    to_layer: str
    reason: str
    at: float
    def __init__(self, id: _Optional[str] = ..., from_layer: _Optional[str] = ..., to_layer: _Optional[str] = ..., reason: _Optional[str] = ..., at: _Optional[float] = ...) -> None: ...

class LifecycleReply(_message.Message):
    __slots__ = ("moved", "expired", "dry_run")
    MOVED_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    moved: _containers.RepeatedCompositeFieldContainer[Move]
    expired: _containers.RepeatedCompositeFieldContainer[Move]
    dry_run: bool
    def __init__(self, moved: _Optional[_Iterable[_Union[Move, _Mapping]]] = ..., expired: _Optional[_Iterable[_Union[Move, _Mapping]]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class JsonReply(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class BackupReply(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("vectors",)
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    vectors: bool
    def __init__(self, vectors: _Optional[bool] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class LineError(_message.Message):
    __slots__ = ("line", "message")
    LINE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    line: int
    message: str
    def __init__(self, line: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ImportReply(_message.Message):
    __slots__ = ("added", "skipped", "errors")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    added: int
    skipped: int
    errors: _containers.RepeatedCompositeFieldContainer[LineError]
    def __init__(self, added: _Optional[int] = ..., skipped: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[LineError, _Mapping]]] = ...) -> None: ...
