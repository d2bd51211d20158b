"""How records and vectors are laid out in the store (see store.py for the keys)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from magray.errors import CorruptStoreError
from magray.memory import ids
from magray.memory.record import Layer, Record, make_record
from magray.memory.store import pack, u64, unpack

# Oplog operations: what an index must do to catch up with the store.
OP_ADD = 0  # [OP_ADD, layer, label, id]: the record is in the layer; index its vector
OP_DEL = 1  # [OP_DEL, layer, label]: drop the label from the layer
OP_META = 2  # [OP_META, layer, label, id]: refresh the filter columns from the record


class StoredRecord:
    """A record as kept in the store, plus its hnswlib label."""

    __slots__ = (
        "access_count",
        "created_at",
        "fingerprint",
        "importance",
        "kind",
        "label",
        "last_access",
        "layer",
        "layer_since",
        "metadata",
        "project",
        "raw_id",
        "session",
        "tags",
        "text",
        "updated_at",
    )

    # The field order appears twice, here and in encode(): unpacking a tuple is four times
    # faster than a loop of setattr over a layout table, and decode is on the search path.
    # tests/memory/test_durability.py round-trips every field through export and import.
    def __init__(self, raw_id: bytes, fields: list[Any]) -> None:
        self.raw_id = raw_id
        (
            self.text,
            layer,
            self.kind,
            tags,
            self.project,
            self.session,
            self.metadata,
            self.created_at,
            self.updated_at,
            self.last_access,
            self.access_count,
            self.importance,
            self.fingerprint,
            self.label,
            self.layer_since,
        ) = fields
        self.layer = Layer.from_code(layer)
        self.tags = tuple(tags)

    def encode(self) -> bytes:
        return pack(
            [
                self.text,
                self.layer.code,
                self.kind,
                list(self.tags),
                self.project,
                self.session,
                self.metadata,
                self.created_at,
                self.updated_at,
                self.last_access,
                self.access_count,
                self.importance,
                self.fingerprint,
                self.label,
                self.layer_since,
            ]
        )

    @classmethod
    def create(
        cls,
        raw_id: bytes,
        text: str,
        fields: dict[str, Any],
        *,
        created: float,
        updated: float | None = None,
        last_access: float | None = None,
        access_count: int = 0,
        fingerprint: str = "",
        label: int = 0,
        layer_since: float | None = None,
    ) -> StoredRecord:
        """A record from validated fields (layer, kind, tags, project, session, metadata,
        importance); times default to the creation time."""
        return cls(
            raw_id,
            [
                text,
                fields["layer"].code,
                fields["kind"],
                list(fields["tags"]),
                fields["project"],
                fields["session"],
                fields["metadata"],
                created,
                created if updated is None else updated,
                created if last_access is None else last_access,
                access_count,
                fields["importance"],
                fingerprint,
                label,
                created if layer_since is None else layer_since,
            ],
        )

    @classmethod
    def decode(cls, raw_id: bytes, raw: bytes) -> StoredRecord:
        return cls(raw_id, unpack(raw))

    def to_record(self, extra_access: int = 0, last_access: float | None = None) -> Record:
        # Positional, in Record's field order, through make_record (a third of the cost
        # of Record(...)): this runs once per hit. test_codec checks the order.
        return make_record(
            ids.encode(self.raw_id),
            self.text,
            self.layer,
            self.kind,
            self.tags,
            self.project,
            self.session,
            self.metadata,
            self.created_at,
            self.updated_at,
            max(self.last_access, last_access or 0.0),
            self.access_count + extra_access,
            self.importance,
            self.fingerprint,
            self.layer_since,
        )


def record_of(raw_id: bytes, raw: bytes, extra_access: int = 0, last_access: float = 0.0) -> Record:
    """The public Record of a stored value with extra_access accesses and last_access
    (Unix seconds) not yet written, built straight from the value: search, get and
    recent make one per result, and skipping the StoredRecord halves the cost. The same
    mapping as StoredRecord.to_record (test_codec holds the two together). Raises
    CorruptStoreError for a value of another format."""
    (
        text,
        layer,
        kind,
        tags,
        project,
        session,
        metadata,
        created_at,
        updated_at,
        last,
        access_count,
        importance,
        fingerprint,
        _label,
        layer_since,
    ) = unpack(raw)
    return make_record(
        ids.encode(raw_id),
        text,
        Layer.from_code(layer),
        kind,
        tuple(tags),
        project,
        session,
        metadata,
        created_at,
        updated_at,
        last if last >= last_access else last_access,
        access_count + extra_access,
        importance,
        fingerprint,
        layer_since,
    )


def layer_time_key(layer: Layer, created_at: float, raw_id: bytes) -> bytes:
    return bytes((layer.code,)) + u64(int(created_at * 1000)) + raw_id


# A layer_time value: importance, access_count, last_access, layer_since.
SUMMARY = struct.Struct("<dQdd")
_SUMMARY_DTYPE = np.dtype(
    [("importance", "<f8"), ("access_count", "<u8"), ("last_access", "<f8"), ("layer_since", "<f8")]
)
_NO_SUMMARY = bytes(SUMMARY.size)


# Positions in a stored record's field list (StoredRecord.__init__ and encode give the order).
_F_LAYER, _F_CREATED, _F_LAST_ACCESS, _F_ACCESS_COUNT, _F_IMPORTANCE, _F_LAYER_SINCE = (
    1, 7, 9, 10, 11, 14,
)  # fmt: skip


def with_access(raw_id: bytes, raw: bytes, count: int, last: float) -> tuple[bytes, bytes, bytes]:
    """A stored record with count more accesses, the latest at last (Unix seconds), as
    (its new value, its ``layer_time`` key, that key's new summary): the access flush
    writes these for every record searched since the last one, without building a
    StoredRecord. The same result as StoredRecord's decode, then adding the accesses,
    encode and lifecycle_summary (test_codec holds them together). Raises
    CorruptStoreError for a value of another format."""
    fields = unpack(raw)
    fields[_F_ACCESS_COUNT] += count
    if last > fields[_F_LAST_ACCESS]:
        fields[_F_LAST_ACCESS] = last
    key = layer_time_key(Layer.from_code(fields[_F_LAYER]), fields[_F_CREATED], raw_id)
    summary = SUMMARY.pack(
        fields[_F_IMPORTANCE],
        fields[_F_ACCESS_COUNT],
        fields[_F_LAST_ACCESS],
        fields[_F_LAYER_SINCE],
    )
    return pack(fields), key, summary


def lifecycle_summary(rec: StoredRecord) -> bytes:
    """The value of rec's ``layer_time`` key (32 bytes): what the lifecycle rules read,
    written with every write of rec so that planning scans keys instead of records."""
    return SUMMARY.pack(rec.importance, rec.access_count, rec.last_access, rec.layer_since)


@dataclass(frozen=True, slots=True)
class Summaries:
    """The summaries of a run of ``layer_time`` entries, as columns (1-D arrays of one
    length): importance float64, access_count uint64, last_access and layer_since float64
    seconds, created_at float64 seconds from the key (whole milliseconds, never later than
    the record's). ``known`` (bool) is False for an entry of a store written before
    summaries existed (an empty value): its other columns are zeros and its record must be
    read."""

    importance: np.ndarray
    access_count: np.ndarray
    last_access: np.ndarray
    layer_since: np.ndarray
    created_at: np.ndarray
    known: np.ndarray


_KEY_SIZE = 25  # layer(1) created ms(8) id(16)
_KEY_DTYPE = np.dtype([("layer", "u1"), ("created_ms", ">u8"), ("id", "V16")])


def read_summaries(keys: Sequence[bytes], values: Sequence[bytes]) -> Summaries:
    """Decode ``layer_time`` keys and their values as columns, without a Python object
    or step per entry when every key and value has its usual size (an older store's
    entries without a summary take a slower path)."""
    n = len(values)
    size = SUMMARY.size
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
    known = lengths == size
    if known.all():
        joined = b"".join(values)
    else:
        joined = b"".join(v if len(v) == size else _NO_SUMMARY for v in values)
    rows = np.frombuffer(joined, dtype=_SUMMARY_DTYPE)
    if (np.fromiter(map(len, keys), dtype=np.int64, count=n) == _KEY_SIZE).all():
        created_ms = np.frombuffer(b"".join(keys), dtype=_KEY_DTYPE)["created_ms"]
    else:
        created_ms = np.frombuffer(b"".join(k[1:9] for k in keys), dtype=">u8")
    return Summaries(
        rows["importance"],
        rows["access_count"],
        rows["last_access"],
        rows["layer_since"],
        created_ms / 1000.0,
        known,
    )


def promotable_key(layer: Layer, raw_id: bytes) -> bytes:
    return bytes((layer.code,)) + raw_id


def label_key(layer: Layer, label: int) -> bytes:
    return bytes((layer.code,)) + u64(label)


def text_key(layer: Layer, digest: bytes) -> bytes:
    return bytes((layer.code,)) + digest


def vector_bytes(v: np.ndarray) -> bytes:
    return np.ascontiguousarray(v, dtype=np.float32).tobytes()


def vectors_from(raws: list[bytes | None], dim: int) -> np.ndarray:
    """Stored vectors as float32 ``(len(raws), dim)``; a missing one is a zero row.
    Raises CorruptStoreError for a value that is not ``dim`` float32 values."""
    if raws and all(raw is not None and len(raw) == 4 * dim for raw in raws):
        joined = b"".join(raws)  # type: ignore[arg-type]
        rows: np.ndarray = np.frombuffer(joined, np.float32).reshape(len(raws), dim).copy()
        return rows
    out = np.zeros((len(raws), dim), np.float32)
    for i, raw in enumerate(raws):
        if raw is not None:
            if len(raw) != 4 * dim:
                raise CorruptStoreError(
                    f"a stored vector has {len(raw)} bytes, the store's {dim}-d vectors "
                    f"{4 * dim}; run `magray health`, or restore a backup"
                )
            out[i] = np.frombuffer(raw, np.float32)
    return out
