"""asv benchmarks of the native kernels (run: asv run -E existing:same)."""

from __future__ import annotations

import numpy as np

from magray import kernels


class Hash:
    def setup(self) -> None:
        rng = np.random.default_rng(0)
        lengths = rng.integers(20, 301, size=10_000)
        self.items = ["m" * int(n) for n in lengths]
        self.blob = rng.integers(0, 256, size=16 * 1024 * 1024, dtype=np.uint8).tobytes()

    def time_hash128_many_10k(self) -> None:
        kernels.hash128_many(self.items)

    def time_hash128_16mib(self) -> None:
        kernels.hash128(self.blob)


class Normalize:
    def setup(self) -> None:
        self.x = np.random.default_rng(1).standard_normal((20_000, 384)).astype(np.float32)
        self.out = np.empty_like(self.x)

    def time_l2_normalize_20k(self) -> None:
        kernels.l2_normalize(self.x, out=self.out)


class TopK:
    params = ([1, 16, 256], ["cosine", "dot", "l2"])
    param_names = ["queries", "metric"]

    def setup(self, nq: int, metric: str) -> None:
        rng = np.random.default_rng(2)
        self.base = rng.standard_normal((20_000, 384)).astype(np.float32)
        self.queries = rng.standard_normal((nq, 384)).astype(np.float32)

    def time_topk_20k(self, nq: int, metric: str) -> None:
        kernels.topk(self.queries, self.base, 10, metric=metric)  # type: ignore[arg-type]


class Pool:
    def setup(self) -> None:
        rng = np.random.default_rng(3)
        self.h = rng.standard_normal((32, 256, 384)).astype(np.float32)
        lengths = rng.integers(8, 257, size=32)
        self.m = (np.arange(256)[None, :] < lengths[:, None]).astype(np.int64)

    def time_mean_pool(self) -> None:
        kernels.mean_pool(self.h, self.m)
