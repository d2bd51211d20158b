"""Memory: the library API the CLI, the server and users' programs all call.

Data flow (one path each way; each step lives in the module named):

    add:    validate.py -> embedding.py (unless vectors given) -> duplicate check
            (texthash.py) -> one WriteBatch (record, vector, layer/time, label, text
            hash, oplog, seq) -> index.py (VectorIndex.add) -> return ids
    search: query.py (plan: checked arguments -> a Filter) -> embedding.py (query
            vector) -> index.py (VectorIndex.search: graph, exact native top-k when
            small or filtered selectively, partial graph + exact rest while a graph
            builds) and/or fulltext.py (BM25); hybrid: hybrid.py (both lists, each
            candidate scored by both) -> fusion.py -> query.py (rank:
            ties to the older record, score floor) -> multi_get records -> codec.py
            (record_of) -> access.py (accesses counted, written in batches) -> hits

The lifecycle rules (lifecycle.py), backups and exports (backup.py) and re-embedding
(reembed.py) take plain data or the narrow ``ports.Engine`` protocol, never this class.
RocksDB is the truth; the indexes are derived (indexing.py, fulltext.py) and are caught
up from the oplog, or rebuilt from the store, whenever they are missing, stale or
damaged. Metrics and operation logs: observe.py.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from magray.config import MemoryConfig
from magray.embed.base import Embedder
from magray.errors import (
    CorruptStoreError,
    EmbedderMismatchError,
    InvalidInputError,
    MagrayError,
    NotFoundError,
    ReadOnlyError,
    StoreError,
    storage_error,
)
from magray.memory import hybrid, validate
from magray.memory import ids as idcodec
from magray.memory.access import AccessLog, Pending
from magray.memory.codec import (
    OP_ADD,
    OP_DEL,
    OP_META,
    StoredRecord,
    Summaries,
    label_key,
    layer_time_key,
    lifecycle_summary,
    promotable_key,
    read_summaries,
    record_of,
    text_key,
    vector_bytes,
    vectors_from,
)
from magray.memory.embedding import EmbeddingPath
from magray.memory.fulltext import FullText
from magray.memory.fusion import blend
from magray.memory.index import SNAPSHOT_DIR, Interner, Row, VectorIndex
from magray.memory.indexing import apply_ops, index_from_store, oplog_after, row_of
from magray.memory.lifecycle import promotable, promotable_rule
from magray.memory.lock import WriterLock
from magray.memory.observe import Instruments
from magray.memory.query import plan as query_plan
from magray.memory.query import rank
from magray.memory.record import (
    Hit,
    ImportReport,
    Layer,
    LifecycleReport,
    Move,
    Record,
    make_hit,
)
from magray.memory.store import (
    SCHEMA_VERSION,
    Store,
    pack,
    u64,
    unpack,
)
from magray.memory.texthash import TextHolders
from magray.memory.textindex import TEXT_DIR
from magray.ops.tracing import span

_UNSET: Any = object()


class _NothingToWrite(Exception):
    """Raised inside Memory._writing when the batch turned out to have nothing to do."""


_LOG = logging.getLogger("magray.memory")
Clock = Callable[[], float]
_SCAN_CHUNK = 65_536  # layer_time entries summarised at a time by lifecycle planning
_READ_CHUNK = 4096  # records read per multi_get

_OPEN: weakref.WeakSet[Memory] = weakref.WeakSet()  # stores this process has not closed
if hasattr(os, "register_at_fork"):  # a forked child must not close its parent's stores
    os.register_at_fork(after_in_child=_OPEN.clear)


@atexit.register
def _close_at_exit() -> None:
    """Close the stores a program leaves open, as Python flushes open files at exit.

    Without it, a graph build still running in its daemon thread is torn down inside
    hnswlib by the interpreter's shutdown, and the process aborts (SIGABRT) instead of
    exiting; closing waits for the build, flushes access statistics and saves the index
    snapshot, so the next open does not rebuild either."""
    for mem in list(_OPEN):
        try:
            mem.close()
        except Exception:
            _LOG.exception("closing the store at %s at exit failed", mem.path)


class Memory:
    """A memory store: three layers of records, searchable together. Thread-safe.

    Open it with :func:`magray.open`; use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        path: Path,
        *,
        embedder: Embedder | None,
        read_only: bool,
        config: MemoryConfig,
        clock: Clock = time.time,
        reembed: bool = False,
    ) -> None:
        self.path = path
        self.config = config
        self.read_only = read_only
        self._clock = clock
        self._embedder = embedder
        self._closed = False
        self._wlock = threading.RLock()  # serialises every change to store and indexes
        self._access = AccessLog(config)
        self._strings = Interner()
        self._lock: WriterLock | None = None
        self._secondary: Path | None = None
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._last_report: dict[str, Any] = {}
        self._applied_seq = 0
        self._obs = Instruments()
        self._index: VectorIndex | None = None  # None until the store has vectors

        if path.exists() and not path.is_dir():
            raise InvalidInputError(f"store path {path} is a file; pass a directory")
        if read_only:
            if not (path / "db").is_dir():
                raise StoreError(f"no magray store at {path}; open it writable once to create it")
            self._secondary = Path(tempfile.mkdtemp(prefix="magray-ro-"))
        else:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create store directory {path}: {exc.strerror}") from exc
            if not os.access(path, os.W_OK):
                if os.statvfs(path).f_flag & os.ST_RDONLY:
                    raise StoreError(
                        f"store directory {path} is on a read-only file system; open it "
                        "with read_only=True (the CLI's list, get, search, stats and "
                        "export do), or copy it to writable storage"
                    )
                raise StoreError(f"store directory {path} is not writable; fix its permissions")
            self._lock = WriterLock(path)
            self._lock.acquire()
        try:
            self.store = Store(
                path, read_only=read_only, secondary_path=self._secondary, sync=config.sync_writes
            )
            self._embedding = EmbeddingPath(embedder, self.store, config, self._obs)
            self._fulltext = FullText(self.store)  # the BM25 index, once the store has vectors
            self._init_meta(reembed)
            if not read_only:
                self._sync_promotable()
            if self.dim:
                self._open_indexes()
        except BaseException as exc:
            # Close what was opened: the exception (and its traceback) may outlive us.
            store = getattr(self, "store", None)
            if store is not None:
                try:
                    store.close()
                except Exception:
                    pass
            self._release()
            if isinstance(exc, Exception) and not isinstance(exc, MagrayError):
                # Whatever a crash, a full disk or read-only media left behind, opening
                # answers with a MagrayError that says what to do.
                if isinstance(exc, OSError):
                    raise storage_error(exc, path, "opening the store") from exc
                raise CorruptStoreError(
                    f"cannot open the store at {path}: {type(exc).__name__}: {exc}; run "
                    "`magray health`, or restore a backup"
                ) from exc
            raise
        if not read_only:
            self._worker = threading.Thread(
                target=self._maintain, name="magray-maintenance", daemon=True
            )
            self._worker.start()
        _OPEN.add(self)

    # -- opening ----------------------------------------------------------------------

    def _init_meta(self, reembed: bool) -> None:
        s = self.store
        version = s.meta("schema")
        if version is None:
            if self.read_only:
                raise StoreError(f"store at {self.path} is not initialised yet")
            b = s.batch()
            s.put_meta(b, "schema", SCHEMA_VERSION)
            s.put_meta(b, "created", self._clock())
            s.write(b)
        elif version != SCHEMA_VERSION:
            raise StoreError(
                f"store at {self.path} has schema {version}, this magray reads {SCHEMA_VERSION}; "
                "use a matching magray version, or export and re-import"
            )
        if s.meta("reembed_commit") is not None and not self.read_only:
            # A re-embed was interrupted while it moved its vectors into place: finish.
            from magray.memory.reembed import finish_reembed

            finish_reembed(self)
        self.dim: int = int(s.meta("dim") or 0)
        self.fingerprint: str = s.meta("fingerprint") or ""
        self._seq: int = int(s.meta("seq") or 0)
        self._next_label: int = int(s.meta("next_label") or 0)
        self._reembed_target: str | None = s.meta("reembed_target")
        e = self._embedder
        if e is None or not self.dim or (e.dim, e.fingerprint) == (self.dim, self.fingerprint):
            return
        if not reembed and self._reembed_target != e.fingerprint:
            raise EmbedderMismatchError(
                f"store at {self.path} holds {self.dim}-d vectors of model "
                f"{self.fingerprint}, but the embedder {e.name} makes {e.dim}-d vectors "
                f"({e.fingerprint}); open with the store's embedder, or pass "
                "reembed=True and call mem.reembed() to convert the store"
            )
        self._reembed_target = e.fingerprint

    def _sync_promotable(self) -> None:
        """Make the ``promotable`` keys anew when the store's were made under other
        thresholds, or by a magray from before they existed: from the layer_time
        summaries of interact and insights, 50k keys to a batch, the rule recorded with
        the last batch (an open interrupted midway starts over)."""
        s = self.store
        rule = promotable_rule(self.config)
        before = s.meta("promotable_rule")
        if before == rule:
            return
        t0 = time.perf_counter()
        with self._wlock:
            handle = s.handle["promotable"]
            b = s.batch()
            for key, _ in s.scan("promotable"):
                b.delete(key, handle)
            s.write(b)
            b, n = s.batch(), 0
            for layer in (Layer.INTERACT, Layer.INSIGHTS):

                def keep(r: Any, layer: Layer = layer) -> Any:
                    return promotable(self.config, layer, r)

                for rec in self._records_of(layer, keep):
                    if keep(rec):
                        b.put(promotable_key(layer, rec.raw_id), b"", handle)
                        n += 1
                        if n % 50_000 == 0:
                            s.write(b)
                            b = s.batch()
            s.put_meta(b, "promotable_rule", rule)
            s.write(b)
        if before is None and not n:
            return  # a new store
        _LOG.info(
            "made the promotable keys of %s under thresholds %s: %d records in %.2f s",
            self.path,
            rule,
            n,
            time.perf_counter() - t0,
        )

    def _open_indexes(self) -> None:
        """Load the index snapshot (or rebuild the index from the store), publish it in
        one assignment, then catch up from the oplog. The per-layer snapshots of older
        magray (index/interact, ...) are never read; a writable open removes them."""
        root = self.path / "index"
        try:
            idx = VectorIndex.load(root, self.dim, self.config, self._strings, self.fingerprint)
        except CorruptStoreError:
            idx = None
        if idx is None or idx.snapshot_seq > self._seq:
            if idx is not None and not self.read_only:
                # Newer than the store (its last writes were not synced): never load it.
                (root / SNAPSHOT_DIR / "current").unlink(missing_ok=True)
            idx = self._index_from_store()
        if not self.read_only:
            for layer in Layer:
                shutil.rmtree(root / layer.value, ignore_errors=True)
        self._publish(idx)
        self._replay(idx.snapshot_seq)
        if idx.needs_graph():
            self._start_rebuild(idx)
        self._open_text()

    def _open_text(self) -> None:
        """Open the full-text index (config full_text) and catch it up in the background;
        a text search before that is done waits for it. Read-only views build theirs in
        memory on first use."""
        if self.config.full_text:
            path = None if self.read_only else self.path / "index" / TEXT_DIR
            self._fulltext.open(path, self._seq)

    def _index_from_store(self) -> VectorIndex:
        """Rebuild the columns and exact matrix from the store (the graph: background)."""
        return index_from_store(
            self.store, self.dim, self.config, self._strings, self._seq, self.fingerprint
        )

    def _replay(self, after: int) -> None:
        """Apply the oplog entries newer than the index snapshot (sequence after)."""
        idx = self._index
        assert idx is not None
        apply_ops(idx, self.store, oplog_after(self.store, after), self.dim, self.fingerprint)
        self._applied_seq = max(self._seq, after)

    # -- observability -------------------------------------------------------------------

    def attach_metrics(self, metrics: Any) -> None:
        """Record latencies of add, search and embed in a magray.ops.metrics.Metrics."""
        self._obs.attach(metrics)

    def metrics_history(self) -> dict[str, Any] | None:
        """The metrics persisted by earlier invocations, merged with this process's."""
        return self._obs.history(self.store)

    def _persist_metrics(self) -> None:
        if not self.read_only:
            self._obs.persist(self.store)

    def resize_cache(self, l1_bytes: int) -> None:
        """Change the in-memory embedding cache bound (the resource manager's knob)."""
        self._embedding.resize_l1(l1_bytes)

    def redis_cache_stats(self) -> dict[str, Any] | None:
        """The shared Redis cache tier's state (as in ``stats()["cache_redis"]``): None
        when none is configured, else its circuit state and, once used, hits, misses,
        errors and the last error."""
        return self._embedding.redis_stats()

    # -- context management ------------------------------------------------------------

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def owned_by(self, container: Any) -> None:
        """The container that built this Memory is closed with it (metrics, resources)."""
        self._container = container

    def close(self) -> None:
        """Flush access statistics, save index snapshots, close RocksDB, release the lock."""
        if self._closed or getattr(self, "_closing", False):
            return
        self._closing = True
        _OPEN.discard(self)
        try:
            self._close()
        finally:
            container, self._container = getattr(self, "_container", None), None
            if container is not None:
                container.close()

    def _close(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join()
        with self._wlock:  # no write may be half-way through when the store closes
            self._close_locked()

    def _close_locked(self) -> None:
        """Each step runs even if an earlier one failed (a full disk fails them all), so
        every handle and the lock are released; then the first failure is raised as a
        StoreError. Nothing acknowledged depends on these steps."""
        errors: list[BaseException] = []
        steps: list[Callable[[], None]] = []
        if not self.read_only:
            steps = [self._wait_builds, self._flush_access, self._save_all, self._persist_metrics]
        steps.append(self._fulltext.close)
        steps.append(self._embedding.close)
        steps.append(self.store.close)
        self._closed = True
        try:
            for step in steps:
                try:
                    step()
                except Exception as exc:
                    errors.append(exc)
        finally:
            self._release()
        if errors:
            raise storage_error(errors[0], self.path, "closing the store") from errors[0]

    def _wait_builds(self) -> None:
        if self._index is not None:
            self._index.wait_rebuilt()
        self._fulltext.join()

    def _save_all(self) -> None:
        self._save_indexes(force=True)

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._secondary is not None:
            shutil.rmtree(self._secondary, ignore_errors=True)
            self._secondary = None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("this Memory is closed; open the store again with magray.open()")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise ReadOnlyError(
                "store was opened with read_only=True; open it writable to change it"
            )

    # -- validation ----------------------------------------------------------------------

    def _text(self, text: Any, what: str = "text") -> str:
        return validate.text(text, what, self.config.max_text_bytes)

    def _vectors(self, vectors: Any, n: int) -> np.ndarray:
        # An empty store takes the dimension of its embedder's vectors, or of the first
        # vectors given to a store without one.
        want = self.dim or (self._embedder.dim if self._embedder is not None else 0)
        held = "holds" if self.dim else f"embeds with {self._embedder_name()}, which makes"
        return validate.vectors(vectors, n, want, held)

    def _embedder_name(self) -> str:
        return "no embedder" if self._embedder is None else str(self._embedder.name)

    # -- embedding ---------------------------------------------------------------------

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Unit vectors of texts from this store's embedder, through its embedding cache
        (queries use the model's query form where it has one)."""
        self._check_open()
        if isinstance(texts, str):
            raise InvalidInputError("embed takes a sequence of texts; wrap one text in a list")
        return self._embed([self._text(t, f"texts[{i}]") for i, t in enumerate(texts)], query=query)

    def _embed(
        self, texts: Sequence[str], *, query: bool = False, migrating: bool = False
    ) -> np.ndarray:
        """Unit vectors for validated texts through the embedding cache (see
        embedding.py). ``migrating``: vectors for a re-embed into this embedder, whose
        fingerprint is not yet the store's."""
        expect = None if migrating or not self.dim else self.fingerprint
        return self._embedding.embed(texts, query=query, expect=expect)

    def _ensure_dim(self, dim: int, batch: Any) -> str:
        """The store's vector fingerprint; the first add fixes it and the dimension (in the
        same batch): the embedder's, or external-<dim> for supplied vectors."""
        if self.dim:
            return self.fingerprint
        e = self._embedder
        fingerprint = e.fingerprint if e is not None else f"external-{dim}"
        self.store.put_meta(batch, "dim", dim)
        self.store.put_meta(batch, "fingerprint", fingerprint)
        if e is not None:
            self.store.put_meta(batch, "embedder", e.name)
        return fingerprint

    def _init_index(self, dim: int, fingerprint: str) -> None:
        """The first vectors of a store: an empty index of that dimension, published
        complete in one assignment, so a search racing the first add sees none or it."""
        if self._index is not None:
            return
        idx = VectorIndex(dim, self.config, self._strings)
        idx.snapshot_seq = self._seq
        self.dim = dim
        self.fingerprint = fingerprint
        self._publish(idx)
        self._open_text()

    # -- adding --------------------------------------------------------------------------

    def add(
        self,
        text: str,
        *,
        layer: Layer | str = Layer.INTERACT,
        kind: str = "note",
        tags: Iterable[str] = (),
        project: str | None = None,
        session: str | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float = 0.0,
        vector: Any = None,
    ) -> str:
        """Store one memory and return its id. Identical text already in the same layer
        returns the existing id and counts as an access instead."""
        vectors = None if vector is None else [vector]
        return self.add_many(
            [text],
            vectors=vectors,
            layer=layer,
            kind=kind,
            tags=tags,
            project=project,
            session=session,
            metadata=metadata,
            importance=importance,
        )[0]

    def add_many(
        self,
        texts: Sequence[str],
        *,
        vectors: Any = None,
        layer: Layer | str = Layer.INTERACT,
        kind: str = "note",
        tags: Iterable[str] = (),
        project: str | None = None,
        session: str | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float = 0.0,
        on_duplicate: str = "access",
    ) -> list[str]:
        """Store many memories with the same fields in one durable batch; ids in order.

        A text already in the layer returns the existing id and counts as an access; with
        ``on_duplicate="skip"`` (bulk imports that may be re-run) it returns None instead
        and nothing changes; with ``on_duplicate="store"`` every text becomes a record of
        its own, held or not (callers that keep their own ids, as LangChain does).
        """
        self._check_writable()
        if isinstance(texts, str):
            raise InvalidInputError("add_many takes a sequence of texts; use add() for one text")
        t0 = time.perf_counter()
        if on_duplicate not in ("access", "skip", "store"):
            raise InvalidInputError(
                f"on_duplicate must be 'access', 'skip' or 'store', got {on_duplicate!r}"
            )
        texts = [self._text(t, f"texts[{i}]") for i, t in enumerate(texts)]
        f = validate.fields(layer, kind, tags, project, session, metadata, importance)
        if not texts:
            return []
        keys = self._text_keys(texts, [f["layer"]] * len(texts))
        vecs = self._vectors(vectors, len(texts)) if vectors is not None else None
        dedupe = on_duplicate != "store"
        if vecs is None:
            vecs = self._embed_new(texts, keys) if dedupe else self._embed(texts)
        now = self._clock()
        out = self._insert(
            texts,
            vecs,
            [f] * len(texts),
            now,
            touch=on_duplicate == "access",
            text_keys=keys,
            dedupe=dedupe,
        )
        took = time.perf_counter() - t0
        self._obs.observe("add", took)
        self._obs.count("added", sum(1 for x in out if x is not None))
        self._obs.log(
            "add", took, [x for x in out if x is not None], texts=texts, layer=f["layer"].value
        )
        return out

    @staticmethod
    def _text_keys(texts: Sequence[str], layers: Sequence[Layer]) -> list[bytes]:
        """The texthash keys of texts in their layers (one native hashing call)."""
        from magray.kernels import hash128_many

        digests = hash128_many(texts)
        return [text_key(layer, digests[i].tobytes()) for i, layer in enumerate(layers)]

    def _embed_new(self, texts: list[str], keys: list[bytes]) -> np.ndarray:
        """Vectors for texts, embedding only those not already in their layer (duplicates
        become accesses in _insert and need no vector); keys are their texthash keys."""
        existing = self.store.multi_get("texthash", keys)
        todo = [i for i, hit in enumerate(existing) if hit is None]
        if len(todo) == len(texts):
            return self._embed(texts)
        dim = self.dim or (self._embedder.dim if self._embedder is not None else 0)
        vecs = np.zeros((len(texts), dim), np.float32)
        if todo:
            vecs[todo] = self._embed([texts[i] for i in todo])
        return vecs

    def _insert(
        self,
        texts: list[str],
        vecs: np.ndarray,
        fields: list[dict[str, Any]],
        now: float,
        *,
        keep: list[StoredRecord | None] | None = None,
        touch: bool = True,
        text_keys: list[bytes] | None = None,
        dedupe: bool = True,
    ) -> list[Any]:
        """Write new records (or re-add kept ones, for import); returns ids in order
        (None for a duplicate when touch is False). text_keys: the texts' texthash keys,
        when the caller has them already. dedupe=False stores held texts again."""
        if text_keys is None:
            text_keys = self._text_keys(texts, [f["layer"] for f in fields])
        with self._wlock:
            holders = TextHolders(self.store)
            holders.load(text_keys)
            new_rows: list[tuple[Row, int]] = []
            out: list[Any] = []
            with self._writing() as (b, seq):
                fingerprint = self._ensure_dim(vecs.shape[1], b)
                op_i = 0
                for i, text in enumerate(texts):
                    f = fields[i]
                    # An import keeps every record it is given (ids decide what is new);
                    # add() turns a text its layer already holds into an access.
                    dup = holders.first(text_keys[i]) if keep is None and dedupe else None
                    if dup is not None:
                        if touch:
                            self._touch((dup,), now)
                            out.append(idcodec.encode(dup))
                        else:
                            out.append(None)
                        continue
                    if not vecs[i].any():
                        # The text was a duplicate when its vector was skipped, and the
                        # original has gone since (deleted or moved): embed it now.
                        vecs[i] = self._embed([text])[0]
                    kept = keep[i] if keep is not None else None
                    rid = kept.raw_id if kept is not None else idcodec.new_id(int(now * 1000))
                    label = self._next_label
                    self._next_label += 1
                    if kept is not None:
                        rec = kept
                        rec.label = label
                        rec.fingerprint = fingerprint
                    else:
                        rec = StoredRecord.create(
                            rid, text, f, created=now, fingerprint=fingerprint, label=label
                        )
                    self._put_record(b, rec)
                    b.put(rid, vector_bytes(vecs[i]), self.store.handle["vectors"])
                    b.put(label_key(rec.layer, label), rid, self.store.handle["labels"])
                    holders.add(text_keys[i], rid)
                    self._put_op(b, seq, op_i, [OP_ADD, rec.layer.code, label, rid])
                    op_i += 1
                    new_rows.append((row_of(rec), i))
                    out.append(idcodec.encode(rid))
                if not new_rows:
                    raise _NothingToWrite
                holders.write(b)
            if not new_rows:
                return out
            self._init_index(vecs.shape[1], fingerprint)
            idx = self._index
            assert idx is not None
            with self._index_guard():
                idx.add([r for r, _ in new_rows], vecs[[i for _, i in new_rows]])
                if idx.needs_graph():  # crossed the exact threshold: build the graph now
                    self._start_rebuild(idx)
            self._applied_seq = seq
        return out

    @contextlib.contextmanager
    def _writing(self) -> Iterator[tuple[Any, int]]:
        """A batch and the store sequence it will have. On leaving, the sequence and the
        label counter are put in the batch and it is written; self._seq advances only
        once it is (readers catch derived indexes up to self._seq from the oplog), and if
        building or writing the batch fails the label counter goes back, so memory never
        runs ahead of the store. Raising _NothingToWrite inside leaves quietly without
        writing. Caller holds _wlock."""
        label0 = self._next_label
        b = self.store.batch()
        seq = self._seq + 1
        try:
            yield b, seq
            self.store.put_meta(b, "seq", seq)
            self.store.put_meta(b, "next_label", self._next_label)
            with span("magray.store.write"):
                self.store.write(b)
        except _NothingToWrite:
            self._next_label = label0
        except BaseException:
            self._next_label = label0
            raise
        else:
            # Only now: a search reading _seq catches the text index up to it, and the
            # oplog entry of this sequence must be in the store by then.
            self._seq = seq

    # -- reading -------------------------------------------------------------------------

    def recent(self, *, layer: Layer | str | None = None, limit: int = 20) -> list[Record]:
        """The newest records, of one layer or all, newest first."""
        self._check_open()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInputError(f"limit must be an int >= 1, got {limit!r}")
        layers = list(Layer) if layer is None else [Layer.parse(layer)]
        found: list[tuple[bytes, bytes]] = []
        for lay in layers:
            for n, (key, _) in enumerate(
                self.store.scan("layer_time", bytes((lay.code,)), reverse=True)
            ):
                if n >= limit:
                    break
                found.append((bytes(key[1:9]), bytes(key[9:])))
        found.sort(reverse=True)
        rids = [rid for _, rid in found[:limit]]
        out = []
        for rid, raw in zip(rids, self.store.multi_get("records", rids)):
            if raw is not None:
                out.append(self._record(rid, raw))
        return out

    def get(self, id: str) -> Record | None:
        """The record with this id, or None if there is none."""
        self._check_open()
        rid = validate.raw_id(id)
        raw = self.store.get("records", rid)
        if raw is None:
            return None
        return self._record(rid, raw)

    def _record(self, rid: bytes, raw: bytes) -> Record:
        """The Record of a stored value, with the accesses not yet flushed."""
        p = self._access.get(rid)
        if p is None:
            return record_of(rid, raw)
        return record_of(rid, raw, p.count, p.last)

    def _to_record(self, rec: StoredRecord) -> Record:
        p = self._access.get(rec.raw_id)
        if p is None:
            return rec.to_record()
        return rec.to_record(p.count, p.last)

    def search(
        self,
        query: str | None = None,
        *,
        vector: Any = None,
        k: int = 10,
        mode: str | None = None,
        contains: str | None = None,
        layers: Iterable[Layer | str] | None = None,
        tags: Iterable[str] | None = None,
        project: str | None = None,
        session: str | None = None,
        kind: str | None = None,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
        min_score: float | None = None,
    ) -> list[Hit]:
        """The k records that best match the query (text) or vector, across layers.

        Modes: ``"vector"`` ranks by cosine similarity of embeddings; ``"text"`` by BM25
        over the full-text index; ``"hybrid"`` blends both (the top 50 of each, every
        candidate scored by both, each score divided by the best, 0.6 vector + 0.4 text,
        see magray.memory.fusion); a query with no word to match is searched as vector.
        The default is hybrid for query text on a store with full text, vector otherwise
        (see the README's "Search modes" for the measurements behind it). Higher scores
        are better (see Hit); ties go to the older record.

        Filters, in every mode and without recall loss: tags (any of), project, session,
        kind, creation time in [since, until], contains (a substring the text must hold,
        ignoring case) and min_score (on Hit.score).

        Raises InvalidInputError for a bad argument, a text mode without query text, or
        a text mode on a store with full text off.
        """
        t0 = time.perf_counter()
        hits = self._search(
            query,
            vector,
            k,
            mode,
            contains,
            layers,
            tags,
            project,
            session,
            kind,
            since,
            until,
            min_score,
        )
        took = time.perf_counter() - t0
        self._obs.observe("search", took)
        self._obs.count("searches")
        self._obs.log("search", took, [h.id for h in hits], query=query, k=k, hits=len(hits))
        return hits

    _HYBRID_DEPTH = 50  # candidates each retriever hands to the fusion

    def _search(
        self,
        query: Any,
        vector: Any,
        k: Any,
        mode: Any,
        contains: Any,
        layers: Any,
        tags: Any,
        project: Any,
        session: Any,
        kind: Any,
        since: Any,
        until: Any,
        min_score: Any,
    ) -> list[Hit]:
        self._check_open()
        p = query_plan(k, layers, tags, project, session, kind, since, until, min_score)
        mode = validate.mode(mode)
        needle = validate.contains(contains)
        text_query = None if query is None else self._text(query, "query")
        if mode is None:
            full = self.config.full_text
            mode = "hybrid" if full and query is not None and vector is None else "vector"
        if mode == "vector":
            if (query is None) == (vector is None):
                raise InvalidInputError("pass exactly one of query (text) or vector=")
        else:
            if query is None:
                raise InvalidInputError(
                    f"mode={mode!r} needs query text; to search by a vector alone use mode='vector'"
                )
            if mode == "text" and vector is not None:
                raise InvalidInputError("mode='text' ranks by words only; drop vector=")
            if not self.config.full_text:
                self._fulltext.sync(self._seq)  # raises: full text is off
            text = self._fulltext.index  # None until the store has vectors
            if mode == "hybrid" and text is not None and not text.searchable(text_query or ""):
                mode = "vector"  # no word to match (emoji, punctuation): meaning alone
        q = None
        if vector is not None:
            if not self.dim:
                return []
            q = self._query_vector(vector)
        elif mode != "text":
            assert text_query is not None
            q = self._embed([text_query], query=True)[0]
            if not self.dim:
                return []
            if q.shape[0] != self.dim:
                raise EmbedderMismatchError(
                    f"query vector has dimension {q.shape[0]}, store {self.dim}"
                )
        idx = self._index  # read once: a reopen or the first add may publish a new one
        if idx is None or not idx.count:
            return []
        flt = p.filter
        if needle is not None:
            allowed = self._fulltext.containing(needle, idx, self._seq)
            if not len(allowed):
                return []
            flt = dataclasses.replace(flt, labels=allowed)
        depth = max(p.k, self._HYBRID_DEPTH) if mode == "hybrid" else p.k
        signals: dict[int, dict[str, float]] = {}
        found_vec: list[tuple[int, float]] = []
        found_text: list[tuple[int, float]] = []
        if mode == "hybrid":
            assert q is not None and text_query is not None
            found_vec, found_text = hybrid.candidates(
                q, text_query, depth, flt, idx, self._fulltext, self._seq, p.layers
            )
        elif mode == "vector":
            assert q is not None
            with span("magray.index.search", k=depth, layers=p.layers):
                vl, vs = idx.search(q, depth, flt)
        else:
            assert text_query is not None
            with span("magray.text.search", k=depth):
                found_text = self._fulltext.search(text_query, depth, flt, idx, self._seq)
        for name, found_list in (("vector", found_vec), ("text", found_text)):
            for label, score in found_list:
                signals.setdefault(label, {})[name] = score
        if mode == "vector":
            labels, scores = vl.tolist(), vs.tolist()
        else:
            ranked = blend(found_vec, found_text) if mode == "hybrid" else found_text
            labels = [label for label, _ in ranked]
            scores = [score for _, score in ranked]
        rids = idx.ids_of(labels)
        found = rank(rids, scores, p)
        if not found:
            return []
        by_rid = {} if mode == "vector" else dict(zip(rids, (signals[x] for x in labels)))
        with span("magray.store.read", records=len(found)):
            raws = self.store.multi_get("records", [rid for _, rid in found])
        # Records deleted since the index answered are left out; this search counts as
        # an access of each of the others, already in the records it returns.
        kept = [(score, rid, raw) for (score, rid), raw in zip(found, raws) if raw is not None]
        if not self.read_only:
            self._touch([rid for _, rid, _ in kept])
        hits = []
        for score, rid, raw in kept:
            record = self._record(rid, raw)
            sig = {"vector": score} if mode == "vector" else by_rid.get(rid, {})
            hits.append(make_hit(record.id, float(score), record.layer, record, sig))
        return hits

    def _query_vector(self, vector: Any) -> np.ndarray:
        """A unit float32 query; the common case (a float32 vector) costs one native call."""
        from magray.kernels import l2_normalize

        if not (
            isinstance(vector, np.ndarray)
            and vector.dtype == np.float32
            and vector.ndim == 1
            and vector.flags.c_contiguous
        ):
            first: np.ndarray = self._vectors(vector, 1)[0]
            return first
        if vector.shape[0] != self.dim:
            raise InvalidInputError(
                f"vector has dimension {vector.shape[0]}, the store holds {self.dim}-d vectors"
            )
        try:
            q = l2_normalize(vector[None, :])[0]
        except ValueError:
            raise InvalidInputError("vector 0 contains NaN or Inf; clean it first") from None
        if not q[0] and not q.any():  # the first element answers for almost every query
            raise InvalidInputError("vector 0 is all zeros and has no direction")
        unit: np.ndarray = q
        return unit

    # -- access statistics -----------------------------------------------------------------

    def _touch(self, rids: Iterable[bytes], now: float | None = None) -> None:
        """Count one access of each record at now (the store's clock by default); the
        next access flush writes them (see access.py)."""
        self._access.touch(rids, self._clock() if now is None else now)

    def _flush_access(self) -> None:
        """Write pending access statistics now."""
        if self.read_only:
            return
        with self._wlock:
            self._access.write(self.store)

    # -- changing ----------------------------------------------------------------------------

    def _put_record(self, b: Any, rec: StoredRecord) -> None:
        """Batch a write of rec and of its layer_time entry, whose value summarises what
        the lifecycle rules read: every write of a record goes through here."""
        b.put(rec.raw_id, rec.encode(), self.store.handle["records"])
        b.put(
            layer_time_key(rec.layer, rec.created_at, rec.raw_id),
            lifecycle_summary(rec),
            self.store.handle["layer_time"],
        )
        if promotable(self.config, rec.layer, rec):
            b.put(promotable_key(rec.layer, rec.raw_id), b"", self.store.handle["promotable"])

    def _load(self, rid: bytes) -> StoredRecord:
        raw = self.store.get("records", rid)
        if raw is None:
            raise NotFoundError(
                f"no record with id {idcodec.encode(rid)}; check the id "
                "(mem.get returns None for it)"
            )
        return StoredRecord.decode(rid, raw)

    def update(
        self,
        id: str,
        *,
        text: str = _UNSET,
        tags: Iterable[str] = _UNSET,
        metadata: dict[str, Any] = _UNSET,
        importance: float = _UNSET,
        layer: Layer | str = _UNSET,
        kind: str = _UNSET,
        project: str | None = _UNSET,
        session: str | None = _UNSET,
        vector: Any = None,
    ) -> Record:
        """Change fields of a record; a new text is re-embedded (or takes vector=)."""
        self._check_writable()
        t0 = time.perf_counter()
        rid = validate.raw_id(id)
        new_text = None if text is _UNSET else self._text(text)
        new_tags = None if tags is _UNSET else validate.tags(tags)
        new_meta = None if metadata is _UNSET else validate.metadata(metadata)
        new_imp = None if importance is _UNSET else validate.importance(importance)
        new_layer = None if layer is _UNSET else Layer.parse(layer)
        changes: dict[str, Any] = {}
        if kind is not _UNSET:
            changes["kind"] = validate.kind(kind)
        for name, value in (("project", project), ("session", session)):
            if value is not _UNSET:
                changes[name] = validate.scope(name, value)
        vec = None
        if vector is not None:
            vec = self._vectors(vector, 1)
        elif new_text is not None:
            vec = self._embed([new_text])
        with self._wlock:
            rec = self._load(rid)
            pending = self._access.take(rid)
            try:
                rec_after = self._update_locked(
                    rec, pending, new_text, new_tags, new_meta, new_imp, new_layer, vec, changes
                )
            except BaseException:
                if pending is not None:  # the write failed: keep the statistics for later
                    self._access.give_back(rid, pending)
                raise
            self._obs.log("update", time.perf_counter() - t0, [idcodec.encode(rid)])
            return rec_after

    def _update_locked(
        self,
        rec: StoredRecord,
        pending: Pending | None,
        new_text: str | None,
        new_tags: tuple[str, ...] | None,
        new_meta: dict[str, Any] | None,
        new_imp: float | None,
        new_layer: Layer | None,
        vec: np.ndarray | None,
        changes: dict[str, Any],
    ) -> Record:
        from magray.kernels import hash128

        rid = rec.raw_id
        if pending is not None:  # folded into the record this update writes anyway
            pending.apply(rec)
        now = self._clock()
        old_label = rec.label
        moved = new_layer is not None and new_layer != rec.layer
        with self._writing() as (b, seq):
            # _put_record puts the key back if the record stays promotable.
            b.delete(promotable_key(rec.layer, rid), self.store.handle["promotable"])
            holders = TextHolders(self.store)
            if new_text is not None and new_text != rec.text:
                holders.remove(text_key(rec.layer, hash128(rec.text)), rid)
                rec.text = new_text
                holders.add(text_key(rec.layer, hash128(rec.text)), rid)
            if new_tags is not None:
                rec.tags = new_tags
            if new_meta is not None:
                rec.metadata = new_meta
            if new_imp is not None:
                rec.importance = new_imp
            for name, value in changes.items():
                setattr(rec, name, value)
            rec.updated_at = now
            if moved:
                assert new_layer is not None
                self._move_keys(b, holders, rec, new_layer, now, "update")
            if vec is not None:
                b.put(rid, vector_bytes(vec[0]), self.store.handle["vectors"])
                # A re-embed in progress staged a vector of the old text: stage anew.
                b.delete(rid, self.store.handle["staged"])
            if vec is not None:  # a new vector goes under a new label
                label = self._next_label
                self._next_label += 1
                b.delete(label_key(rec.layer, rec.label), self.store.handle["labels"])
                rec.label = label
                b.put(label_key(rec.layer, label), rid, self.store.handle["labels"])
                ops = [
                    [OP_DEL, rec.layer.code, old_label],
                    [OP_ADD, rec.layer.code, rec.label, rid],
                ]
            else:  # a move or new fields: only the columns change
                ops = [[OP_META, rec.layer.code, rec.label, rid]]
            holders.write(b)
            self._put_record(b, rec)
            for i, op in enumerate(ops):
                self._put_op(b, seq, i, op)
        idx = self._index
        assert idx is not None
        with self._index_guard():
            if vec is not None:
                idx.remove([old_label])
                idx.add([row_of(rec)], vec)
            else:
                idx.update_columns([row_of(rec)])
        self._applied_seq = seq
        return self._to_record(rec)

    def _move_keys(
        self,
        b: Any,
        holders: TextHolders,
        rec: StoredRecord,
        to: Layer,
        now: float,
        reason: str,
        digest: bytes | None = None,
        logged: bytes | None = None,
    ) -> None:
        """Batch the key changes of moving rec to another layer. Its label stays (the
        index changes a column, not a vector); its text's holder entry moves with it
        (holders is written into b by the caller), and the caller writes the record with
        _put_record, which puts its new layer_time and promotable entries. logged: the
        packed lifecycle-log value, when the caller has it already."""
        h = self.store.handle
        rid = rec.raw_id
        if digest is None:
            from magray.kernels import hash128

            digest = hash128(rec.text)
        old = rec.layer
        b.delete(layer_time_key(old, rec.created_at, rid), h["layer_time"])
        b.delete(label_key(old, rec.label), h["labels"])
        b.put(label_key(to, rec.label), rid, h["labels"])
        b.delete(promotable_key(old, rid), h["promotable"])
        holders.remove(text_key(old, digest), rid)
        holders.add(text_key(to, digest), rid)
        if logged is None:
            logged = pack([rec.layer.code, to.code, reason])
        b.put(u64(int(now * 1000)) + rid, logged, h["moves"])
        rec.layer = to
        rec.layer_since = now

    def delete(self, ids: str | Iterable[str]) -> int:
        """Delete records by id; returns how many. An unknown id raises NotFoundError and
        deletes nothing."""
        self._check_writable()
        t0 = time.perf_counter()
        id_list = [ids] if isinstance(ids, str) else list(ids)
        raws = [validate.raw_id(i) for i in id_list]
        raws = list(dict.fromkeys(raws))
        with self._wlock:
            recs = []
            for rid, raw in zip(raws, self.store.multi_get("records", raws)):
                if raw is None:
                    raise NotFoundError(
                        f"no record with id {idcodec.encode(rid)}; nothing was deleted"
                    )
                recs.append(StoredRecord.decode(rid, raw))
            self._remove(recs, self._clock(), reason=None)
        self._obs.log("delete", time.perf_counter() - t0, [idcodec.encode(r.raw_id) for r in recs])
        return len(recs)

    def _put_op(self, b: Any, seq: int, i: int, op: list[Any]) -> None:
        """Batch entry i of oplog sequence seq (key: seq(8) index(4))."""
        b.put(u64(seq) + i.to_bytes(4, "big"), pack(op), self.store.handle["oplog"])

    def _remove(self, recs: list[StoredRecord], now: float, reason: str | None) -> None:
        if not recs:
            return
        tkeys = self._text_keys([r.text for r in recs], [r.layer for r in recs])
        holders = TextHolders(self.store)
        holders.load(tkeys)
        with self._writing() as (b, seq):
            for i, rec in enumerate(recs):
                rid = rec.raw_id
                b.delete(rid, self.store.handle["records"])
                b.delete(rid, self.store.handle["vectors"])
                b.delete(rid, self.store.handle["staged"])
                b.delete(
                    layer_time_key(rec.layer, rec.created_at, rid),
                    self.store.handle["layer_time"],
                )
                b.delete(label_key(rec.layer, rec.label), self.store.handle["labels"])
                if promotable(self.config, rec.layer, rec):
                    b.delete(promotable_key(rec.layer, rid), self.store.handle["promotable"])
                holders.remove(tkeys[i], rid)
                self._put_op(b, seq, i, [OP_DEL, rec.layer.code, rec.label])
                if reason is not None:
                    b.put(
                        u64(int(now * 1000)) + rid,
                        pack([rec.layer.code, None, reason]),
                        self.store.handle["moves"],
                    )
            holders.write(b)
        self._access.forget(rec.raw_id for rec in recs)
        idx = self._index
        if idx is not None:
            with self._index_guard():
                idx.remove([rec.label for rec in recs])
        self._applied_seq = seq

    # -- lifecycle ---------------------------------------------------------------------------

    def _records_of(
        self, layer: Layer, keep: Callable[[Summaries], np.ndarray] | None = None
    ) -> Iterable[StoredRecord]:
        """The records of layer, oldest first; with keep, only those whose layer_time
        summary keep accepts (keep maps Summaries columns to a boolean mask). A record of
        an older store, without a summary, is read anyway."""
        items = self.store.scan("layer_time", bytes((layer.code,)))
        while chunk := list(itertools.islice(items, _SCAN_CHUNK)):
            keys, values = zip(*chunk)
            if keep is None:
                rids = [key[9:] for key in keys]
            else:
                summaries = read_summaries(keys, values)
                wanted = np.asarray(keep(summaries)) | ~summaries.known
                rids = [keys[i][9:] for i in np.flatnonzero(wanted).tolist()]
            for _, rec in self._stored(rids):
                if rec is not None:
                    yield rec

    def _stored(self, rids: list[bytes]) -> Iterator[tuple[bytes, StoredRecord | None]]:
        """(id, its record, or None if there is none) for each of rids, in order, read
        _READ_CHUNK to a multi_get."""
        for i in range(0, len(rids), _READ_CHUNK):
            part = rids[i : i + _READ_CHUNK]
            for rid, raw in zip(part, self.store.multi_get("records", part)):
                yield rid, None if raw is None else StoredRecord.decode(rid, raw)

    def _promotable_records(self, layer: Layer, stale: list[bytes]) -> Iterator[StoredRecord]:
        """The records of layer that hold a ``promotable`` key, in id order. A key whose
        record is gone, in another layer or no longer promotable is added to stale (the
        keys are kept exactly in step with the records, so none is expected)."""
        prefix = bytes((layer.code,))
        rids = [key[1:] for key, _ in self.store.scan("promotable", prefix)]
        for rid, rec in self._stored(rids):
            if rec is None or rec.layer is not layer or not promotable(self.config, layer, rec):
                stale.append(prefix + rid)
            else:
                yield rec

    def _drop_promotable(self, keys: list[bytes]) -> None:
        _LOG.warning(
            "removing %d promotable keys that were out of step with their records", len(keys)
        )
        handle = self.store.handle["promotable"]
        b = self.store.batch()
        for key in keys:
            b.delete(key, handle)
        self.store.write(b)

    def promote(self, now: float | None = None, *, dry_run: bool = False) -> LifecycleReport:
        """Move records that keep being used, or matter, to a more lasting layer."""
        self._check_writable()
        t0 = time.perf_counter()
        from magray.memory.lifecycle import promotions

        with self._wlock:
            self._flush_access()
            now = self._clock() if now is None else float(now)
            report = LifecycleReport(dry_run=dry_run)
            stale: list[bytes] = []
            planned = promotions(
                lambda layer, _: self._promotable_records(layer, stale), self.config, now
            )
            if stale and not dry_run:
                self._drop_promotable(stale)
            for rec, to, reason in planned:
                report.moved.append(Move(idcodec.encode(rec.raw_id), rec.layer, to, reason, now))
            if not dry_run and planned:
                self._apply_moves(planned, now)
            self._last_report["promote"] = report.summary()
            self._obs.log(
                "promote", time.perf_counter() - t0, [m.id for m in report.moved], dry_run=dry_run
            )
            return report

    def expire(self, now: float | None = None, *, dry_run: bool = False) -> LifecycleReport:
        """Promote what qualifies, then delete records whose layer TTL has run out."""
        self._check_writable()
        t0 = time.perf_counter()
        from magray.memory.lifecycle import expirations

        with self._wlock:
            report = self.promote(now, dry_run=dry_run)
            now = self._clock() if now is None else float(now)
            promoted = {m.id for m in report.moved}
            doomed = []
            for rec, reason in expirations(self._records_of, self.config, now):
                if idcodec.encode(rec.raw_id) in promoted:
                    continue
                doomed.append(rec)
                report.expired.append(
                    Move(idcodec.encode(rec.raw_id), rec.layer, None, reason, now)
                )
            if not dry_run:
                for i in range(0, len(doomed), 1000):
                    self._remove(doomed[i : i + 1000], now, reason="expired")
            self._last_report["expire"] = report.summary()
            self._obs.log(
                "expire", time.perf_counter() - t0, [m.id for m in report.expired], dry_run=dry_run
            )
            return report

    def _apply_moves(self, planned: list[tuple[StoredRecord, Layer, str]], now: float) -> None:
        """Move records between layers, 1000 to a batch. A move re-keys the record and
        changes the index's layer column: no vector is read, copied or re-indexed."""
        from magray.kernels import hash128_many

        idx = self._index
        logged: dict[tuple[int, int, str], bytes] = {}  # packed log values: few reasons
        for i in range(0, len(planned), 1000):
            part = planned[i : i + 1000]
            digests = [bytes(d) for d in hash128_many(tuple(rec.text for rec, _, _ in part))]
            with self._writing() as (b, seq):
                holders = TextHolders(self.store)
                holders.load(
                    [text_key(rec.layer, d) for (rec, _, _), d in zip(part, digests)]
                    + [text_key(to, d) for (_, to, _), d in zip(part, digests)]
                )
                for j, (rec, to, reason) in enumerate(part):
                    log_key = (rec.layer.code, to.code, reason)
                    value = logged.get(log_key)
                    if value is None:
                        value = logged[log_key] = pack(list(log_key))
                    self._move_keys(b, holders, rec, to, now, reason, digests[j], value)
                    self._put_record(b, rec)
                    self._put_op(b, seq, j, [OP_META, to.code, rec.label, rec.raw_id])
                holders.write(b)
            # The store has moved; now the index (a crash here is repaired on open).
            if idx is not None:
                with self._index_guard():
                    for to in {to for _, to, _ in part}:
                        idx.set_layer([rec.label for rec, t, _ in part if t is to], to.code)
            self._applied_seq = seq

    @contextlib.contextmanager
    def _index_guard(self) -> Iterator[None]:
        """Index updates after a store write: if one fails (or is interrupted), the index
        is rebuilt from the store, so no snapshot can record a sequence its index does
        not reflect and the store stays the truth. The error is re-raised."""
        try:
            yield
        except BaseException:
            try:
                idx = self._publish(self._index_from_store())
                if idx.needs_graph():
                    self._start_rebuild(idx)
            except Exception:
                _LOG.exception("could not rebuild the index; it is rebuilt on open")
            raise

    # -- maintenance ----------------------------------------------------------------------------

    def _maintain(self) -> None:
        while not self._stop.wait(self.config.access_flush_seconds):
            try:
                if self._access.due():
                    self._flush_access()
                idx = self._index
                if idx is not None:
                    if idx.needs_graph() or idx.needs_rebuild():
                        self._start_rebuild(idx)
                    if idx.changes_since_save >= self.config.index_save_every:
                        self._save_indexes(force=False)
                if self._fulltext.behind(self._seq):
                    self._fulltext.sync(self._seq)
            except Exception:  # keep the worker alive; the next round retries
                _LOG.exception("background maintenance failed")

    def _publish(self, idx: VectorIndex) -> VectorIndex:
        """Make idx the store's index (one assignment: a racing search sees the old or
        the new one), reading vectors it does not hold from the store."""

        def vectors_of(labels: np.ndarray) -> np.ndarray:
            rids = [rid or b"" for rid in idx.ids_of(labels.tolist())]
            return vectors_from(self.store.multi_get("vectors", rids), self.dim)

        idx.vectors_of = vectors_of
        self._index = idx
        return idx

    def _start_rebuild(self, idx: VectorIndex) -> None:
        idx.start_rebuild()

    def _save_indexes(self, force: bool) -> None:
        """Snapshot the index at the current sequence if it changed, then trim the oplog."""
        with self._wlock:
            idx = self._index
            if idx is None:
                return
            seq = self._seq
            due = force or idx.changes_since_save >= self.config.index_save_every
            stale = (
                idx.changes_since_save
                or idx.snapshot_seq < seq
                or not (self.path / "index" / SNAPSHOT_DIR / "current").exists()
            )
            if due and stale:
                idx.save(self.path / "index", seq, self.fingerprint)
            floor = idx.snapshot_seq
            if self._fulltext.index is not None:
                # The oplog must reach back to what the text index reflects.
                floor = min(floor, self._fulltext.sync(self._seq).seq)
            if floor > 0:
                b = self.store.batch()
                b.delete_range(u64(0), u64(floor + 1), self.store.handle["oplog"])
                # Readers behind this point cannot replay: they reload (see refresh).
                self.store.put_meta(b, "oplog_floor", floor)
                self.store.write(b, durable=False)

    def flush(self) -> None:
        """Write pending access statistics and index snapshots now."""
        self._check_writable()
        self._wait_builds()
        self._flush_access()
        self._save_indexes(force=True)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Start any index build that is due and block until builds finish (meanwhile
        searches use the part of the graph already built and score the rest exactly, so
        waiting is never needed for correctness)."""
        idx = self._index
        if idx is not None:
            if not self.read_only and (idx.needs_graph() or idx.needs_rebuild()):
                self._start_rebuild(idx)
            idx.wait_rebuilt(timeout)

    def refresh(self) -> int:
        """Read-only stores: see the writer's latest changes; returns how many ops applied."""
        self._check_open()
        if not self.read_only:
            return 0
        self.store.catch_up()
        new_dim = int(self.store.meta("dim") or 0)
        new_fingerprint = self.store.meta("fingerprint") or ""
        seq = int(self.store.meta("seq") or 0)
        if not self.dim and new_dim:
            self._init_index(new_dim, new_fingerprint)
        elif self.dim and (new_dim, new_fingerprint) != (self.dim, self.fingerprint):
            # The writer re-embedded the store: every index here is of the old model.
            self.dim, self.fingerprint, self._seq = new_dim, new_fingerprint, seq
            self._open_indexes()
            self._applied_seq = seq
            return 1
        if seq <= self._applied_seq:
            return 0
        floor = int(self.store.meta("oplog_floor") or 0)
        if self._applied_seq < floor:
            # The writer trimmed operations this view never saw: reload from the snapshots
            # and the store instead of replaying.
            behind = seq - self._applied_seq
            self._seq = seq
            self._open_indexes()
            self._applied_seq = seq
            return behind
        entries = oplog_after(self.store, self._applied_seq)
        idx = self._index
        if idx is None:
            return 0
        idx.snapshot_seq = max(idx.snapshot_seq, self._applied_seq)
        apply_ops(idx, self.store, entries, self.dim, self.fingerprint)
        self._applied_seq = seq
        self._seq = seq
        return len(entries)

    # -- reports -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts per layer, the index's state, model, sizes and lifecycle history."""
        self._check_open()
        idx = self._index
        counts = idx.layer_counts() if idx is not None else [0] * len(Layer)
        moves: dict[str, int] = {}
        for _key, raw in self.store.scan("moves"):
            frm, to, _reason = unpack(raw)
            target = Layer.from_code(to).value if to is not None else "expired"
            name = f"{Layer.from_code(frm).value}->{target}"
            moves[name] = moves.get(name, 0) + 1
        e = self._embedder
        return {
            "path": str(self.path),
            "read_only": self.read_only,
            "dim": self.dim,
            "fingerprint": self.fingerprint,
            "embedder": None if e is None else self._embedder_stats(e),
            "cache": self._embedding.cache_stats(),
            "cache_redis": self._embedding.redis_stats(),
            "layers": {layer.value: {"records": counts[layer.code]} for layer in Layer},
            "index": {
                "state": "empty" if idx is None else idx.state,
                "records": 0 if idx is None else idx.count,
                "deleted_in_graph": 0 if idx is None else idx.graph_deleted,
                "snapshot_seq": 0 if idx is None else idx.snapshot_seq,
            },
            "records": sum(counts),
            "seq": self._seq,
            "pending_access": len(self._access),
            "store_bytes": self.store.size_bytes(),
            "moves": moves,
            "last_lifecycle": dict(self._last_report),
            "services": self._container.stats() if getattr(self, "_container", None) else {},
        }

    @staticmethod
    def _embedder_stats(e: Any) -> dict[str, Any]:
        info = {
            "name": e.name,
            "fingerprint": e.fingerprint,
            "dim": e.dim,
            "kind": type(e).__name__,
        }
        more = getattr(e, "stats", None)
        if callable(more):
            info.update(more())
        return info

    def compact(self) -> None:
        """Compact RocksDB and rebuild graphs with deleted elements."""
        self._check_writable()
        self.store.compact()
        idx = self._index
        if idx is not None and idx.graph is not None and idx.graph_deleted:
            self._start_rebuild(idx)
        self.wait_ready()
        self._save_indexes(force=True)

    # -- backups and exports (see backup.py) ----------------------------------------------------

    def backup(self, dest: str | os.PathLike[str]) -> Path:
        """A consistent online backup in dest (a new directory); returns its path."""
        from magray.memory.backup import create_backup

        self._check_open()
        return create_backup(self, Path(dest))

    def export_jsonl(self, path: str | os.PathLike[str], *, vectors: bool = False) -> int:
        """Write every record as one JSON line; returns how many."""
        from magray.memory.backup import export_jsonl

        self._check_open()
        return export_jsonl(self, Path(path).expanduser(), vectors=vectors)

    def import_jsonl(self, path: str | os.PathLike[str]) -> ImportReport:
        """Add the records of a JSONL export (ids kept; existing ids skipped)."""
        from magray.memory.backup import import_jsonl

        self._check_writable()
        return import_jsonl(self, Path(path).expanduser())

    def reembed(
        self, progress: Callable[[int, int], None] | None = None, batch_size: int = 256
    ) -> int:
        """Re-embed every record with this store's embedder (after opening with
        reembed=True), layer by layer; resumable. Returns how many were re-embedded."""
        from magray.memory.reembed import reembed_all

        self._check_writable()
        return reembed_all(self, progress, batch_size)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self.read_only else "open")
        return f"<magray.Memory {self.path} ({state})>"
