"""The hybrid blend: min-max normalised scores, 0.4 x vector + 0.6 x text."""

from __future__ import annotations

import pytest

from magray.memory.fusion import ALPHA, blend, minmax


def test_the_weights_are_the_measured_ones() -> None:
    assert ALPHA == 0.4  # BENCHMARKS.md, bench/compare_retrieval.py


def test_blend_normalises_each_list_and_weights_them() -> None:
    vector = [("a", 0.9), ("b", 0.5), ("c", 0.1)]  # normalised: a 1, b 0.5, c 0
    text = [("b", 12.0), ("d", 4.0)]  # normalised: b 1, d 0
    fused = dict(blend(vector, text))
    assert fused == pytest.approx({"a": 0.4, "b": 0.4 * 0.5 + 0.6, "c": 0.0, "d": 0.0})
    # Ties keep first-seen order, the vector list first.
    assert [x for x, _ in blend(vector, text)] == ["b", "a", "c", "d"]


def test_a_clear_text_hit_beats_a_vector_favourite() -> None:
    # A rare identifier only BM25 sees: the text signal's weight carries it.
    vector = [("near", 0.71), ("exact", 0.70), ("other", 0.69)]
    text = [("exact", 25.0), ("near", 1.0)]
    assert blend(vector, text)[0][0] == "exact"


def test_a_list_of_equal_scores_counts_as_all_best() -> None:
    assert dict(blend([("a", 0.5), ("b", 0.5)], [])) == pytest.approx({"a": 0.4, "b": 0.4})
    assert blend([], []) == []


def test_other_normalisations_go_through_the_same_blend() -> None:
    # Raw scores (no rescaling) on the vector side, divide-by-best on the text side.
    def raw(pairs: list[tuple[str, float]]) -> dict[str, float]:
        return dict(pairs)

    def by_best(pairs: list[tuple[str, float]]) -> dict[str, float]:
        best = max(s for _, s in pairs)
        return {x: s / best for x, s in pairs}

    fused = dict(
        blend([("a", 0.5), ("b", 0.25)], [("b", 8.0)], 0.5, normalise_vector=raw,
              normalise_text=by_best)
    )  # fmt: skip
    assert fused == pytest.approx({"a": 0.25, "b": 0.125 + 0.5})
    assert minmax([("a", 2.0), ("b", 1.0), ("c", 0.0)]) == {"a": 1.0, "b": 0.5, "c": 0.0}
