"""Deriving the vector index from the store: a whole index from the records, and the
catch-up of an index snapshot from the operation log.

RocksDB is the truth. An index snapshot records the store sequence it reflects; the
oplog holds every index change after it (add, delete, new columns), and replaying those
that still hold in the store brings the index up to date. When no usable snapshot
exists, :func:`index_from_store` rebuilds the columns and exact vectors from the
records (the graph is then built in the background).
"""

from __future__ import annotations

import logging
from typing import Any

from magray.config import MemoryConfig
from magray.memory import ids as idcodec
from magray.memory.codec import OP_ADD, OP_DEL, OP_META, StoredRecord, vectors_from
from magray.memory.index import Interner, Row, VectorIndex
from magray.memory.store import Store, read_u64, u64, unpack

_LOG = logging.getLogger("magray.memory")
_CHUNK = 4096  # records read per multi_get


def row_of(rec: StoredRecord) -> Row:
    """The index's filter columns of a record: label, id, layer, creation (ms), project,
    session, kind and tags."""
    return Row(
        rec.label,
        rec.raw_id,
        rec.layer.code,
        int(rec.created_at * 1000),
        rec.project,
        rec.session,
        rec.kind,
        rec.tags,
    )


def indexable(rec: StoredRecord, vec: bytes | None, dim: int, fingerprint: str) -> bool:
    """Whether a stored vector belongs in the store's index: it exists, and comes from
    the store's model (fingerprint) at its dimension. Only a re-embed interrupted while
    it moved vectors into place leaves others, seen by a read-only view (the next
    writable open finishes the move); they are left out, never mixed in."""
    if vec is None:
        return False
    if rec.fingerprint == fingerprint and len(vec) == 4 * dim:
        return True
    _LOG.warning(
        "record %s has a vector of another model (%s, %d bytes); not indexed until the "
        "re-embed that wrote it is finished by a writable open",
        idcodec.encode(rec.raw_id),
        rec.fingerprint,
        len(vec),
    )
    return False


def index_from_store(
    store: Store, dim: int, config: MemoryConfig, strings: Interner, seq: int, fingerprint: str
) -> VectorIndex:
    """A new index of every indexable record of store (at sequence seq): columns and
    exact vectors, no graph yet. Reads the records in label order, _CHUNK at a time."""
    idx = VectorIndex(dim, config, strings)
    idx.snapshot_seq = seq
    batch_ids: list[bytes] = []

    def flush() -> None:
        if not batch_ids:
            return
        raws = store.multi_get("records", batch_ids)
        vecs = store.multi_get("vectors", batch_ids)
        rows, keep = [], []
        for i, (rid, raw) in enumerate(zip(batch_ids, raws)):
            if raw is None:
                continue
            rec = StoredRecord.decode(rid, raw)
            if not indexable(rec, vecs[i], dim, fingerprint):
                continue
            rows.append(row_of(rec))
            keep.append(i)
        if rows:
            idx.add(rows, vectors_from([vecs[i] for i in keep], dim))
        batch_ids.clear()

    for _key, rid in store.scan("labels"):
        batch_ids.append(bytes(rid))
        if len(batch_ids) >= _CHUNK:
            flush()
    flush()
    idx.changes_since_save = idx.count  # a rebuilt index deserves a snapshot soon
    return idx


def oplog_after(store: Store, after: int) -> list[tuple[int, list[Any]]]:
    """(seq, op) for every oplog entry of a sequence after ``after``, in order."""
    return [(read_u64(k), unpack(v)) for k, v in store.scan("oplog", start=u64(after + 1))]


def apply_ops(
    idx: VectorIndex,
    store: Store,
    entries: list[tuple[int, list[Any]]],
    dim: int,
    fingerprint: str,
) -> None:
    """Apply to idx the oplog entries newer than its snapshot, as the store holds them
    now: a record deleted later, or given a new vector (a new label) later, does not
    come back, and a record's columns are taken from the record as it is now."""
    need: dict[bytes, None] = {}
    for seq, op in entries:
        if seq > idx.snapshot_seq and op[0] in (OP_ADD, OP_META):
            need[bytes(op[3])] = None
    recs: dict[bytes, StoredRecord] = {}
    vecs: dict[bytes, bytes] = {}
    keys = list(need)
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        for rid, raw, vec in zip(
            chunk, store.multi_get("records", chunk), store.multi_get("vectors", chunk)
        ):
            if raw is not None:
                recs[rid] = StoredRecord.decode(rid, raw)
            if vec is not None:
                vecs[rid] = vec
    for seq, op in entries:
        if seq <= idx.snapshot_seq:
            continue
        label = op[2]
        if op[0] == OP_DEL:
            idx.remove([label])
            continue
        rid = bytes(op[3])
        rec = recs.get(rid)
        if rec is None or rec.label != label:
            continue
        if op[0] == OP_ADD:
            if indexable(rec, vecs.get(rid), dim, fingerprint):
                idx.add([row_of(rec)], vectors_from([vecs[rid]], dim))
        else:
            idx.update_columns([row_of(rec)])
