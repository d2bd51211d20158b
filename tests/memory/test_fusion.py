"""The hybrid blend: scores divided by the list's best, 0.6 x vector + 0.4 x text."""

from __future__ import annotations

import pytest

from magray.memory.fusion import ALPHA, blend, by_best, minmax


def test_the_weights_are_the_measured_ones() -> None:
    assert ALPHA == 0.6  # BENCHMARKS.md, bench/compare_retrieval.py


def test_blend_divides_each_list_by_its_best_and_weights_them() -> None:
    vector = [("a", 0.8), ("b", 0.4), ("c", -0.1)]  # a 1, b 0.5, c 0 (below the floor)
    text = [("a", 0.0), ("b", 12.0), ("c", 3.0)]  # a 0, b 1, c 0.25
    fused = dict(blend(vector, text))
    assert fused == pytest.approx({"a": 0.6, "b": 0.6 * 0.5 + 0.4, "c": 0.4 * 0.25})
    assert [x for x, _ in blend(vector, text)] == ["b", "a", "c"]


def test_near_equal_cosines_are_not_stretched() -> None:
    # Min-max would turn 0.31 vs 0.30 into 1 vs 0 and let the vector side outvote a
    # clear BM25 answer; divided by the best they stay 1 vs 0.97.
    vector = [("near", 0.31), ("exact", 0.30)]
    text = [("near", 9.0), ("exact", 25.0)]
    assert blend(vector, text)[0][0] == "exact"
    assert blend(vector, text, normalise_vector=minmax, normalise_text=minmax)[0][0] == "near"


def test_a_clear_vector_answer_wins_where_the_text_side_is_flat() -> None:
    vector = [("meant", 0.62), ("other", 0.21)]
    text = [("meant", 3.9), ("other", 4.0)]
    assert blend(vector, text)[0][0] == "meant"


def test_by_best_edges() -> None:
    assert by_best([]) == {}
    assert by_best([("a", 0.0), ("b", -0.2)]) == {"a": 0.0, "b": 0.0}  # nothing above 0
    assert by_best([("a", 2.0)]) == {"a": 1.0}
    assert dict(blend([("a", 0.5)], [])) == pytest.approx({"a": 0.6})  # missing counts 0
    assert blend([], []) == []


def test_every_fused_score_is_in_the_unit_interval() -> None:
    vector = [(i, (i % 7) / 7 - 0.3) for i in range(20)]
    text = [(i, float(i % 5) * 3.1) for i in range(20)]
    scores = [s for _, s in blend(vector, text)]
    assert all(0.0 <= s <= 1.0 for s in scores) and max(scores) <= 1.0
    assert scores == sorted(scores, reverse=True)


def test_other_normalisations_go_through_the_same_blend() -> None:
    def raw(pairs: list[tuple[str, float]]) -> dict[str, float]:
        return dict(pairs)

    fused = dict(blend([("a", 0.5), ("b", 0.25)], [("b", 8.0)], 0.5, normalise_vector=raw))
    assert fused == pytest.approx({"a": 0.25, "b": 0.125 + 0.5})
    assert minmax([("a", 2.0), ("b", 1.0), ("c", 0.0)]) == {"a": 1.0, "b": 0.5, "c": 0.0}
