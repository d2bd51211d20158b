"""Fusing ranked lists from several retrievers into one ranking.

Reciprocal rank fusion: each list gives an item ``1 / (k + rank)`` (rank from 1) and the
item's fused score is the sum. It needs no score calibration between retrievers (cosine
similarities and BM25 scores live on different scales). Source: G. V. Cormack,
C. L. A. Clarke, S. Büttcher, "Reciprocal Rank Fusion outperforms Condorcet and
individual Rank Learning Methods", SIGIR 2009 (k=60 there).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)

RRF_K = 60


def rrf(
    rankings: Sequence[Sequence[T]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[T, float]]:
    """(item, fused score) best first over every item of every ranking (each ranking
    best first). weights scale each ranking's contribution (default 1 each). Equal
    fused scores keep the order in which items were first seen."""
    if weights is None:
        weights = [1.0] * len(rankings)
    fused: dict[T, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + w / (k + rank)
    return sorted(fused.items(), key=lambda t: -t[1])
