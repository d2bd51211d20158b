from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from magray import kernels
from magray.kernels import topk


def ref_scores(q: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    q64, b64 = q.astype(np.float64), b.astype(np.float64)
    s = q64 @ b64.T
    if metric == "l2":
        # The expansion, not a (q, n, d) difference tensor: exact on small integers.
        return (q64**2).sum(1)[:, None] - 2 * s + (b64**2).sum(1)[None, :]
    if metric == "cosine":
        qn = np.linalg.norm(q64, axis=1)[:, None]
        bn = np.linalg.norm(b64, axis=1)[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where((qn > 0) & (bn > 0), s / (qn * bn), 0.0)
    return s


def ref_topk(scores: np.ndarray, k: int, metric: str, rows: np.ndarray) -> np.ndarray:
    """Best-first row numbers with ties to the lower row, among `rows`."""
    out = []
    for s in scores:
        key = s[rows] if metric == "l2" else -s[rows]
        order = np.lexsort((rows, key))
        out.append(rows[order[:k]])
    return np.array(out, dtype=np.int64).reshape(len(scores), -1)


def assert_exact_topk(
    idx: np.ndarray, sc: np.ndarray, ref: np.ndarray, k: int, metric: str
) -> None:
    """Integer data: dot and l2 rows and scores exactly as the reference ranks them
    (ties to the lower row); cosine scores within float32 rounding of the best k."""
    if metric == "cosine":
        for i in range(len(ref)):
            best = -np.sort(-ref[i])[:k]
            np.testing.assert_allclose(sc[i], best, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(ref[i][idx[i]], best, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(idx, ref_topk(ref, k, metric, np.arange(ref.shape[1])))
        np.testing.assert_array_equal(sc, np.take_along_axis(ref, idx, 1).astype(np.float32))


small_ints = st.integers(-3, 3)


@given(
    nq=st.integers(1, 14),
    nb=st.integers(0, 90),
    d=st.integers(1, 40),
    k=st.integers(1, 100),
    metric=st.sampled_from(["dot", "l2"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_exact_on_integer_data_with_ties(
    isa: str, nq: int, nb: int, d: int, k: int, metric: str, seed: int
) -> None:
    # Small integers make every float32 score exact, so ranks (and ties) must match exactly.
    rng = np.random.default_rng(seed)
    q = rng.integers(-3, 4, size=(nq, d)).astype(np.float32)
    b = rng.integers(-3, 4, size=(nb, d)).astype(np.float32)
    idx, sc = topk(q, b, k, metric=metric)
    kk = min(k, nb)
    assert idx.shape == (nq, kk) and sc.shape == (nq, kk)
    assert idx.dtype == np.int64 and sc.dtype == np.float32
    ref = ref_scores(q, b, metric)
    np.testing.assert_array_equal(idx, ref_topk(ref, kk, metric, np.arange(nb)))
    np.testing.assert_array_equal(sc, np.take_along_axis(ref, idx, 1).astype(np.float32))


@given(
    nq=st.integers(1, 30),
    nb=st.integers(1, 300),
    d=st.integers(1, 80),
    k=st.integers(1, 20),
    metric=st.sampled_from(["cosine", "dot", "l2"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_float64_reference(
    isa: str, nq: int, nb: int, d: int, k: int, metric: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    b = rng.standard_normal((nb, d)).astype(np.float32)
    idx, sc = topk(q, b, k, metric=metric)
    ref = ref_scores(q, b, metric)
    kk = min(k, nb)
    tol = 1e-4 * (1 + np.abs(ref).max())
    # Scores are right for the rows returned...
    np.testing.assert_allclose(sc, np.take_along_axis(ref, idx, 1), atol=tol)
    # ...best first, and no better row was left out.
    for i in range(nq):
        assert len(set(idx[i].tolist())) == kk
        best = np.sort(ref[i])[:kk] if metric == "l2" else -np.sort(-ref[i])[:kk]
        np.testing.assert_allclose(sc[i], best, atol=tol)
        diffs = np.diff(sc[i])
        assert (diffs >= -tol).all() if metric == "l2" else (diffs <= tol).all()


@given(
    nb=st.integers(1, 200),
    d=st.integers(1, 24),
    nq=st.integers(1, 13),
    k=st.integers(1, 30),
    metric=st.sampled_from(["cosine", "dot", "l2"]),
    data=st.data(),
)
def test_ids_restrict_the_search(
    isa: str, nb: int, d: int, nq: int, k: int, metric: str, data: st.DataObject
) -> None:
    rng = np.random.default_rng(nb * 31 + d)
    b = rng.integers(-3, 4, size=(nb, d)).astype(np.float32)
    q = rng.integers(-3, 4, size=(nq, d)).astype(np.float32)
    ids = np.array(
        data.draw(st.lists(st.integers(0, nb - 1), unique=True, max_size=nb)), dtype=np.int64
    )
    idx, sc = topk(q, b, k, metric=metric, ids=ids)
    kk = min(k, len(ids))
    assert idx.shape == (nq, kk)
    assert set(idx.ravel().tolist()) <= set(ids.tolist())
    if metric != "cosine":
        ref = ref_scores(q, b, metric)
        np.testing.assert_array_equal(idx, ref_topk(ref, kk, metric, np.sort(ids)))


@given(
    d=st.sampled_from([64, 128, 192, 256, 320, 384]),
    nb=st.integers(0, 150),
    nq=st.integers(1, 3),
    k=st.integers(1, 40),
    metric=st.sampled_from(["cosine", "dot", "l2"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_one_query_on_embedding_widths(
    isa: str, d: int, nb: int, nq: int, k: int, metric: str, seed: int
) -> None:
    # The one-query scan at the widths embedding models use (whole steps of the row loop,
    # no tail): every row-count tail, with ties, zero rows and a row whose norm overflows.
    rng = np.random.default_rng(seed)
    b = rng.integers(-2, 3, size=(nb, d)).astype(np.float32)
    q = rng.integers(-2, 3, size=(nq, d)).astype(np.float32)
    if nb > 3:
        b[rng.integers(nb)] = 0.0
        b[rng.integers(nb)] = b[rng.integers(nb)]
        if metric == "cosine":
            b[rng.integers(nb)] = 3e19  # |row|^2 overflows float32: the careful path
    idx, sc = topk(q, b, k, metric=metric)
    ref = ref_scores(q, b, metric)
    kk = min(k, nb)
    assert idx.shape == (nq, kk)
    assert_exact_topk(idx, sc, ref, kk, metric)


@pytest.mark.parametrize("nb", list(range(0, 70)) + [511, 512, 513, 1000])
def test_every_row_count_tail(isa: str, nb: int) -> None:
    rng = np.random.default_rng(nb)
    b = rng.standard_normal((nb, 37)).astype(np.float32)
    for nq in (1, 5, 13, 25, 70):
        q = rng.standard_normal((nq, 37)).astype(np.float32)
        idx, _ = topk(q, b, 7, metric="dot")
        ref = ref_scores(q, b, "dot")
        for i in range(nq):
            np.testing.assert_array_equal(idx[i], np.argsort(-ref[i], kind="stable")[: min(7, nb)])


def test_duplicate_rows_tie_to_lower_index(isa: str) -> None:
    b = np.tile(np.array([[1.0, 2.0, 3.0]], np.float32), (50, 1))
    for nq in (1, 8):
        q = np.ones((nq, 3), np.float32)
        for metric in ("cosine", "dot", "l2"):
            idx, _ = topk(q, b, 5, metric=metric)
            assert (idx == np.arange(5)).all(), metric


def test_one_dimensional_query_and_unit_rows(isa: str) -> None:
    rng = np.random.default_rng(0)
    b = rng.standard_normal((5000, 64)).astype(np.float32)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    q = b[1234].copy()
    idx, sc = topk(q, b, 3)
    assert idx.shape == (3,) and idx[0] == 1234
    assert abs(sc[0] - 1.0) < 1e-5
    idx2, sc2 = topk(q[None, :], b, 3)
    np.testing.assert_array_equal(idx2[0], idx)


def test_zero_vectors_score_zero_in_cosine(isa: str) -> None:
    b = np.array([[0, 0], [1, 0], [-1, 0]], np.float32)
    idx, sc = topk(np.array([1, 0], np.float32), b, 3)
    np.testing.assert_array_equal(idx, [1, 0, 2])
    np.testing.assert_allclose(sc, [1, 0, -1])
    idx, sc = topk(np.zeros(2, np.float32), b, 3)
    np.testing.assert_array_equal(sc, [0, 0, 0])


def test_huge_d(isa: str) -> None:
    rng = np.random.default_rng(9)
    b = rng.standard_normal((6, 200_001)).astype(np.float32)
    q = b[4] + 0.01
    idx, _ = topk(q, b, 2, metric="l2")
    assert idx[0] == 4


def test_empty_inputs() -> None:
    b = np.ones((0, 4), np.float32)
    idx, sc = topk(np.ones((3, 4), np.float32), b, 5)
    assert idx.shape == (3, 0) and sc.shape == (3, 0)
    idx, sc = topk(np.ones((0, 4), np.float32), np.ones((10, 4), np.float32), 5)
    assert idx.shape == (0, 5)
    idx, sc = topk(
        np.ones((2, 4), np.float32), np.ones((10, 4), np.float32), 5, ids=np.array([], np.int64)
    )
    assert idx.shape == (2, 0)


@pytest.mark.parametrize("d", [8, 128])
@pytest.mark.parametrize("where", ["queries", "base"])
@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_nan_is_reported(isa: str, where: str, metric: str, d: int) -> None:
    q = np.ones((3, d), np.float32)
    b = np.ones((40, d), np.float32)
    (q if where == "queries" else b)[2, 5] = np.nan
    with pytest.raises(ValueError, match=f"row 2 of {where} contains NaN or Inf"):
        topk(q, b, 4, metric=metric)


def test_bad_arguments_name_the_fix() -> None:
    b = np.ones((10, 4), np.float32)
    q = np.ones((2, 4), np.float32)
    for k in (0, -1):
        with pytest.raises(ValueError, match="k must be >= 1"):
            topk(q, b, k)
    with pytest.raises(ValueError, match="dimension 3 but base has 4"):
        topk(np.ones((2, 3), np.float32), b, 1)
    with pytest.raises(ValueError, match="'cosine', 'dot', 'l2'"):
        topk(q, b, 1, metric="hamming")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"np.ascontiguousarray\(base, dtype=np.float32\)"):
        topk(q, b.astype(np.float64), 1)
    with pytest.raises(TypeError, match="not C-contiguous"):
        topk(q, np.ones((10, 8), np.float32)[:, ::2], 1)
    with pytest.raises(TypeError, match="int64"):
        topk(q, b, 1, ids=np.array([1, 2], np.int32))
    with pytest.raises(ValueError, match="outside base's rows"):
        topk(q, b, 1, ids=np.array([1, 10], np.int64))
    with pytest.raises(ValueError, match="twice"):
        topk(q, b, 1, ids=np.array([1, 1], np.int64))
    with pytest.raises(ValueError, match="at least one dimension"):
        topk(np.ones((2, 0), np.float32), np.ones((3, 0), np.float32), 1)


@pytest.mark.parametrize("d", [24, 384])
@pytest.mark.parametrize("metric", ["dot", "l2", "cosine"])
def test_few_queries_over_many_tiles(isa: str, metric: str, d: int) -> None:
    # 20k rows span several tiles of the few-query path, whose in-kernel filter uses the
    # threshold reached by earlier tiles: late winners, ties across tiles, and rows that
    # need the careful norm (zero and huge rows) must all come out right, both with a row
    # tail (d = 24) and without (d = 384).
    rng = np.random.default_rng(5)
    b = rng.integers(-3, 4, size=(20_000, d)).astype(np.float32)
    b[19_990] = b[3]  # a tie across tiles: the lower row wins
    b[12_345] = 0.0
    if metric == "cosine":
        b[17_000] = 1e20  # its squared norm overflows float32; cosine must still be right
    for nq in (1, 3):
        q = rng.integers(-3, 4, size=(nq, d)).astype(np.float32)
        q[0] = b[19_999] if metric != "l2" else b[19_999] + 0.5  # the best rows come last
        idx, sc = topk(q, b, 12, metric=metric)
        assert_exact_topk(idx, sc, ref_scores(q, b, metric), 12, metric)


def _i8_reference(q: np.ndarray, base: np.ndarray, k: int) -> tuple[list[int], np.ndarray]:
    """topk_i8's answer computed in int64 by numpy: the query rounded to int16 at the
    documented scale, exact dot products, ties to the lower row; with the dot products."""
    s = kernels.i8_query_scale(q)
    d, amax = q.shape[0], float(np.abs(q).max())
    assert s == (min(32767.0, np.floor((2**31 - 1) / (128.0 * d))) / amax if amax else 0.0)
    q16 = np.rint(q.astype(np.float64) * s).astype(np.int64)
    dots = base.astype(np.int64) @ q16
    order = np.lexsort((np.arange(len(dots)), -dots))[:k]
    return order.tolist(), dots[order] / (127.0 * s)


@pytest.mark.parametrize("d", [1, 15, 16, 33, 384, 1000])
@pytest.mark.parametrize("nb", [1, 2, 3, 4097, 9000])
def test_topk_i8_is_exact_on_its_integers(isa: str, nb: int, d: int) -> None:
    rng = np.random.default_rng(nb * 1000 + d)
    x = rng.standard_normal((nb, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    base = kernels.quantize_i8(x)
    base[nb // 2] = base[0]  # a tie, which goes to the lower row
    q = x[min(3, nb - 1)] + np.float32(0.1) * rng.standard_normal(d).astype(np.float32)
    for k in (1, 10, 64):
        idx, scores = kernels.topk_i8(q, base, k)
        want, dots = _i8_reference(q, base, k)
        assert idx.tolist() == want
        np.testing.assert_allclose(scores, dots, rtol=1e-6, atol=1e-7)
        # The documented error bound against the float rows' own dot products.
        b = base[idx].astype(np.float64)
        e = b / 127.0 - x[idx].astype(np.float64)
        bound = np.abs(e @ q) + 0.5 * np.abs(b).sum(1) / (127.0 * kernels.i8_query_scale(q))
        exact = x[idx].astype(np.float64) @ q.astype(np.float64)
        assert np.all(np.abs(scores - exact) <= bound + 1e-5)


def test_topk_i8_cannot_overflow_at_the_extremes() -> None:
    # d * 128 * 32767 would overflow an int32: the scale keeps every sum in range, also
    # for -128, which quantize_i8 never makes but an int8 array may hold.
    d = 768
    base = np.full((3, d), -128, np.int8)
    base[1] = 127
    q = np.full(d, -1.0, np.float32)
    idx, scores = kernels.topk_i8(q, base, 3)
    assert idx.tolist()[:2] == [0, 2] and scores[0] > 0 > scores[2]


def test_topk_i8_finds_what_the_float_scan_finds() -> None:
    # The two-stage search the index runs while a graph builds: int8 candidates, rescored.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20_000, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    base = kernels.quantize_i8(x)
    hits = 0
    for i in range(50):
        q = x[i] + np.float32(0.6) * rng.standard_normal(384).astype(np.float32)
        q /= np.linalg.norm(q)
        exact = kernels.topk(q, x, 10, metric="dot")[0].tolist()
        cand, _ = kernels.topk_i8(q, base, 64)
        two_stage = kernels.topk(q, x, 10, metric="dot", ids=cand)[0].tolist()
        hits += len(set(exact) & set(two_stage))
    assert hits / 500 >= 0.99


def test_topk_i8_bad_arguments_name_the_fix() -> None:
    base = np.zeros((4, 8), np.int8)
    q = np.ones(8, np.float32)
    with pytest.raises(TypeError, match="expected int8"):
        kernels.topk_i8(q, base.astype(np.float32), 1)
    with pytest.raises(TypeError, match="float32"):
        kernels.topk_i8(q.astype(np.float64), base, 1)
    with pytest.raises(ValueError, match="dimension"):
        kernels.topk_i8(np.ones(7, np.float32), base, 1)
    with pytest.raises(ValueError, match="k must be"):
        kernels.topk_i8(q, base, 0)
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="NaN or Inf"):
            kernels.topk_i8(np.array([bad] + [0.0] * 7, np.float32), base, 1)
        with pytest.raises(ValueError, match="NaN or Inf"):
            kernels.i8_query_scale(np.array([bad] + [0.0] * 7, np.float32))
    with pytest.raises(TypeError, match="float32"):
        kernels.i8_query_scale(np.ones(8))
    idx, scores = kernels.topk_i8(np.zeros(8, np.float32), base, 2)
    assert idx.tolist() == [0, 1] and scores.tolist() == [0.0, 0.0]
