"""The Embedder protocol every embedding backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to float32 ``(n, dim)`` arrays with unit rows (a text with no content
    may map to the zero vector; the engine then uses :func:`fallback_directions`).

    ``fingerprint`` identifies everything that changes the vectors (model, weights,
    pooling, maximum length, normalisation); stores refuse to mix fingerprints.
    """

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def fallback_directions(texts: Sequence[str], dim: int) -> np.ndarray:
    """Fixed unit vectors for texts that an embedder maps to the zero vector.

    A zero vector has no direction: it cannot be ranked, exported as a vector or found
    again. Each such text instead gets a Rademacher vector (every component
    ``+-1/sqrt(dim)``) whose signs are the bits of XXH3-128 digests of the text, so the
    same text always gets the same vector (it finds itself with similarity 1.0), and
    different texts get nearly orthogonal ones (similarity about ``N(0, 1/dim)``).

    Args:
        texts: n texts.
        dim: the embedder's dimension.

    Returns:
        float32 array ``(n, dim)`` of unit rows.
    """
    import numpy as np

    from magray.kernels import hash128_many

    per = -(-dim // 128)  # 128 sign bits per digest
    items = [f"magray/no-direction/{j}\x00{t}" for t in texts for j in range(per)]
    digests = hash128_many(items).reshape(len(texts), per * 16)
    bits = np.unpackbits(digests, axis=1)[:, :dim].astype(np.float32)
    out: np.ndarray = (bits * 2.0 - 1.0) / np.float32(np.sqrt(dim))
    return out.astype(np.float32)
