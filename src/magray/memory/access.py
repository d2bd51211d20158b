"""Access statistics: counted in memory on every search hit and duplicate add, written
to the store in batches.

A search must not write: it counts one access of each record it returns here, and the
engine's maintenance thread writes the counts when searches pause, when the last write
is too old, or when too many records wait (:meth:`AccessLog.due`). Records read before
that show the counts already (:meth:`AccessLog.get`), so nothing a caller sees depends
on when the write happens; a crash loses at most the unwritten counts, never a record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from magray.config import MemoryConfig
from magray.memory.codec import SUMMARY, StoredRecord, promotable_key, with_access
from magray.memory.lifecycle import promotable
from magray.memory.record import Layer
from magray.memory.store import Store, read_u64


class Pending:
    """Accesses of one record not yet written: how many, and the latest (Unix seconds)."""

    __slots__ = ("count", "last")

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0

    def merge(self, other: Pending) -> Pending:
        """Add other's statistics to these (a failed write hands them back)."""
        self.count += other.count
        self.last = max(self.last, other.last)
        return self

    def apply(self, rec: StoredRecord) -> None:
        """Fold these statistics into rec (before it is written)."""
        rec.access_count += self.count
        rec.last_access = max(rec.last_access, self.last)


class _Usage(NamedTuple):
    """A lifecycle summary's fields and its key's creation time (seconds), as the
    lifecycle rules read them."""

    importance: float
    access_count: int
    last_access: float
    layer_since: float
    created_at: float


class AccessLog:
    """The unwritten accesses of a store's records, keyed by raw id. Thread-safe."""

    PENDING_MAX = 100_000  # records with unwritten accesses: past this, write them now
    FLUSH_CHUNK = 128  # records per write batch (about 0.6 ms)

    def __init__(self, config: MemoryConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.pending: dict[bytes, Pending] = {}
        self.last_touch = 0.0  # time.monotonic() of the last access counted
        self.last_flush = time.monotonic()  # ... and of the last write

    def __len__(self) -> int:
        return len(self.pending)

    def touch(self, rids: Iterable[bytes], now: float) -> None:
        """Count one access of each record at now (Unix seconds)."""
        self.last_touch = time.monotonic()
        with self.lock:
            pending = self.pending
            for rid in rids:
                p = pending.get(rid)
                if p is None:
                    p = pending[rid] = Pending()
                p.count += 1
                if now > p.last:
                    p.last = now

    def get(self, rid: bytes) -> Pending | None:
        """The unwritten accesses of a record, or None."""
        return self.pending.get(rid)

    def take(self, rid: bytes) -> Pending | None:
        """Remove and return a record's unwritten accesses (a write of the record that
        folds them in is about to happen; give them back if it fails)."""
        with self.lock:
            return self.pending.pop(rid, None)

    def give_back(self, rid: bytes, p: Pending) -> None:
        """Keep accesses whose write failed for the next one."""
        with self.lock:
            self.pending[rid] = p.merge(self.pending.get(rid, Pending()))

    def forget(self, rids: Iterable[bytes]) -> None:
        """Drop the accesses of deleted records."""
        with self.lock:
            for rid in rids:
                self.pending.pop(rid, None)

    def due(self) -> bool:
        """Whether the accesses should be written now: searches have paused for
        access_flush_seconds, the last write is access_flush_max_seconds old, or
        PENDING_MAX records wait."""
        if not self.pending:
            return False
        now = time.monotonic()
        cfg = self.config
        return (
            now - self.last_touch >= cfg.access_flush_seconds
            or now - self.last_flush >= cfg.access_flush_max_seconds
            or len(self.pending) >= self.PENDING_MAX
        )

    def write(self, store: Store) -> None:
        """Write every pending access (read-modify-write of each record and its lifecycle
        summary), FLUSH_CHUNK records to a batch: the RocksDB binding holds the GIL while
        it writes, so one batch of thousands of records would stall every search. The
        caller holds the store's write lock. On failure, what was not written is kept
        and the error raised."""
        with self.lock:
            pending, self.pending = self.pending, {}
        self.last_flush = time.monotonic()
        if not pending:
            return
        keys = list(pending)
        records: Any = store.handle["records"]
        layer_time: Any = store.handle["layer_time"]
        candidates: Any = store.handle["promotable"]
        cfg = self.config
        done = 0
        try:
            for start in range(0, len(keys), self.FLUSH_CHUNK):
                chunk = keys[start : start + self.FLUSH_CHUNK]
                b = store.batch()
                for rid, raw in zip(chunk, store.multi_get("records", chunk)):
                    if raw is None:  # deleted meanwhile
                        continue
                    p = pending[rid]
                    value, key, summary = with_access(rid, raw, p.count, p.last)
                    b.put(rid, value, records)
                    b.put(key, summary, layer_time)
                    layer = Layer.from_code(key[0])
                    importance, count, last, since = SUMMARY.unpack(summary)
                    created = read_u64(key, 1) / 1000.0
                    usage = _Usage(importance, count, last, since, created)
                    if promotable(cfg, layer, usage):
                        b.put(promotable_key(layer, rid), b"", candidates)
                store.write(b, durable=False)
                done = start + len(chunk)
        except BaseException:
            for rid in keys[done:]:
                self.give_back(rid, pending[rid])
            raise
