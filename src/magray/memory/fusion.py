"""Fusing the vector and the text ranking of a hybrid search into one.

Convex combination of scores normalised by the list's best (Bruch, Gai, Ingber, "An
Analysis of Fusion Functions for Hybrid Retrieval", ACM TOIS 2023, the "theoretical
minimum-max" normalisation): each score is rescaled from its retriever's floor to the
best score among the candidates, ``max(s, 0) / best``, cosine from 0 and BM25 from 0,
and an item's fused score is ``alpha * vector + (1 - alpha) * text``. The search
hands in both lists completed over their union (engine: every candidate scored by both
retrievers, exactly), so no candidate is ranked on one signal alone.

Unlike min-max, the fixed floor does not stretch a list of near-equal scores to the
whole of [0, 1]: when the vector side has no clear answer (a query of identifiers
among similar notes), its small differences stay small, and a clear BM25 hit decides;
when BM25 has none, the vector side decides. Cosine from 0 suits embedders for which
unrelated texts score near 0, as all-MiniLM-L6-v2 does; an embedder whose every
cosine is high (0.7 and up) would weigh its vector side less than alpha says.

Chosen by measurement (bench/compare_retrieval.py, see BENCHMARKS.md) over four query
sets: standard-library docstrings, templated notes full of identifiers, and the
system's manual pages queried by their summary and by their whole NAME line. Against
min-max (with and without completion), z-score and reciprocal rank fusion it had the
best mean MRR@10; it gained on every set over the previous fusion (min-max, a missing
score counting 0), and it barely moves with the candidate depth (30, 50 or 100). The
vector weight 0.6 had the best mean MRR@10 over 0.3-0.8 and is within 0.002 of the
best weight on every set; 0.5 gives up 0.005 on the NAME lines, 0.7 gives up 0.02 on
the identifiers.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)

ALPHA = 0.6  # weight of the vector signal; the text signal gets 1 - ALPHA


Normalise = Callable[[Sequence[tuple[T, float]]], dict[T, float]]


def by_best(pairs: Sequence[tuple[T, float]]) -> dict[T, float]:
    """item -> score / best score of the list, in [0, 1] (a negative score counts 0;
    every item 0 when no score is above 0). For similarities whose floor is 0: cosine
    of unrelated texts, BM25 of a text without a query term."""
    if not pairs:
        return {}
    hi = max(s for _, s in pairs)
    if hi <= 0:
        return {x: 0.0 for x, _ in pairs}
    return {x: s / hi if s > 0 else 0.0 for x, s in pairs}


def minmax(pairs: Sequence[tuple[T, float]]) -> dict[T, float]:
    """item -> score rescaled to [0, 1] over the list (best 1, worst 0; a list of one,
    or of equal scores, is all 1). The benchmark's comparison point."""
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
    normalise_vector: Normalise[T] = by_best,
    normalise_text: Normalise[T] = by_best,
) -> list[tuple[T, float]]:
    """(item, fused score) best first over the items of both lists, each a sequence of
    (item, score) with higher scores better: ``alpha * vector + (1 - alpha) * text`` of
    the normalised scores (by_best unless told otherwise: the benchmark compares other
    normalisations through the same function), a missing signal counting 0. With
    by_best or min-max the fused score is in [0, 1], 1 for an item best on both.
    Equal fused scores keep the order in which items were first seen (vector list
    first)."""
    v = normalise_vector(vector)
    t = normalise_text(text)
    items = list(dict.fromkeys([x for x, _ in vector] + [x for x, _ in text]))
    fused = [(x, alpha * v.get(x, 0.0) + (1.0 - alpha) * t.get(x, 0.0)) for x in items]
    return sorted(fused, key=lambda p: -p[1])
