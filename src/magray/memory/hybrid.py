"""The candidates of a hybrid search: the graph's and BM25's top lists, read side by
side, then completed so that every candidate carries both scores for the fusion
(fusion.py).

Both retrievers release the GIL (hnswlib's graph search and tantivy's), so on a
machine with more than one CPU the BM25 side of each step runs in a worker thread
while the calling thread does the vector side: first the two top lists, then the BM25
scores of the vector-only candidates beside the cosines of the text-only ones. The
workers are one pool for the process, made on the first hybrid search.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from magray.ops.tracing import span

if TYPE_CHECKING:
    from magray.memory.fulltext import FullText
    from magray.memory.index import Filter, VectorIndex

R = TypeVar("R")
Pairs = list[tuple[int, float]]

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _beside(fn: Callable[..., R], *args: Any) -> Callable[[], R]:
    """Start fn(*args) in the pool (in the caller's context, so that its spans are
    children of the caller's) and return what waits for its result; on one CPU, run it
    when the result is asked for."""
    global _pool
    if (os.cpu_count() or 1) < 2:
        return lambda: fn(*args)
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(
                    max_workers=os.cpu_count() or 2, thread_name_prefix="magray-bm25"
                )
    future = _pool.submit(contextvars.copy_context().run, fn, *args)
    return future.result


def candidates(
    q: np.ndarray,
    text_query: str,
    depth: int,
    flt: Filter,
    idx: VectorIndex,
    fulltext: FullText,
    seq: int,
    layers: int,
) -> tuple[Pairs, Pairs]:
    """(vector, text) candidate lists of a hybrid search, each [(label, score)] over the
    same labels: the top depth of each retriever among the records passing flt, every
    candidate scored by both. A text-only candidate gets its exact cosine with the unit
    query q (float32, (dim,)); a vector-only one its BM25 score for text_query, 0 when
    it holds no query term (no search needed when BM25 found fewer than depth records:
    then it found them all). A candidate deleted meanwhile is left out. layers: how
    many layers the search reads (a span attribute)."""

    def text_top() -> Pairs:
        with span("magray.text.search", k=depth):
            return fulltext.search(text_query, depth, flt, idx, seq)

    text_job = _beside(text_top)
    with span("magray.index.search", k=depth, layers=layers):
        vl, vs = idx.search(q, depth, flt)
    found_vec: Pairs = list(zip(vl.tolist(), vs.tolist()))
    found_text = text_job()

    in_vec = {label for label, _ in found_vec}
    in_text = {label for label, _ in found_text}
    text_only = [label for label, _ in found_text if label not in in_vec]
    vec_only = [label for label, _ in found_vec if label not in in_text]
    bm25_job: Callable[[], dict[int, float]] = dict
    if vec_only and len(found_text) >= depth:
        bm25_job = _beside(fulltext.scores, text_query, vec_only, seq)
    cosine = idx.similarities(q, text_only) if text_only else {}
    bm25 = bm25_job()
    vec = found_vec + [(label, cosine[label]) for label in text_only if label in cosine]
    text = [pair for pair in found_text if pair[0] in in_vec or pair[0] in cosine]
    text += [(label, bm25.get(label, 0.0)) for label in vec_only]
    return vec, text
