from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from magray.kernels import mean_pool


def reference(h: np.ndarray, m: np.ndarray, normalize: bool) -> np.ndarray:
    h64 = h.astype(np.float64)
    m64 = m.astype(np.float64)
    s = (h64 * m64[..., None]).sum(1)
    cnt = m64.sum(1, keepdims=True)
    out = np.where(cnt != 0, s / np.where(cnt != 0, cnt, 1), 0.0)
    if normalize:
        n = np.linalg.norm(out, axis=1, keepdims=True)
        out = np.where(n > 0, out / np.where(n > 0, n, 1), 0.0)
    return out


@given(
    b=st.integers(0, 6),
    s=st.integers(1, 20),
    d=st.integers(1, 70),
    seed=st.integers(0, 2**32 - 1),
    normalize=st.booleans(),
    dtype=st.sampled_from([np.int64, np.int32]),
)
def test_matches_reference(
    isa: str, b: int, s: int, d: int, seed: int, normalize: bool, dtype: type
) -> None:
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((b, s, d)).astype(np.float32)
    lengths = rng.integers(0, s + 1, size=b)
    m = (np.arange(s)[None, :] < lengths[:, None]).astype(dtype)
    out = mean_pool(h, m, normalize=normalize)
    assert out.shape == (b, d) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference(h, m, normalize), rtol=1e-4, atol=1e-5)


def test_all_zero_mask_gives_zero_vector(isa: str) -> None:
    h = np.ones((2, 4, 8), np.float32)
    m = np.array([[0, 0, 0, 0], [1, 1, 0, 0]], np.int64)
    out = mean_pool(h, m)
    np.testing.assert_array_equal(out[0], 0)
    np.testing.assert_allclose(out[1], 1 / np.sqrt(8), rtol=1e-6)


def test_padding_is_never_read(isa: str) -> None:
    h = np.ones((1, 3, 5), np.float32)
    h[0, 2] = np.nan  # a padded position may hold anything
    m = np.array([[1, 1, 0]], np.int32)
    np.testing.assert_allclose(mean_pool(h, m, normalize=False), np.ones((1, 5)))


def test_nan_in_used_token_is_reported(isa: str) -> None:
    h = np.ones((2, 3, 5), np.float32)
    h[1, 0, 2] = np.inf
    m = np.ones((2, 3), np.int64)
    with pytest.raises(ValueError, match="batch item 1 of hidden"):
        mean_pool(h, m)
    with pytest.raises(ValueError, match="batch item 1 of hidden"):
        mean_pool(h, m, normalize=False)


def test_bad_arguments() -> None:
    h = np.ones((2, 3, 4), np.float32)
    with pytest.raises(TypeError, match="int64 or int32"):
        mean_pool(h, np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(batch, seq\) = \(2, 3\)"):
        mean_pool(h, np.ones((2, 4), np.int64))
    with pytest.raises(ValueError, match="3-D"):
        mean_pool(np.ones((2, 3), np.float32), np.ones((2, 3), np.int64))
    with pytest.raises(TypeError, match="float32"):
        mean_pool(h.astype(np.float64), np.ones((2, 3), np.int64))
    assert mean_pool(np.ones((0, 3, 4), np.float32), np.ones((0, 3), np.int64)).shape == (0, 4)
