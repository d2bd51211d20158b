"""The Embedder protocol every embedding backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to float32 ``(n, dim)`` arrays with unit rows (a text with no content
    may map to the zero vector).

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
