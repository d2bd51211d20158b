from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from magray.kernels import l2_normalize

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)


def reference(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    norms = np.linalg.norm(x64, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(norms > 0, x64 / np.where(norms > 0, norms, 1), 0.0)
    return out


@given(
    x=hnp.arrays(
        np.float32,
        st.tuples(st.integers(0, 40), st.integers(1, 70)),
        elements=finite,
    )
)
def test_matches_float64_reference(isa: str, x: np.ndarray) -> None:
    out = l2_normalize(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, reference(x), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("d", list(range(1, 70)) + [127, 128, 129, 384, 1000])
def test_every_tail_length(isa: str, d: int) -> None:
    rng = np.random.default_rng(d)
    x = rng.standard_normal((13, d)).astype(np.float32)
    np.testing.assert_allclose(l2_normalize(x), reference(x), rtol=2e-5, atol=2e-6)


def test_in_place(isa: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 33)).astype(np.float32)
    expected = reference(x)
    out = l2_normalize(x, out=x)
    assert out is x or np.shares_memory(out, x)
    np.testing.assert_allclose(x, expected, rtol=2e-5, atol=2e-6)


def test_separate_out(isa: str) -> None:
    x = np.ones((4, 9), np.float32)
    out = np.empty_like(x)
    l2_normalize(x, out=out)
    np.testing.assert_allclose(out, 1 / 3, rtol=1e-6)
    np.testing.assert_array_equal(x, 1.0)


def test_zero_row_stays_zero(isa: str) -> None:
    x = np.zeros((3, 17), np.float32)
    x[1, 4] = 2.0
    out = l2_normalize(x)
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out[0], 0)
    np.testing.assert_array_equal(out[2], 0)
    assert out[1, 4] == 1.0


def test_tiny_and_huge_rows(isa: str) -> None:
    x = np.array([[1e-30, 2e-30, 0], [3e30, 4e30, 0], [1e-45, 0, 0]], np.float32)
    out = l2_normalize(x)
    np.testing.assert_allclose(out[:2], [[0.4472136, 0.8944272, 0], [0.6, 0.8, 0]], rtol=1e-6)
    np.testing.assert_allclose(out[2], [1, 0, 0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_names_first_bad_row_and_writes_nothing_in_place(isa: str, bad: float) -> None:
    x = np.ones((6, 20), np.float32)
    x[3, 7] = bad
    x[5, 0] = bad
    before = x.copy()
    with pytest.raises(ValueError, match="row 3 of x contains NaN or Inf"):
        l2_normalize(x, out=x)
    np.testing.assert_array_equal(x, before)
    with pytest.raises(ValueError, match="row 3"):
        l2_normalize(x)


def test_empty_and_shapes() -> None:
    assert l2_normalize(np.zeros((0, 5), np.float32)).shape == (0, 5)
    assert l2_normalize(np.zeros((5, 0), np.float32)).shape == (5, 0)
    np.testing.assert_array_equal(l2_normalize(np.array([[-3.0]], np.float32)), [[-1.0]])


def test_huge_d() -> None:
    x = np.full((2, 1_000_003), 0.5, np.float32)
    out = l2_normalize(x)
    np.testing.assert_allclose(out, 1 / np.sqrt(1_000_003), rtol=1e-4)


def test_bad_arguments_name_the_fix() -> None:
    with pytest.raises(TypeError, match=r"np.ascontiguousarray\(x, dtype=np.float32\)"):
        l2_normalize(np.ones((3, 3), np.float64))
    with pytest.raises(TypeError, match="not C-contiguous"):
        l2_normalize(np.ones((3, 6), np.float32)[:, ::2])
    with pytest.raises(TypeError, match="numpy array"):
        l2_normalize([[1.0, 2.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2-D"):
        l2_normalize(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="shape"):
        l2_normalize(np.ones((3, 3), np.float32), out=np.ones((3, 4), np.float32))
    x = np.ones((3, 3), np.float32)
    ro = np.ones((3, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        l2_normalize(x, out=ro)
    big = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        l2_normalize(big[:3], out=big[1:])
