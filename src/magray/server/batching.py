"""Dynamic batching: concurrent embed calls share model batches.

Requests from many client threads go into one queue. A worker takes the first waiting
request and, if the previous batch held more than one request (there are concurrent
callers), waits up to ``max_wait`` seconds for more while the batch holds fewer than
``max_batch`` texts. It then runs the model once for all of them and hands each request
its rows. While the model runs, new requests queue up and form the next batch, so under
load batches fill by themselves, and a lone caller never waits.
Document and query texts are batched separately (models may embed them differently).
This is the scheme of serving systems such as NVIDIA Triton's dynamic batcher.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class _Request:
    __slots__ = ("done", "error", "query", "result", "texts")

    def __init__(self, texts: Sequence[str], query: bool) -> None:
        self.texts = texts
        self.query = query
        self.done = threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class BatchingEmbedder:
    """An Embedder that merges concurrent calls into batches of an inner Embedder.

    Args:
        inner: the embedder doing the work (its name, dim and fingerprint are this one's).
        max_batch: the most texts one model call takes (a single larger request still
            runs whole).
        max_wait: seconds to wait for more requests after the first one arrives.
        on_batch: called with the number of texts of each model call (metrics).
    """

    def __init__(
        self,
        inner: Any,
        *,
        max_batch: int = 64,
        max_wait: float = 0.002,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.inner = inner
        self._concurrent = False  # the last batch held more than one request
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._on_batch = on_batch
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._worker = threading.Thread(target=self._run, name="magray-embed-batch", daemon=True)
        self._worker.start()

    # -- the Embedder protocol --------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    @property
    def fingerprint(self) -> str:
        return str(self.inner.fingerprint)

    @property
    def query_prefix(self) -> str:
        return str(getattr(self.inner, "query_prefix", ""))

    @property
    def document_prefix(self) -> str:
        return str(getattr(self.inner, "document_prefix", ""))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._submit(texts, query=False)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        return self._submit(texts, query=True)

    def stats(self) -> dict[str, Any]:
        more = getattr(self.inner, "stats", None)
        return dict(more()) if callable(more) else {}

    # -- batching ----------------------------------------------------------------------------

    def _submit(self, texts: Sequence[str], query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        req = _Request(list(texts), query)
        with self._cond:
            if self._stopped:
                raise RuntimeError("the embedding batcher is stopped")
            self._queue.append(req)
            self._cond.notify()
        req.done.wait()
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def _take(self) -> list[_Request] | None:
        """The next batch: requests of one kind, oldest first (caller holds the lock)."""
        while not self._queue:
            if self._stopped:
                return None
            self._cond.wait()
        deadline = time.monotonic() + (self.max_wait if self._concurrent else 0.0)
        while sum(len(r.texts) for r in self._queue) < self.max_batch and not self._stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)
        kind = self._queue[0].query
        batch: list[_Request] = []
        size = 0
        for req in list(self._queue):
            if req.query != kind:
                continue
            if batch and size + len(req.texts) > self.max_batch:
                break
            batch.append(req)
            size += len(req.texts)
            self._queue.remove(req)
        self._concurrent = len(batch) > 1
        return batch

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._take()
            if batch is None:
                return
            texts = [t for r in batch for t in r.texts]
            try:
                fn = getattr(self.inner, "embed_query", None) if batch[0].query else None
                vecs = np.asarray((fn or self.inner.embed)(texts), dtype=np.float32)
                if self._on_batch is not None:
                    self._on_batch(len(texts))
                start = 0
                for r in batch:
                    r.result = vecs[start : start + len(r.texts)]
                    start += len(r.texts)
            except BaseException as exc:  # each waiting request raises it
                for r in batch:
                    r.error = exc
            for r in batch:
                r.done.set()

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._worker.join()
