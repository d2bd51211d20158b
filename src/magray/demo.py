"""A short tour of magray's native kernels: ``python -m magray.demo``."""

from __future__ import annotations

import time


def main() -> None:
    import numpy as np

    from magray import __version__, kernels

    info = kernels.cpu_info()
    available = ", ".join(str(name) for name in info["available"])  # type: ignore[attr-defined]
    print(f"magray {__version__}: kernels on {info['isa']} (this CPU offers {available})")

    texts = ["remember the milk", "the deploy key lives in the vault", "remember the milk"]
    digests = kernels.hash128_many(texts)
    print(
        f"hash128_many: {len(texts)} texts -> {digests.shape} digests; duplicates share a key:",
        digests[0].tobytes() == digests[2].tobytes(),
    )

    rng = np.random.default_rng(0)
    base = kernels.l2_normalize(rng.standard_normal((100_000, 384)).astype(np.float32))
    query = base[4242] + 0.02 * rng.standard_normal(384).astype(np.float32)
    t0 = time.perf_counter()
    idx, scores = kernels.topk(query, base, 5)
    ms = (time.perf_counter() - t0) * 1e3
    print(
        f"topk: exact search of 100,000 x 384 vectors in {ms:.2f} ms; best row {idx[0]} "
        f"(cosine {scores[0]:.3f})"
    )

    hidden = rng.standard_normal((2, 8, 384)).astype(np.float32)
    mask = np.array([[1] * 8, [1] * 3 + [0] * 5], dtype=np.int64)
    pooled = kernels.mean_pool(hidden, mask)
    print(
        f"mean_pool: {hidden.shape} token states -> {pooled.shape} unit sentence vectors, "
        f"norms {np.linalg.norm(pooled, axis=1).round(4).tolist()}"
    )


if __name__ == "__main__":
    main()
