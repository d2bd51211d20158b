from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import magray

from ..fakes import FakeClock

__all__ = ["FakeClock", "unit_vectors"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def mem(store_path: Path, clock: FakeClock) -> Iterator[Any]:
    m = magray.open(store_path, embedder="hash", clock=clock)
    try:
        yield m
    finally:
        m.close()


def unit_vectors(n: int, dim: int = 32, seed: int = 0, clusters: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if clusters:
        centers = rng.standard_normal((clusters, dim))
        x = centers[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, dim))
    else:
        x = rng.standard_normal((n, dim))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
