"""Native kernels: hashing, normalisation, exact top-k and pooling.

The friendly face of the private extension ``magray._native``. Every function checks its
arguments and never copies silently: a wrong dtype, a non-contiguous array or a wrong shape
raises ``TypeError`` or ``ValueError`` that names the fix (for example
``pass np.ascontiguousarray(x, dtype=np.float32)``). Compute runs with the GIL released, on
the best instruction set of this CPU (scalar, AVX2+FMA or AVX-512), chosen at import time
and forceable with ``MAGRAY_FORCE_ISA=scalar|avx2|avx512``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from magray import _native

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "cpu_info",
    "hash128",
    "hash128_many",
    "l2_normalize",
    "mean_pool",
    "i8_query_scale",
    "quantize_i8",
    "topk",
    "topk_i8",
]

Metric = Literal["cosine", "dot", "l2"]


def hash128(data: str | bytes | bytearray | memoryview, *, seed: int = 0) -> bytes:
    """XXH3-128 digest of ``data`` as 16 bytes (the canonical, big-endian form).

    ``str`` is hashed as its UTF-8 bytes. ``seed`` is an int in ``[0, 2**64)``. The result
    equals ``xxhash.xxh3_128_digest(data, seed=seed)``.

    Raises:
        TypeError: ``data`` is neither str nor a bytes-like object.
        ValueError: ``seed`` is out of range.
    """
    return _native.hash128(data, seed)


def hash128_many(items: Sequence[str | bytes], *, seed: int = 0) -> np.ndarray:
    """XXH3-128 digests of many items in one native call.

    Returns a ``uint8`` array of shape ``(len(items), 16)`` whose row ``i`` equals
    ``hash128(items[i], seed=seed)``.

    Raises:
        TypeError: an item is neither str nor bytes (the message gives its position).
    """
    return _native.hash128_many(items, seed)


def l2_normalize(x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Row-wise L2 normalisation of a float32 ``(n, d)`` matrix in one fused pass.

    ``out=x`` normalises in place; otherwise a new array is returned (or ``out`` is filled).
    A zero row stays zero.

    Raises:
        TypeError: ``x`` or ``out`` is not a C-contiguous float32 array.
        ValueError: a row holds NaN or Inf (the message names the first such row; with
            ``out=x`` nothing has been written), or the shapes differ.
    """
    return _native.l2_normalize(x, out)


def topk(
    queries: np.ndarray,
    base: np.ndarray,
    k: int,
    *,
    metric: Metric = "cosine",
    ids: npt.NDArray[np.int64] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest rows of ``base`` for each query.

    Args:
        queries: float32 ``(q, d)``, or ``(d,)`` for one query.
        base: float32 ``(n, d)``.
        k: how many results per query, ``>= 1``; ``k' = min(k, rows searched)`` come back.
        metric: ``"cosine"`` or ``"dot"`` (similarities, higher is better) or ``"l2"``
            (squared Euclidean distance, lower is better).
        ids: optional int64 row numbers of ``base``: only those rows are searched
            (filtered exact search, re-scoring). Each row at most once.

    Returns:
        ``(indices, scores)``: int64 and float32, shape ``(q, k')`` (``(k',)`` for a 1-D
        query), best first, ties broken by the lower row index. Cosine treats a zero vector
        as orthogonal to everything (score 0).

    Raises:
        TypeError: an array has the wrong dtype or is not contiguous.
        ValueError: ``k < 1``, dimensions differ, an unknown metric, a bad id, or NaN/Inf.
    """
    return _native.topk(queries, base, k, metric, ids)


def quantize_i8(x: np.ndarray) -> np.ndarray:
    """int8 copy of unit float32 rows for :func:`topk_i8`: ``round(127 * x)``, clipped
    to [-127, 127].

    Args:
        x: float32 ``(n, d)``, rows of norm 1 (each value in [-1, 1]).

    Returns:
        int8 ``(n, d)``. Each value is within 1/254 of 127 times the original's.
    """
    import numpy as np

    t = np.multiply(x, np.float32(127.0), dtype=np.float32)  # one float32 temporary
    np.rint(t, out=t)
    np.clip(t, -127.0, 127.0, out=t)
    out: np.ndarray = t.astype(np.int8)
    return out


def i8_query_scale(query: np.ndarray) -> float:
    """The scale s at which :func:`topk_i8` rounds a float32 query ``(d,)`` to int16,
    ``round(s * query)``: the largest for which no int32 sum of d products with int8
    values can overflow, ``min(32767, floor((2**31 - 1) / (128 d))) / max|query|`` (0 for
    a zero query). The same native code topk_i8 runs.

    Raises:
        TypeError: the query is not a contiguous float32 array.
        ValueError: the query holds NaN or Inf.
    """
    return float(_native.i8_query_scale(query))


def topk_i8(query: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidates for a one-query dot-product top-k over int8 rows (see quantize_i8).

    The query is rounded to int16, ``round(s * query)`` with s from
    :func:`i8_query_scale`, and every row's dot product with it is computed exactly in
    int32; the scan reads a quarter of the bytes of the float32 rows, so it is the fast
    first stage of a two-stage search whose second stage rescores the candidates from the
    float32 rows with :func:`topk` (``ids=``). Scalar quantisation with exact rescoring,
    as in Jégou et al., "Product quantization for nearest neighbor search" (IEEE TPAMI
    2011), section IV.

    Args:
        query: float32 ``(d,)``, finite.
        base: int8 ``(n, d)``, C-contiguous.
        k: candidates wanted, ``>= 1``; ``k' = min(k, n)`` come back.

    Returns:
        ``(indices, scores)``: int64 row indices of ``base`` and float32 scores, shape
        ``(k',)``, best first, ties to the lower row. A score is the integer dot product
        divided by ``127 s``: for a row ``b = 127 (x + e)`` it differs from ``query . x``
        by at most ``|query . e| + 0.5 * sum|b| / (127 s)``.

    Raises:
        TypeError: wrong dtypes, or an array that is not contiguous.
        ValueError: ``k < 1``, dimensions differ, ``d == 0``, or NaN/Inf in the query.
    """
    import numpy as np

    idx, dots, scale = _native.topk_i8(query, base, k)
    scores = dots / np.float32(127.0 * scale) if scale else np.zeros_like(dots)
    return idx, scores.astype(np.float32)


def mean_pool(hidden: np.ndarray, mask: np.ndarray, *, normalize: bool = True) -> np.ndarray:
    """Attention-masked mean over the token axis: the sentence-embedding pooling step.

    Args:
        hidden: float32 ``(b, s, d)`` token states (for example an ONNX model's output).
        mask: int64 or int32 ``(b, s)`` attention mask; entries are weights (0 skips a token).
        normalize: L2-normalise each pooled row.

    Returns:
        float32 ``(b, d)``. A row whose mask is all zero is a zero vector.

    Raises:
        TypeError: wrong dtype or a non-contiguous array.
        ValueError: shapes disagree, or a pooled row is NaN/Inf.
    """
    return _native.mean_pool(hidden, mask, normalize)


def cpu_info() -> dict[str, object]:
    """What the CPU offers and which kernels run.

    Returns a dict with ``isa`` (active: ``"scalar"``, ``"avx2"`` or ``"avx512"``),
    ``best`` (the best this CPU supports), ``forced`` (whether ``MAGRAY_FORCE_ISA`` chose
    it) and ``available`` (every instruction set usable here).
    """
    return _native.cpu_info()
