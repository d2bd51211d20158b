"""The embedding cache: never compute the same embedding twice.

Key: XXH3-128 (native, one batched call per batch) of the embedder's fingerprint, a
separator byte and the text's UTF-8, so vectors of different models never mix.

- **L1**: an in-process LRU bounded in bytes (default 64 MiB).
- **L2**: the store's ``cache`` column family, bounded in bytes (default 1 GiB), kept
  across processes. Entries are evicted oldest first. Batches use one multi_get.
- **L3** (optional): Redis, shared by every process and host that names it
  (``magray.embed.redis_tier``). A batch costs one MGET and one pipelined write.

Lookups go L1 -> L2 -> L3 -> embed; an L3 hit fills L1 and L2, and a fresh embedding
is written to all three.

Both tiers count hits, misses, bytes and evictions. An unreadable or corrupt L2 entry
is dropped and recomputed; a broken L2 is cleared; the cache is never fatal.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from magray.embed.redis_tier import RedisTier
    from magray.memory.store import Store

log = logging.getLogger("magray.cache")

SEPARATOR = "\x1f"
_ENTRY_OVERHEAD = 120  # bytes of bookkeeping per L1 entry (key, dict slot, array header)
# L2 keyspaces inside the cache column family.
_VALUE = b"v"  # v + key(16)        -> seq(8) + float32 vector
_ORDER = b"o"  # o + seq(8)         -> key(16)   (oldest first)
_META = b"m"  # m                   -> next seq(8) + total bytes(8)


class TierStats:
    """Counters of one tier. Every entry of a tier has the same size, so the entry count
    is derived from the bytes."""

    __slots__ = ("bytes", "entry_bytes", "evictions", "hits", "misses")

    def __init__(self, entry_bytes: int) -> None:
        self.hits = self.misses = self.evictions = self.bytes = 0
        self.entry_bytes = entry_bytes

    @property
    def entries(self) -> int:
        return self.bytes // self.entry_bytes

    def as_dict(self, limit: int) -> dict[str, Any]:
        total = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / total, 4) if total else 0.0,
            "bytes": self.bytes,
            "limit_bytes": limit,
            "entries": self.entries,
            "evictions": self.evictions,
        }


class EmbeddingCache:
    """Two-tier cache of unit vectors keyed by (fingerprint, text)."""

    def __init__(
        self,
        fingerprint: str,
        dim: int,
        *,
        store: Store | None = None,
        l1_bytes: int = 64 << 20,
        l2_bytes: int = 1 << 30,
        l3: RedisTier | None = None,
    ) -> None:
        self.fingerprint = fingerprint
        self.l3 = l3
        self.dim = dim
        self.store = store
        self.l1_limit = l1_bytes
        self.l2_limit = l2_bytes
        self._prefix = fingerprint + SEPARATOR
        self._l1: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._entry_bytes = dim * 4 + _ENTRY_OVERHEAD
        self._l2_entry_bytes = dim * 4 + 8 + 16 + 24 + 16
        self.l1 = TierStats(self._entry_bytes)
        self.l2 = TierStats(self._l2_entry_bytes)
        self._seq = 0
        if store is not None:
            self._load_meta()

    # -- keys ---------------------------------------------------------------------------

    def keys(self, texts: Sequence[str]) -> list[bytes]:
        from magray.kernels import hash128_many

        p = self._prefix
        digests = hash128_many(tuple(p + t for t in texts))
        return [digests[i].tobytes() for i in range(len(texts))]

    # -- L1 -------------------------------------------------------------------------------

    def resize_l1(self, limit: int) -> None:
        """Change the L1 bound (the resource manager shrinks it under memory pressure)."""
        with self._lock:
            self.l1_limit = max(0, int(limit))
            self._evict_l1()

    def _evict_l1(self) -> None:
        while self._l1 and self.l1.bytes > self.l1_limit:
            self._l1.popitem(last=False)
            self.l1.bytes -= self._entry_bytes
            self.l1.evictions += 1

    def _l1_put(self, key: bytes, vec: np.ndarray) -> None:
        if self._entry_bytes > self.l1_limit:
            return
        if key in self._l1:
            self._l1.move_to_end(key)
            return
        self._l1[key] = vec
        self.l1.bytes += self._entry_bytes
        self._evict_l1()

    # -- lookups ------------------------------------------------------------------------

    def get_many(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int], list[bytes]]:
        """(vectors, missing rows, keys): rows not in missing are filled from the cache."""
        keys = self.keys(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        missing: list[int] = []
        with self._lock:
            for i, key in enumerate(keys):
                v = self._l1.get(key)
                if v is None:
                    missing.append(i)
                else:
                    self._l1.move_to_end(key)
                    out[i] = v
            self.l1.hits += len(keys) - len(missing)
            self.l1.misses += len(missing)
        if missing and self.store is not None:
            still = self._l2_get(keys, missing, out)
            missing = still
        if missing and self.l3 is not None:
            missing = self._l3_get(keys, missing, out)
        return out, missing, keys

    def _l3_get(self, keys: list[bytes], rows: list[int], out: np.ndarray) -> list[int]:
        assert self.l3 is not None
        found = self.l3.get_many([keys[i] for i in rows], self.dim)
        still = [i for i, v in zip(rows, found) if v is None]
        hit = [(i, v) for i, v in zip(rows, found) if v is not None]
        if hit:
            with self._lock:
                for i, v in hit:
                    out[i] = v
                    self._l1_put(keys[i], v)
            if self.store is not None and not self.store.read_only:
                try:
                    self._l2_put([keys[i] for i, _ in hit], np.stack([v for _, v in hit]))
                except Exception as exc:
                    log.warning("embedding cache write failed (%s); continuing without it", exc)
        return still

    def _l2_get(self, keys: list[bytes], rows: list[int], out: np.ndarray) -> list[int]:
        assert self.store is not None
        try:
            raws = self.store.multi_get("cache", [_VALUE + keys[i] for i in rows])
        except Exception as exc:  # an unreadable tier is a miss, never an error
            log.warning("embedding cache unreadable (%s); recomputing", exc)
            return rows
        still: list[int] = []
        corrupt: list[bytes] = []
        expected = 8 + self.dim * 4
        with self._lock:
            for i, raw in zip(rows, raws):
                if raw is None:
                    still.append(i)
                    continue
                if len(raw) != expected:
                    corrupt.append(keys[i])
                    still.append(i)
                    continue
                v = np.frombuffer(raw, np.float32, offset=8).copy()
                if not np.isfinite(v).all():
                    corrupt.append(keys[i])
                    still.append(i)
                    continue
                out[i] = v
                self._l1_put(keys[i], v)
            self.l2.hits += len(rows) - len(still)
            self.l2.misses += len(still)
        if corrupt:
            self._drop(corrupt)
        return still

    # -- inserts ------------------------------------------------------------------------

    def put_many(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        with self._lock:
            for key, v in zip(keys, vectors):
                self._l1_put(key, np.array(v, np.float32, copy=True))
        if self.l3 is not None and len(keys):
            self.l3.put_many(keys, vectors)
        if self.store is None or self.store.read_only or not len(keys):
            return
        try:
            self._l2_put(keys, vectors)
        except Exception as exc:
            log.warning("embedding cache write failed (%s); continuing without it", exc)

    def _l2_put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        assert self.store is not None
        s = self.store
        cf = s.handle["cache"]
        present = s.multi_get("cache", [_VALUE + k for k in keys])
        b = s.batch()
        added = 0
        with self._lock:
            seen: set[bytes] = set()
            for key, v, old in zip(keys, vectors, present):
                if old is not None or key in seen:
                    continue
                seen.add(key)
                self._seq += 1
                seq = self._seq.to_bytes(8, "big")
                b.put(_VALUE + key, seq + np.ascontiguousarray(v, np.float32).tobytes(), cf)
                b.put(_ORDER + seq, key, cf)
                added += 1
            if not added:
                return
            self.l2.bytes += added * self._l2_entry_bytes
            b.put(_META, self._seq.to_bytes(8, "big") + self.l2.bytes.to_bytes(8, "big"), cf)
        s.write(b, durable=False)
        if self.l2.bytes > self.l2_limit:
            self._evict_l2()

    def _evict_l2(self) -> None:
        """Drop the oldest entries until the tier is 10% under its bound."""
        assert self.store is not None
        s = self.store
        cf = s.handle["cache"]
        target = int(self.l2_limit * 0.9)
        b = s.batch()
        dropped = 0
        with self._lock:
            for okey, key in s.scan("cache", _ORDER):
                if self.l2.bytes - dropped * self._l2_entry_bytes <= target:
                    break
                b.delete(okey, cf)
                b.delete(_VALUE + bytes(key), cf)
                dropped += 1
            self.l2.bytes -= dropped * self._l2_entry_bytes
            self.l2.evictions += dropped
            b.put(_META, self._seq.to_bytes(8, "big") + self.l2.bytes.to_bytes(8, "big"), cf)
        s.write(b, durable=False)

    def _drop(self, keys: list[bytes]) -> None:
        if self.store is None or self.store.read_only:
            return
        try:
            b = self.store.batch()
            for key in keys:
                b.delete(_VALUE + key, self.store.handle["cache"])
            self.store.write(b, durable=False)
        except Exception:
            pass

    def _load_meta(self) -> None:
        assert self.store is not None
        try:
            raw = self.store.get("cache", _META)
            if raw is not None and len(raw) == 16:
                self._seq = int.from_bytes(raw[:8], "big")
                self.l2.bytes = int.from_bytes(raw[8:], "big")
            elif raw is not None:
                raise ValueError("bad cache header")
        except Exception as exc:
            log.warning("embedding cache header unreadable (%s); clearing the cache", exc)
            self.clear()

    def clear(self) -> None:
        """Empty both tiers."""
        with self._lock:
            self._l1.clear()
            self.l1.bytes = 0
        if self.store is None or self.store.read_only:
            return
        b = self.store.batch()
        b.delete_range(b"\x00", b"\xff" * 20, self.store.handle["cache"])
        self.store.write(b, durable=False)
        self._seq = 0
        self.l2.bytes = 0

    def stats(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "l1": self.l1.as_dict(self.l1_limit),
            "l2": self.l2.as_dict(self.l2_limit) if self.store is not None else None,
            "l3": self.l3.stats() if self.l3 is not None else None,
        }
