"""Fusing the vector and the text ranking of a hybrid search into one.

Convex combination of min-max normalised scores: within each retriever's candidate
list the scores are rescaled to [0, 1] (best 1, worst 0; a list of one, or of equal
scores, is all 1), and an item's fused score is
``alpha * vector + (1 - alpha) * text``, a missing signal counting 0. Scores live on
different scales (cosine similarity, BM25), which the rescaling removes; unlike rank
fusion it keeps how far apart the candidates are, so a retriever that clearly found
the answer (a BM25 hit on a rare identifier) is not outvoted by a near-random ranking
from the other.

Chosen by measurement (bench/compare_retrieval.py, see BENCHMARKS.md) over three
sets: standard-library docstrings, the system's manual pages (summary line and whole
NAME line as queries) and templated notes full of identifiers. Against reciprocal rank
fusion (k=60, plain and weighted) it gave the better MRR@10 on every set, and on the
identifier set it kept BM25's (near) perfect ranking where rank fusion lost half of it.
The vector weight 0.4 had the best mean MRR@10 over the sets of 0.3 / 0.4 / 0.5 / 0.6,
and on none was it more than 0.008 below the best weight: more vector weight helps the
prose sets a little and costs the identifier set much (0.5: -0.15 there), less costs
the manual pages. Source of the method: E. A.
Fox, J. A. Shaw, "Combination of Multiple Searches", TREC-2, 1994 (CombSUM over
normalised scores); min-max normalisation as in J. H. Lee, "Analyses of Multiple
Evidence Combination", SIGIR 1997.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)

ALPHA = 0.4  # weight of the vector signal; the text signal gets 1 - ALPHA


Normalise = Callable[[Sequence[tuple[T, float]]], dict[T, float]]


def minmax(pairs: Sequence[tuple[T, float]]) -> dict[T, float]:
    """item -> score rescaled to [0, 1] over the list (best 1, worst 0; a list of one,
    or of equal scores, is all 1)."""
    if not pairs:
        return {}
    lo = min(s for _, s in pairs)
    hi = max(s for _, s in pairs)
    span = hi - lo
    return {x: (s - lo) / span if span > 0 else 1.0 for x, s in pairs}


def blend(
    vector: Sequence[tuple[T, float]],
    text: Sequence[tuple[T, float]],
    alpha: float = ALPHA,
    *,
    normalise_vector: Normalise[T] = minmax,
    normalise_text: Normalise[T] = minmax,
) -> list[tuple[T, float]]:
    """(item, fused score) best first over the items of both lists, each a sequence of
    (item, score) with higher scores better: ``alpha * vector + (1 - alpha) * text`` of
    the normalised scores (min-max unless told otherwise: the benchmark compares other
    normalisations through the same function), a missing signal counting 0. With
    min-max the fused score is in [0, 1]. Equal fused scores keep the order in which
    items were first seen (vector list first)."""
    v = normalise_vector(vector)
    t = normalise_text(text)
    items = list(dict.fromkeys([x for x, _ in vector] + [x for x, _ in text]))
    fused = [(x, alpha * v.get(x, 0.0) + (1.0 - alpha) * t.get(x, 0.0)) for x in items]
    return sorted(fused, key=lambda p: -p[1])
