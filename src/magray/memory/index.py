"""The derived, in-memory side of a store: filter columns plus one vector index.

The index keeps, for each live record of every layer, its hnswlib label, id, layer,
creation time and interned project, session, kind and tags (the columns filters run
on), and its vector in one of:

- an **exact matrix** (float32, unit rows), searched with the native top-k, while the
  store is small (below ``exact_threshold``) or while its graph is being built;
- an **hnswlib graph** (inner product on unit vectors), once it is large.

The layer is a column like the others: a search over every layer is one graph search,
one over some layers goes through the filter path, and a promotion changes a column
without moving a vector.

Everything here can be rebuilt from the store. A snapshot (graph or matrix, columns and
the store sequence it reflects) is written atomically: a new directory, files fsynced,
then a pointer file replaced by rename.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from magray.config import MemoryConfig
from magray.errors import CorruptStoreError
from magray.memory.record import Layer

NO_CODE = -1


class Interner:
    """Strings <-> small ints for the filter columns (one table per store, thread-safe)."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self._strings: list[str] = []
        self._lock = threading.Lock()

    def code(self, s: str | None) -> int:
        if s is None:
            return NO_CODE
        c = self._codes.get(s)
        if c is None:
            with self._lock:
                c = self._codes.get(s)
                if c is None:
                    c = len(self._strings)
                    self._strings.append(s)
                    self._codes[s] = c
        return c

    def lookup(self, s: str) -> int | None:
        return self._codes.get(s)

    def string(self, code: int) -> str:
        return self._strings[code]


@dataclass(slots=True)
class Row:
    """The filter columns of one record."""

    label: int
    id: bytes
    layer: int  # Layer.code
    created_ms: int
    project: str | None
    session: str | None
    kind: str
    tags: tuple[str, ...]


@dataclass(slots=True)
class Filter:
    """Conditions on the columns; None means no condition. tags match any-of, layers
    (Layer codes) any-of."""

    layers: tuple[int, ...] | None = None
    tags: tuple[str, ...] | None = None
    project: str | None = None
    session: str | None = None
    kind: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    labels: np.ndarray | None = None  # int64: only these records (contains=)

    def active(self) -> bool:
        return any(
            v is not None
            for v in (
                self.labels,
                self.layers,
                self.tags,
                self.project,
                self.session,
                self.kind,
                self.since_ms,
                self.until_ms,
            )
        )


class RWLock:
    """Many readers or one writer; a waiting writer holds new readers back."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting = 0

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


class _Read:
    def __init__(self, lock: RWLock) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        self.lock.acquire_read()

    def __exit__(self, *exc: object) -> None:
        self.lock.release_read()


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class _Write(_Read):
    def __enter__(self) -> None:
        self.lock.acquire_write()

    def __exit__(self, *exc: object) -> None:
        self.lock.release_write()


def release_rows(a: np.ndarray, start: int, stop: int) -> int:
    """Hand the memory pages that rows [start, stop) of the C-contiguous array a fully
    cover back to the operating system (``madvise(MADV_DONTNEED)``); returns the bytes
    released. The rows' contents are undefined afterwards (zeros on Linux) until written
    again, which maps fresh pages. Rows sharing a page with a row outside the range keep
    their bytes. A no-op (0) off Linux."""
    if sys.platform != "linux" or stop <= start or not a.flags.c_contiguous:
        return 0
    import ctypes
    import mmap

    global _madvise
    if _madvise is None:
        libc = ctypes.CDLL(None, use_errno=True)
        _madvise = libc.madvise
        _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _madvise.restype = ctypes.c_int
    page = mmap.PAGESIZE
    first = a.ctypes.data + start * a.strides[0]
    last = a.ctypes.data + stop * a.strides[0]
    lo = -(-first // page) * page
    hi = last // page * page
    if hi <= lo or _madvise(lo, hi - lo, _MADV_DONTNEED) != 0:
        return 0
    return hi - lo


_madvise: Any = None
_MADV_DONTNEED = 4


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: Path) -> str:
    """XXH3-128 of a file's bytes, read through a memory map (no copy in memory)."""
    import mmap

    from magray.kernels import hash128

    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return hash128(b"").hex()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)
            try:
                return hash128(view).hex()
            finally:
                view.release()


SNAPSHOT_DIR = "vectors"  # under the store's index/ directory


class VectorIndex:
    """Columns and vectors of every record of a store. Mutations are serialised by the
    caller (the engine's write lock); searches may run concurrently with them."""

    def __init__(self, dim: int, config: MemoryConfig, strings: Interner) -> None:
        self.dim = dim
        self.config = config
        self.strings = strings
        self._rw = RWLock()
        cap = 64
        self.n = 0  # rows used (alive or not)
        self.labels = np.zeros(cap, np.int64)
        self.ids = np.zeros((cap, 16), np.uint8)
        self.layer = np.zeros(cap, np.int8)
        self.created = np.zeros(cap, np.int64)
        self.project = np.full(cap, NO_CODE, np.int32)
        self.session = np.full(cap, NO_CODE, np.int32)
        self.kind = np.full(cap, NO_CODE, np.int32)
        self.alive = np.zeros(cap, bool)
        self.tags: dict[int, set[int]] = {}  # tag code -> labels
        self.row_tags: dict[int, tuple[int, ...]] = {}  # label -> tag codes
        self.pos: dict[int, int] = {}  # label -> row
        self.matrix: np.ndarray | None = np.zeros((cap, dim), np.float32)  # exact vectors by row
        self.graph: Any = None  # hnswlib.Index
        self.graph_deleted = 0
        self.rebuilding = False
        # While a graph is built: the graph under construction (searched for the rows it
        # already holds), each row's vector version, and the version the new graph holds
        # (-1: not in it yet). A row is answered from the partial graph only when the two
        # agree; every other row is scanned exactly from the matrix.
        self._partial: Any = None
        self.version = np.zeros(cap, np.int32)
        self.graph_version = np.full(cap, -1, np.int32)
        self._rebuild_deleted: list[int] | None = None
        self._cursor = 0  # rows below it have been visited by the build
        # Rows below it had their matrix pages released by the build: the new graph holds
        # them, and only the rows it does not hold with their current vector (replaced
        # during the build) are still in the matrix. See _row_vectors.
        self._released = 0
        self._replaced: set[int] = set()  # rows whose vector was replaced during a build
        # While a graph is built and searched: an int8 copy of the matrix rows past the
        # cursor (kernels.quantize_i8), so that they are scanned at a quarter of the
        # bytes and only the best candidates are rescored from the matrix. Made by the
        # build thread once a search asks for it (_q8_wanted): a build that no search
        # meets (a bulk load) costs no memory for it. Rows a writer adds or replaces are
        # quantised as they are written; _q8_ready once the build has quantised the rest.
        self._q8: np.ndarray | None = None
        self._q8_ready = False
        self._q8_wanted = False
        self._rebuild_thread: threading.Thread | None = None
        self.snapshot_seq = 0  # store sequence of the snapshot this state started from
        self.changes_since_save = 0
        # Vectors of labels, read from where the vectors are kept (the engine's store):
        # a graph hands out its own only at about 20 us a row.
        self.vectors_of: Callable[[np.ndarray], np.ndarray] | None = None

    # -- size -----------------------------------------------------------------------

    @property
    def count(self) -> int:
        return len(self.pos)

    @property
    def state(self) -> str:
        if self.rebuilding:
            return "rebuilding"
        return "graph" if self.graph is not None else "exact"

    def _grow(self, need: int) -> None:
        cap = len(self.labels)
        if need <= cap:
            return
        new = max(need, cap * 2)

        def grown(a: np.ndarray, fill: Any = 0) -> np.ndarray:
            out = np.full((new,) + a.shape[1:], fill, a.dtype)
            out[: self.n] = a[: self.n]
            return out

        self.labels = grown(self.labels)
        self.ids = grown(self.ids)
        self.layer = grown(self.layer)
        self.created = grown(self.created)
        self.project = grown(self.project, NO_CODE)
        self.session = grown(self.session, NO_CODE)
        self.kind = grown(self.kind, NO_CODE)
        self.alive = grown(self.alive, False)
        self.version = grown(self.version)
        self.graph_version = grown(self.graph_version, -1)
        if self._q8 is not None:
            # Searches read it past the cursor only; below it, and past n, it takes no pages.
            q8 = np.zeros((new, self.dim), np.int8)
            lo = min(self._cursor, self.n)
            q8[lo : self.n] = self._q8[lo : self.n]
            self._q8 = q8
        if self.matrix is not None:
            self.matrix = grown(self.matrix)
            if self._released:  # the copy mapped the released rows again
                released, self._released = self._released, 0
                self._release_matrix(released)

    # -- mutations (caller holds the engine write lock) -----------------------------

    def add(self, rows: Sequence[Row], vectors: np.ndarray) -> None:
        """Insert (or replace) records; vectors are unit float32 rows."""
        if not rows:
            return
        fresh = [i for i, r in enumerate(rows) if r.label not in self.pos]
        replaced = [i for i, r in enumerate(rows) if r.label in self.pos]
        with _Write(self._rw):
            for i in replaced:
                p = self.pos[rows[i].label]
                self._set_row(p, rows[i])
                self.version[p] += 1  # a graph being built holds the old vector, if any
                if self.rebuilding:
                    self._replaced.add(p)
                if self.matrix is not None:
                    self.matrix[p] = vectors[i]
                if self._q8 is not None and p >= self._cursor:  # read past it only
                    from magray.kernels import quantize_i8

                    self._q8[p] = quantize_i8(vectors[i : i + 1])[0]
            if fresh:
                self._grow(self.n + len(fresh))
                start = self.n
                for j, i in enumerate(fresh):
                    self.pos[rows[i].label] = start + j
                    self._set_row(start + j, rows[i])
                self.n += len(fresh)
                if self.matrix is not None:
                    self.matrix[start : start + len(fresh)] = vectors[fresh]
                if self._q8 is not None:
                    from magray.kernels import quantize_i8

                    self._q8[start : start + len(fresh)] = quantize_i8(vectors[fresh])
            if self.graph is not None:
                labels = np.array([r.label for r in rows], np.int64)
                need = self.graph.get_current_count() + len(fresh)
                if need > self.graph.get_max_elements():
                    self.graph.resize_index(max(need, 2 * self.graph.get_max_elements()))
                self.graph.add_items(vectors, labels, num_threads=self._threads(len(rows)))
        self.changes_since_save += len(rows)

    def _threads(self, n: int) -> int:
        return 1 if n < 64 else self.config.threads

    def _set_row(self, p: int, r: Row) -> None:
        self.labels[p] = r.label
        self.ids[p] = np.frombuffer(r.id, np.uint8)
        self.layer[p] = r.layer
        self.created[p] = r.created_ms
        self.project[p] = self.strings.code(r.project)
        self.session[p] = self.strings.code(r.session)
        self.kind[p] = self.strings.code(r.kind)
        self.alive[p] = True
        old = self.row_tags.pop(r.label, ())
        for t in old:
            s = self.tags.get(t)
            if s is not None:
                s.discard(r.label)
        codes = tuple(self.strings.code(t) for t in r.tags)
        if codes:
            self.row_tags[r.label] = codes
            for t in codes:
                self.tags.setdefault(t, set()).add(r.label)

    def update_columns(self, rows: Sequence[Row]) -> None:
        """New column values (layer, tags, ...) for records already indexed, under one
        lock; their vectors stay where they are."""
        changed = 0
        with _Write(self._rw):
            for row in rows:
                p = self.pos.get(row.label)
                if p is not None:
                    self._set_row(p, row)
                    changed += 1
        self.changes_since_save += changed

    def set_layer(self, labels: Sequence[int], layer: int) -> None:
        """Move indexed records to another layer (its code): one column write under one
        lock; their vectors stay where they are. Labels not in the index are skipped."""
        with _Write(self._rw):
            found = [p for p in map(self.pos.get, labels) if p is not None]
            self.layer[found] = layer
        self.changes_since_save += len(found)

    def remove(self, labels: Iterable[int]) -> int:
        removed = 0
        with _Write(self._rw):
            for label in labels:
                p = self.pos.pop(label, None)
                if p is None:
                    continue
                self.alive[p] = False
                for t in self.row_tags.pop(label, ()):
                    s = self.tags.get(t)
                    if s is not None:
                        s.discard(label)
                if self.graph is not None:
                    try:
                        self.graph.mark_deleted(label)
                        self.graph_deleted += 1
                    except RuntimeError:
                        pass  # not in the graph (added while it was rebuilt): nothing to do
                if self._rebuild_deleted is not None:
                    self._rebuild_deleted.append(label)
                removed += 1
        self.changes_since_save += removed
        return removed

    def id_of(self, label: int) -> bytes | None:
        p = self.pos.get(label)
        return None if p is None else self.ids[p].tobytes()

    def ids_of(self, labels: Sequence[int]) -> list[bytes | None]:
        """The 16-byte record id of each label (None for one no longer indexed), read
        in one gather: a search maps its k labels at once."""
        pos = self.pos
        found = [pos.get(label) for label in labels]
        rows = [p for p in found if p is not None]
        block = self.ids[rows].tobytes()
        ids: list[bytes | None] = [block[i : i + 16] for i in range(0, len(block), 16)]
        if len(rows) == len(found):
            return ids
        it = iter(ids)
        return [None if p is None else next(it) for p in found]

    def label_ids(self) -> Iterable[tuple[int, bytes]]:
        for label, p in list(self.pos.items()):
            yield label, self.ids[p].tobytes()

    def layer_counts(self) -> list[int]:
        """Live records per layer, indexed by Layer.code."""
        with _Read(self._rw):
            live = self.layer[: self.n][self.alive[: self.n]]
            return [int(c) for c in np.bincount(live, minlength=len(Layer))]

    # -- search ---------------------------------------------------------------------

    def _candidates(self, f: Filter) -> np.ndarray:
        """A boolean mask over the rows: alive and passing the filter."""
        n = self.n
        mask = self.alive[:n].copy()
        if f.layers is not None:
            if len(f.layers) == 1:
                mask &= self.layer[:n] == f.layers[0]
            else:
                mask &= np.isin(self.layer[:n], np.asarray(f.layers, np.int8))
        for value, column in (
            (f.project, self.project),
            (f.session, self.session),
            (f.kind, self.kind),
        ):
            if value is not None:
                code = self.strings.lookup(value)
                if code is None:
                    return np.zeros(n, bool)
                mask &= column[:n] == code
        if f.since_ms is not None:
            mask &= self.created[:n] >= f.since_ms
        if f.until_ms is not None:
            mask &= self.created[:n] <= f.until_ms
        if f.labels is not None:
            pos = self.pos
            keep = [p for label in f.labels.tolist() if (p := pos.get(label)) is not None]
            only = np.zeros(n, bool)
            only[keep] = True
            mask &= only
        if f.tags is not None:
            labels: set[int] = set()
            for t in f.tags:
                code = self.strings.lookup(t)
                if code is not None:
                    labels |= self.tags.get(code, set())
            tag_mask = np.zeros(n, bool)
            if labels:
                rows = [self.pos[label] for label in labels if label in self.pos]
                tag_mask[rows] = True
            mask &= tag_mask
        out: np.ndarray = mask
        return out

    def filter_labels(self, f: Filter) -> np.ndarray:
        """int64 labels of every live record that passes f."""
        with _Read(self._rw):
            out: np.ndarray = self.labels[: self.n][self._candidates(f)].copy()
            return out

    def search(self, query: np.ndarray, k: int, f: Filter | None) -> tuple[np.ndarray, np.ndarray]:
        """(labels, cosine scores) best first: the k best, plus every record that ties
        with the k-th score, so that the caller can give ties to the older record (the
        kernels and the graph break ties by position, which is not age). Exact where the
        graph is absent, the filter is selective, or the store is small.

        One more than k is fetched; while the last one fetched still ties with the k-th,
        the fetch doubles, up to the whole index.
        """
        want = k + 1
        while True:
            labels, scores = self._search(query, want, f)
            if len(labels) < want or scores[-1] < scores[k - 1] or want >= self.count:
                return labels, scores
            want = min(self.count, want * 2)

    def similarities(self, query: np.ndarray, labels: Sequence[int]) -> dict[int, float]:
        """label -> cosine similarity of the unit query (float32, (dim,)) with that
        label's current vector, exactly, for each label still indexed (others are left
        out). For a hybrid search's text-only candidates: a few dozen labels."""
        with _Read(self._rw):
            pos = self.pos
            known = [(label, p) for label in labels if (p := pos.get(label)) is not None]
            if not known:
                return {}
            if self.matrix is not None:  # no graph yet, or one being built
                rows = np.fromiter((p for _, p in known), np.int64, len(known))
                vecs = self._row_vectors(rows)
            else:
                vecs = self._vectors(np.fromiter((lab for lab, _ in known), np.int64, len(known)))
        scores = vecs @ query
        return {label: float(s) for (label, _), s in zip(known, scores.tolist())}

    def _search(self, query: np.ndarray, k: int, f: Filter | None) -> tuple[np.ndarray, np.ndarray]:
        """Up to k (labels, cosine scores) best first."""
        from magray.kernels import topk

        with _Read(self._rw):
            if not self.pos:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            mask = self._candidates(f) if f is not None and f.active() else None
            rows = None if mask is None else np.flatnonzero(mask)
            if rows is not None and len(rows) == 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            if self.rebuilding and (
                rows is None or len(rows) > max(self.config.exact_threshold, self.count // 20)
            ):
                return self._partial_search(query, k, mask)
            use_graph = self.graph is not None and not self.rebuilding
            if not use_graph:
                assert self.matrix is not None
                if rows is not None and self._released:
                    return self._exact_rows(query, k, rows)
                if rows is None:
                    if self.count == self.n:
                        idx, sc = topk(query, self.matrix[: self.n], k)
                        return self.labels[idx], sc
                    rows = np.flatnonzero(self.alive[: self.n])
                idx, sc = topk(query, self.matrix[: self.n], k, ids=rows.astype(np.int64))
                return self.labels[idx], sc
            if rows is not None and len(rows) <= max(self.config.exact_threshold, self.count // 20):
                # Selective filter: score exactly the few candidates (no recall lost).
                labels = self.labels[rows]
                vecs = self._vectors(labels)
                idx, sc = topk(query, vecs, k)
                return labels[idx], sc
            return self._graph_search(query, k, mask, 0 if rows is None else len(rows))

    def _graph_search(
        self, query: np.ndarray, k: int, mask: np.ndarray | None, passing: int
    ) -> tuple[np.ndarray, np.ndarray]:
        live = self.count
        if mask is None:
            want = min(k, live)
            labels, dist = self._knn(query, want)
            return labels, (1.0 - dist).astype(np.float32)
        # A broad filter: over-fetch in proportion to how much of the index it keeps, and
        # widen until k pass or the whole index has been seen. Only the labels fetched are
        # checked against the filter's row mask.
        pos = self.pos
        fetch = min(live, int(k * live / max(passing, 1) * 1.5) + 16)
        while True:
            labels, dist = self._knn(query, fetch)
            keep = [
                i
                for i, lab in enumerate(labels.tolist())
                if (row := pos.get(lab)) is not None and mask[row]
            ]
            if len(keep) >= k or fetch >= live:
                keep = keep[:k]
                return labels[keep], (1.0 - dist[keep]).astype(np.float32)
            fetch = min(live, fetch * 4)

    def _partial_search(
        self, query: np.ndarray, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search while a graph is built. The rows below the build's cursor that the
        partial graph holds with their current vector are searched through it; the rows
        from the cursor on (a contiguous block) and the few replaced below it are scored
        exactly (a large block without a filter through its int8 copy first, see
        _tail_search); the two are merged by score."""
        from magray.kernels import topk

        assert self.matrix is not None
        n, cur, g = self.n, min(self._cursor, self.n), self._partial
        alive, matrix = self.alive, self.matrix
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if mask is None:
            dead = int(np.count_nonzero(~alive[cur:n]))
            if self._q8 is not None and self._q8_ready and n - cur >= self._Q8_MIN_ROWS:
                idx, sc = self._tail_search(query, cur, n, k + dead)
            else:
                if n - cur >= self._Q8_MIN_ROWS:
                    self._q8_wanted = True  # the build makes the copy between chunks
                idx, sc = topk(query, matrix[cur:n], k + dead)
            keep = alive[cur + idx]
            parts.append((self.labels[cur + idx[keep]], sc[keep]))
            below = [p for p in self._replaced if p < cur and alive[p]]
        else:
            tail = cur + np.flatnonzero(mask[cur:n])
            parts.append(self._exact_rows(query, k, tail))
            below = [p for p in self._replaced if p < cur and mask[p]]
        stale = np.array([p for p in below if self.graph_version[p] != self.version[p]], np.int64)
        if len(stale):
            parts.append(self._exact_rows(query, k, stale))
        if cur:
            try:
                parts.append(self._served_search(query, k, g, cur, mask))
            except RuntimeError:
                # The graph's top level moved under this search: answer exactly.
                rows = np.flatnonzero(alive[:n] if mask is None else mask)
                return self._exact_rows(query, k, rows)
        labels = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[1] for p in parts])
        order = np.argsort(-scores, kind="stable")[:k]
        return labels[order], scores[order]

    def _tail_search(
        self, query: np.ndarray, cur: int, n: int, want: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top want of matrix rows [cur, n) (indices relative to cur, cosine scores):
        candidates from the int8 copy, rescored from the matrix. The candidates widen
        until the last one's int8 score, plus a margin, is below the want-th exact
        score, so that no row left out could enter or tie unless its int8 score is off
        by more than the margin: six standard deviations of the rounding error along the
        query (each coordinate's error is uniform in +-0.5/127, so the error of a score
        has sigma |q| / (127 sqrt(12))), plus the query's own rounding. Over 100k rows
        and 50 queries of each benchmark set, the largest error seen was 5.2 sigma; the
        worst case (Cauchy-Schwarz, about sqrt(d) / 2 times larger) would need hundreds
        of candidates on every search."""
        from magray.kernels import i8_query_scale, topk, topk_i8

        assert self._q8 is not None and self.matrix is not None
        rows = n - cur
        s = i8_query_scale(query)
        margin = 6.0 * float(np.linalg.norm(query)) / (127.0 * np.sqrt(12.0)) + 1e-5
        if s:
            margin += 0.5 * np.sqrt(self.dim) / s  # the query's rounding (kernels.topk_i8)
        c = min(rows, max(4 * want, self._Q8_CANDIDATES))
        while True:
            cand, approx = topk_i8(query, self._q8[cur:n], c)
            idx, sc = topk(query, self.matrix[cur:n], want, ids=cand)
            if c >= rows or (len(sc) == want and float(approx[-1]) + margin < float(sc[-1])):
                return idx, sc
            c = min(rows, c * 8)

    _Q8_MIN_ROWS = 4096  # below this, the float32 scan of the tail is as fast
    _Q8_CANDIDATES = 128  # candidates of the int8 scan rescored at first (see _tail_search)
    _Q8_BLOCK = 8192  # rows quantised at a time when the copy is made (12 MiB of scratch)

    def _exact_rows(
        self, query: np.ndarray, k: int, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        from magray.kernels import topk

        assert self.matrix is not None
        rows = rows.astype(np.int64)
        if self._released and len(rows) and int(rows.min()) < self._released:
            idx, sc = topk(query, self._row_vectors(rows), k)
            return self.labels[rows[idx]], sc
        idx, sc = topk(query, self.matrix[: self.n], k, ids=rows)
        return self.labels[idx], sc

    def _row_vectors(self, rows: np.ndarray) -> np.ndarray:
        """float32 (len(rows), dim): the current vectors of rows (int64), from the matrix,
        or for rows whose matrix pages a build released, from where the vectors are kept
        (the store; without one, the graph being built, which holds them)."""
        assert self.matrix is not None
        out: np.ndarray = self.matrix[rows]
        gone = (rows < self._released) & (self.graph_version[rows] == self.version[rows])
        if gone.any():
            labels = self.labels[rows[gone]]
            if self.vectors_of is not None:
                out[gone] = self.vectors_of(labels)
            else:
                out[gone] = np.asarray(self._partial.get_items(labels), np.float32)
        return out

    def _release_matrix(self, upto: int) -> None:
        """Release the matrix pages of the rows from self._released to upto, which the
        graph being built holds; rows it does not hold with their current vector keep
        theirs. The caller holds the write lock."""
        assert self.matrix is not None
        lo = self._released
        if upto <= lo:
            return
        part = slice(lo, upto)
        keep = lo + np.flatnonzero(
            self.alive[part] & (self.graph_version[part] != self.version[part])
        )
        saved = self.matrix[keep]
        release_rows(self.matrix, lo, upto)
        self.matrix[keep] = saved
        if self._q8 is not None:  # searches read it past the cursor only
            release_rows(self._q8, lo, upto)
        self._released = upto

    def _restore_matrix(self) -> None:
        """Bring back the released rows of the matrix (a build stopped before it was
        done, so the matrix must serve every row again). The caller holds the write lock."""
        if not self._released or self.matrix is None:
            return
        rows = np.flatnonzero(self.alive[: self._released])
        rows = rows[self.graph_version[rows] == self.version[rows]]
        if len(rows):
            self.matrix[rows] = self._row_vectors(rows)
        self._released = 0

    def _served_search(
        self, query: np.ndarray, k: int, g: Any, cur: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best labels of the partial graph that it holds with their current
        vector, that are alive, below the cursor and (with a mask) pass the filter."""
        pos, alive, gv, ver = self.pos, self.alive, self.graph_version, self.version
        inserted = int(g.get_current_count())
        fetch = min(inserted, k + 16)
        while True:
            labels, dist = self._knn(query, fetch, g)
            keep = [
                i
                for i, lab in enumerate(labels.tolist())
                if (row := pos.get(lab)) is not None
                and row < cur
                and alive[row]
                and gv[row] == ver[row]
                and (mask is None or mask[row])
            ]
            if len(keep) >= k or fetch >= inserted:
                keep = keep[:k]
                return labels[keep], (1.0 - dist[keep]).astype(np.float32)
            fetch = min(inserted, fetch * 4)

    def _knn(self, query: np.ndarray, k: int, graph: Any = None) -> tuple[np.ndarray, np.ndarray]:
        g = self.graph if graph is None else graph
        g.set_ef(max(self.config.hnsw_ef_search, k))
        while True:
            try:
                labels, dist = g.knn_query(query, k=k, num_threads=1)
                return labels[0].astype(np.int64), dist[0]
            except RuntimeError:
                # Fewer reachable elements than k (many deletions): ask for fewer.
                if k <= 1:
                    return np.zeros(0, np.int64), np.zeros(0, np.float32)
                k = max(1, k // 2)

    # -- graph building -------------------------------------------------------------

    def _new_graph(self, capacity: int) -> Any:
        import hnswlib

        g = hnswlib.Index(space="ip", dim=self.dim)
        g.init_index(
            max_elements=max(capacity, 16),
            M=self.config.hnsw_m,
            ef_construction=self.config.hnsw_ef_construction,
            random_seed=100,
        )
        g.set_ef(self.config.hnsw_ef_search)
        return g

    def needs_graph(self) -> bool:
        return (
            self.graph is None and not self.rebuilding and self.count >= self.config.exact_threshold
        )

    def needs_rebuild(self) -> bool:
        if self.graph is None or self.rebuilding:
            return False
        total = int(self.graph.get_current_count())
        return total > 0 and self.graph_deleted / total > self.config.rebuild_deleted_fraction

    def _vectors(self, labels: np.ndarray) -> np.ndarray:
        """float32 unit vectors of labels that the graph holds."""
        if self.vectors_of is not None:
            return self.vectors_of(labels)
        return np.ascontiguousarray(self.graph.get_items(labels), dtype=np.float32)

    _BUILD_CHUNK = 2048  # rows per add_items call of a build; searches see each at once
    _RELEASE_ROWS = 65_536  # a build releases the matrix rows it has passed this many at a time

    def start_rebuild(self) -> None:
        """Build a fresh graph in a background thread.

        The build inserts the rows in order, a chunk at a time, outside any lock. Until
        it is done, a search asks the partial graph for the rows it already holds (with
        their current vector) and scans the rest exactly, so results stay complete.

        hnswlib documents ``knn_query`` as unsafe beside ``add_items`` on the same
        index. What can race here is the graph's growth (``resize_index``), which runs
        only under the write lock, and a search that reads the entry point while an
        insertion raises the graph's top level; that search fails with RuntimeError and
        is answered exactly instead (see ``_partial_search``).
        """
        with _Write(self._rw):
            if self.rebuilding:
                return
            if self.matrix is None:
                # Bring every live vector into an exact matrix, in row order.
                rows = np.flatnonzero(self.alive[: self.n])
                matrix = np.zeros((len(self.labels), self.dim), np.float32)
                if len(rows):
                    matrix[rows] = self._vectors(self.labels[rows])
                self.matrix = matrix
            self.rebuilding = True
            self._rebuild_deleted = []
            self.graph_version[:] = -1
            self._cursor = 0
            self._released = 0
            self._replaced = set()
            g = self._new_graph(int(self.count * 1.25) + 64)
            self._partial = g
            self._q8, self._q8_ready, self._q8_wanted = None, False, False

        def build() -> None:
            try:
                cursor = 0
                while True:
                    with _Read(self._rw):
                        n = self.n
                    if cursor >= n:
                        break
                    if self._q8_wanted and self._q8 is None:
                        self._quantize_tail(cursor)
                    end = min(cursor + self._BUILD_CHUNK, n)
                    self._insert_rows(g, np.arange(cursor, end))
                    cursor = self._cursor = end  # after the versions: searches trust them
                    if cursor - self._released >= self._RELEASE_ROWS:
                        # The graph holds these rows now: their matrix copy can go, so
                        # that the two are not both held whole at the end of the build.
                        with _Write(self._rw):
                            self._release_matrix(cursor)
                # Catch up with what changed meanwhile: rows added after the cursor
                # passed, vectors replaced, records deleted. In bulk outside the lock
                # while the backlog is large, then the last few and the swap under it.
                while True:
                    with _Write(self._rw):
                        stale = self._stale_rows()
                        if len(stale) < 256:
                            self._insert_rows(g, stale, locked=True)
                            deleted = self._mark_deleted(g, self._rebuild_deleted or [])
                            self.graph = g
                            self.graph_deleted = deleted
                            self.matrix = None
                            self._q8, self._q8_ready = None, False
                            self._released = 0
                            self.rebuilding = False
                            self._partial = None
                            self._rebuild_deleted = None
                            self._replaced = set()
                            break
                    self._insert_rows(g, stale)
            except BaseException:
                with _Write(self._rw):
                    try:
                        self._restore_matrix()
                    finally:
                        self._rebuild_deleted = None
                        self._partial = None
                        self._q8, self._q8_ready = None, False
                        self.rebuilding = False
                raise

        t = threading.Thread(target=build, name="magray-index-build", daemon=True)
        self._rebuild_thread = t
        t.start()

    def _quantize_tail(self, cursor: int) -> None:
        """Make the int8 copy of the rows from cursor on (the build thread, between two
        chunks): allocated under the write lock, so that every row a writer adds or
        replaces from then on is quantised as it is written; the rows already there are
        quantised in blocks under the read lock, searches going on meanwhile."""
        from magray.kernels import quantize_i8

        with _Write(self._rw):
            self._q8 = np.zeros((len(self.labels), self.dim), np.int8)  # pages on first use
            upto = self.n
        for lo in range(cursor, upto, self._Q8_BLOCK):
            with _Read(self._rw):
                hi = min(lo + self._Q8_BLOCK, upto)
                assert self._q8 is not None and self.matrix is not None
                self._q8[lo:hi] = quantize_i8(self.matrix[lo:hi])
        self._q8_ready = True

    def _stale_rows(self) -> np.ndarray:
        """Live rows whose current vector the graph being built does not hold."""
        n = self.n
        return np.flatnonzero(self.alive[:n] & (self.graph_version[:n] != self.version[:n]))

    def _insert_rows(self, g: Any, rows: np.ndarray, locked: bool = False) -> None:
        """Insert the current vectors of rows into a graph being built, then record the
        versions inserted so that searches use the graph for them."""
        if not len(rows):
            return
        with _NoLock() if locked else _Read(self._rw):
            assert self.matrix is not None
            live = rows[self.alive[rows]]
            labels = self.labels[live]
            vectors = self.matrix[live]
            versions = self.version[live]
        if not len(live):
            return
        need = g.get_current_count() + len(live)
        if need > g.get_max_elements():
            # Growing reallocates the graph: never beside a search of it.
            with _NoLock() if locked else _Write(self._rw):
                g.resize_index(max(need, 2 * g.get_max_elements()))
        g.add_items(vectors, labels, num_threads=self._threads(len(live)))
        with _NoLock() if locked else _Read(self._rw):
            self.graph_version[live] = versions

    def _mark_deleted(self, g: Any, labels: list[int]) -> int:
        deleted = 0
        for label in labels:
            try:
                g.mark_deleted(label)
                deleted += 1
            except RuntimeError:
                pass  # never reached the new graph
        return deleted

    def wait_rebuilt(self, timeout: float | None = None) -> None:
        t = self._rebuild_thread
        if t is not None:
            t.join(timeout)

    # -- snapshots ------------------------------------------------------------------

    def save(self, root: Path, seq: int, fingerprint: str) -> bool:
        """Write a snapshot reflecting store sequence seq; False while the graph is rebuilt."""
        with _Read(self._rw):
            if self.rebuilding:
                return False
            layer_dir = root / SNAPSHOT_DIR
            layer_dir.mkdir(parents=True, exist_ok=True)
            snap = layer_dir / f"snap-{seq:020d}"
            tmp = layer_dir / f".tmp-{seq:020d}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            rows = np.flatnonzero(self.alive[: self.n])
            files: dict[str, str] = {}
            cols: dict[str, np.ndarray] = {
                "labels": self.labels[rows],
                "ids": self.ids[rows],
                "layer": self.layer[rows],
                "created": self.created[rows],
                "project": self.project[rows],
                "session": self.session[rows],
                "kind": self.kind[rows],
            }
            tag_lists = [self.row_tags.get(int(label), ()) for label in cols["labels"]]
            cols["tag_offsets"] = np.cumsum([0] + [len(t) for t in tag_lists]).astype(np.int64)
            cols["tag_codes"] = np.array([c for t in tag_lists for c in t], np.int32)
            for name, arr in cols.items():
                np.save(tmp / f"{name}.npy", arr)
                files[f"{name}.npy"] = ""
            if self.graph is not None:
                self.graph.save_index(str(tmp / "graph.hnsw"))
                files["graph.hnsw"] = ""
            else:
                assert self.matrix is not None
                np.save(tmp / "matrix.npy", self.matrix[rows])
                files["matrix.npy"] = ""
            for name in files:
                _fsync_file(tmp / name)
                files[name] = file_digest(tmp / name)
            meta = {
                "seq": seq,
                "dim": self.dim,
                "count": int(len(rows)),
                "graph_deleted": int(self.graph_deleted) if self.graph is not None else 0,
                "fingerprint": fingerprint,
                "strings": [self.strings.string(i) for i in range(len(self.strings._strings))],
                "files": files,
                "hnsw": {
                    "M": self.config.hnsw_m,
                    "ef_construction": self.config.hnsw_ef_construction,
                },
            }
            (tmp / "meta.json").write_text(json.dumps(meta))
            _fsync_file(tmp / "meta.json")
            _fsync_dir(tmp)
            if snap.exists():
                shutil.rmtree(snap)
            os.rename(tmp, snap)
            pointer = layer_dir / "current"
            pointer_tmp = layer_dir / "current.tmp"
            pointer_tmp.write_text(snap.name)
            _fsync_file(pointer_tmp)
            os.replace(pointer_tmp, pointer)
            _fsync_dir(layer_dir)
            for old in layer_dir.iterdir():
                if old.is_dir() and old.name != snap.name:
                    shutil.rmtree(old, ignore_errors=True)
            self.snapshot_seq = seq
            self.changes_since_save = 0
            return True

    @classmethod
    def load(
        cls,
        root: Path,
        dim: int,
        config: MemoryConfig,
        strings: Interner,
        fingerprint: str,
    ) -> VectorIndex | None:
        """The last snapshot, or None if there is none. Raises CorruptStoreError if it
        exists but fails its checks (the caller rebuilds from the store)."""
        layer_dir = root / SNAPSHOT_DIR
        pointer = layer_dir / "current"
        if not pointer.exists():
            return None
        try:
            snap = layer_dir / pointer.read_text().strip()
            meta = json.loads((snap / "meta.json").read_text())
            if meta["dim"] != dim or meta["fingerprint"] != fingerprint:
                raise CorruptStoreError("the index snapshot was made for another model")
            for name, digest in meta["files"].items():
                if file_digest(snap / name) != digest:
                    raise CorruptStoreError(f"{snap / name} fails its checksum")
            idx = cls(dim, config, strings)
            if "graph.hnsw" in meta["files"]:
                idx.matrix = None  # the graph holds the vectors: never allocate a matrix
            saved = meta["strings"]
            remap = np.array([strings.code(s) for s in saved] + [NO_CODE], np.int32)

            def codes(a: np.ndarray) -> np.ndarray:
                return remap[np.where(a == NO_CODE, len(saved), a)]

            cols = {
                n[:-4]: np.load(snap / n)
                for n in meta["files"]
                if n.endswith(".npy") and n != "matrix.npy"
            }
            n = len(cols["labels"])
            idx._grow(n)
            idx.n = n
            idx.labels[:n] = cols["labels"]
            idx.ids[:n] = cols["ids"]
            idx.layer[:n] = cols["layer"]
            idx.created[:n] = cols["created"]
            idx.project[:n] = codes(cols["project"])
            idx.session[:n] = codes(cols["session"])
            idx.kind[:n] = codes(cols["kind"])
            idx.alive[:n] = True
            labels = cols["labels"].tolist()
            idx.pos = dict(zip(labels, range(n)))
            # Only the rows that have tags are visited (most records have none).
            offsets, tag_codes = cols["tag_offsets"].tolist(), codes(cols["tag_codes"]).tolist()
            for i in np.flatnonzero(np.diff(cols["tag_offsets"]) > 0).tolist():
                label = labels[i]
                t = tuple(tag_codes[offsets[i] : offsets[i + 1]])
                idx.row_tags[label] = t
                for c in t:
                    idx.tags.setdefault(c, set()).add(label)
            if "graph.hnsw" in meta["files"]:
                import hnswlib

                g = hnswlib.Index(space="ip", dim=dim)
                deleted = int(meta.get("graph_deleted", 0))
                g.load_index(str(snap / "graph.hnsw"), max_elements=max(n + deleted, 16))
                g.set_ef(config.hnsw_ef_search)
                # The graph also holds the elements marked deleted since it was built.
                if g.get_current_count() != n + deleted:
                    raise CorruptStoreError(
                        f"the graph holds {g.get_current_count()} elements, "
                        f"columns {n} + {deleted} deleted"
                    )
                idx.graph = g
                idx.graph_deleted = deleted
                idx.matrix = None
            else:
                matrix = np.load(snap / "matrix.npy")
                if matrix.shape != (n, dim):
                    raise CorruptStoreError(f"the exact matrix has shape {matrix.shape}")
                assert idx.matrix is not None
                idx.matrix[:n] = matrix
            idx.snapshot_seq = int(meta["seq"])
            return idx
        except CorruptStoreError:
            raise
        except Exception as exc:
            raise CorruptStoreError(f"the index snapshot is unreadable: {exc}") from exc
