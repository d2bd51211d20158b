"""Fusing the vector and the text ranking of a hybrid search into one.

Convex combination of min-max normalised scores: within each retriever's candidate
list the scores are rescaled to [0, 1] (best 1, worst 0; a list of one, or of equal
scores, is all 1), and an item's fused score is
``alpha * vector + (1 - alpha) * text``, a missing signal counting 0. Scores live on
different scales (cosine similarity, BM25), which the rescaling removes; unlike rank
fusion it keeps how far apart the candidates are, so a retriever that clearly found
the answer (a BM25 hit on a rare identifier) is not outvoted by a near-random ranking
from the other.

Chosen by measurement (bench/compare_retrieval.py, see BENCHMARKS.md): on the
docstring set it gave the best MRR@10 of the variants tried (reciprocal rank fusion
k=60, weighted rank fusion, alpha 0.3/0.5/0.7), and on the identifier set it kept
BM25's perfect ranking where rank fusion lost half of it. Source of the method: E. A.
Fox, J. A. Shaw, "Combination of Multiple Searches", TREC-2, 1994 (CombSUM over
normalised scores); min-max normalisation as in J. H. Lee, "Analyses of Multiple
Evidence Combination", SIGIR 1997.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)

ALPHA = 0.3  # weight of the vector signal; the text signal gets 1 - ALPHA


def _normalised(pairs: Sequence[tuple[T, float]]) -> dict[T, float]:
    if not pairs:
        return {}
    lo = min(s for _, s in pairs)
    hi = max(s for _, s in pairs)
    span = hi - lo
    return {x: (s - lo) / span if span > 0 else 1.0 for x, s in pairs}


def blend(
    vector: Sequence[tuple[T, float]], text: Sequence[tuple[T, float]], alpha: float = ALPHA
) -> list[tuple[T, float]]:
    """(item, fused score in [0, 1]) best first over the items of both lists, each a
    sequence of (item, score) with higher scores better. Equal fused scores keep the
    order in which items were first seen (vector list first)."""
    v = _normalised(vector)
    t = _normalised(text)
    items = list(dict.fromkeys([x for x, _ in vector] + [x for x, _ in text]))
    fused = [(x, alpha * v.get(x, 0.0) + (1.0 - alpha) * t.get(x, 0.0)) for x in items]
    return sorted(fused, key=lambda p: -p[1])
