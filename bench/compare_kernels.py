"""Kernel bars: magray.kernels against named peers, same process, same data, one thread.

Prints the median time of each side and the ratio of medians (peer / magray: > 1 means
magray is faster). Run from a checkout with the package installed:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/compare_kernels.py

(The OpenBLAS variables are unset so numpy runs its best kernel for this CPU.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

# numpy, faiss and magray are imported in main(), after the thread settings, so that asv
# can import this module (it imports everything under bench/) without side effects.
np: Any = None
kernels: Any = None


def median_time(
    fn: Callable[[], object], repeat: int, setup: Callable[[], None] | None = None
) -> float:
    fn()  # warm-up: page faults, caches, lazy imports
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


ROWS: list[tuple[str, float, float, float, str]] = []


def report(name: str, ours: float, peer: float, bar: float, peer_name: str) -> None:
    ratio = peer / ours
    ROWS.append((name, ours, peer, ratio, f">= {bar}x" if bar else ""))
    verdict = f"(bar >= {bar:.2f}x: {'PASS' if ratio >= bar else 'FAIL'})" if bar else "(no bar)"
    print(
        f"{name:<34} magray {ours * 1e3:9.3f} ms   {peer_name:<31} {peer * 1e3:9.3f} ms"
        f"   ratio {ratio:6.2f}x  {verdict}",
        flush=True,
    )


def make_strings(n: int, non_ascii_share: float, seed: int) -> list[str]:
    """n strings of 20-300 UTF-8 bytes; a share of them carry non-ASCII characters."""
    rng = np.random.default_rng(seed)
    words = ["memory", "agent", "search", "layer", "vector", "index"]
    words += ["store", "recall", "project", "session", "note"]
    extra = ["é", "ü", "Ω", "ж", "漢字", "😀", "→"]
    out = []
    for _ in range(n):
        target = int(rng.integers(20, 301))
        parts: list[str] = []
        size = 0
        wide = rng.random() < non_ascii_share
        while size < target:
            w = words[int(rng.integers(len(words)))]
            if wide and rng.random() < 0.15:
                w += extra[int(rng.integers(len(extra)))]
            parts.append(w)
            size += len(w.encode()) + 1
        s = " ".join(parts)
        while len(s.encode()) > target:
            s = s[:-1]
        out.append(s)
    return out


def bench_hash(repeat: int) -> None:
    import xxhash

    digest = xxhash.xxh3_128_digest
    for label, share, bar in (
        ("hash128_many 100k strings", 0.25, 4.0),
        ("  (all ASCII)", 0.0, 0.0),
        ("  (every string non-ASCII)", 1.0, 0.0),
    ):
        base = make_strings(100_000, share, seed=0)
        # Fresh str objects each round, so neither side profits from a cached UTF-8 form.
        items: list[str] = []

        def fresh(base: list[str] = base, items: list[str] = items) -> None:
            items[:] = [(s + ".")[:-1] for s in base]

        fresh()
        ours = median_time(lambda items=items: kernels.hash128_many(items), repeat, fresh)
        peer = median_time(lambda items=items: [digest(s.encode()) for s in items], repeat, fresh)
        report(label, ours, peer, bar, "python loop xxh3_128_digest")

    rng = np.random.default_rng(0)
    blob = rng.integers(0, 256, size=16 * 1024 * 1024, dtype=np.uint8).tobytes()
    ours = median_time(lambda: kernels.hash128(blob), repeat * 3)
    peer = median_time(lambda: digest(blob), repeat * 3)
    report("hash128 16 MiB", ours, peer, 0.8, "xxh3_128_digest")


def bench_normalize(repeat: int) -> None:
    x = np.random.default_rng(1).standard_normal((100_000, 384)).astype(np.float32)
    ours = median_time(lambda: kernels.l2_normalize(x), repeat)
    peer = median_time(lambda: x / np.linalg.norm(x, axis=1, keepdims=True), repeat)
    report("l2_normalize 100k x 384", ours, peer, 3.0, "x / np.linalg.norm")
    buf = np.empty_like(x)
    reused = median_time(lambda: kernels.l2_normalize(x, out=buf), repeat)
    report("  (out= a reused buffer)", reused, peer, 0.0, "x / np.linalg.norm")
    # What a new 154 MB array costs before any arithmetic: page faults and the kernel
    # zeroing each page, paid once by magray's output and twice by the numpy expression.
    fresh = median_time(lambda: np.empty_like(x).fill(0.0), repeat)
    print(f"  (a new array of that size, first write alone: {fresh * 1e3:.3f} ms)", flush=True)


def bench_topk(repeat: int) -> None:
    import faiss

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(2)
    base = rng.standard_normal((100_000, 384)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = rng.standard_normal((256, 384)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    q = queries[0].copy()
    k = 10

    def numpy_one() -> np.ndarray:
        s = base @ q
        part = np.argpartition(-s, k)[:k]
        return part[np.argsort(-s[part], kind="stable")]

    def numpy_many() -> np.ndarray:
        s = queries @ base.T
        part = np.argpartition(-s, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, 1), axis=1, kind="stable")
        return np.take_along_axis(part, order, 1)

    index = faiss.IndexFlatIP(384)
    index.add(base)
    ours_idx, _ = kernels.topk(q, base, k)
    assert (ours_idx == numpy_one()).all(), "magray and numpy disagree on the 1-query result"
    ours = median_time(lambda: kernels.topk(q, base, k), repeat * 5)
    peer = median_time(numpy_one, repeat * 5)
    report("topk 1 query, 100k x 384", ours, peer, 1.3, "numpy argpartition(base @ q)")
    peer = median_time(lambda: index.search(q[None, :], k), repeat * 5)
    report("topk 1 query vs faiss", ours, peer, 1 / 1.1, "faiss IndexFlatIP (1 thread)")
    # The same search as a raw inner product: no norms to compute, as in both peers.
    ours = median_time(lambda: kernels.topk(q, base, k, metric="dot"), repeat * 5)
    peer = median_time(numpy_one, repeat * 5)
    report("  (metric='dot')", ours, peer, 0.0, "numpy argpartition(base @ q)")

    ours_idx, _ = kernels.topk(queries, base, k)
    agree = (ours_idx == numpy_many()).mean()
    ours = median_time(lambda: kernels.topk(queries, base, k), repeat)
    peer = median_time(numpy_many, repeat)
    report("topk 256 queries, 100k x 384", ours, peer, 1.5, "numpy Q @ base.T + argpartition")
    print(f"  (256-query results agree with numpy on {agree:.4%} of positions)")


def bench_pool(repeat: int) -> None:
    rng = np.random.default_rng(3)
    h = rng.standard_normal((32, 256, 384)).astype(np.float32)
    lengths = rng.integers(8, 257, size=32)
    m = (np.arange(256)[None, :] < lengths[:, None]).astype(np.int64)

    def numpy_pool() -> np.ndarray:
        e = (h * m[..., None]).sum(1) / m.sum(1, keepdims=True)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    np.testing.assert_allclose(kernels.mean_pool(h, m), numpy_pool(), rtol=1e-4, atol=1e-5)
    ours = median_time(lambda: kernels.mean_pool(h, m), repeat * 5)
    peer = median_time(numpy_pool, repeat * 5)
    report("mean_pool (32, 256, 384) ragged", ours, peer, 3.0, "numpy masked mean + normalise")


def main() -> None:
    global np, kernels
    # One thread everywhere, set before numpy or faiss load their BLAS.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import numpy

    from magray import kernels as magray_kernels

    np, kernels = numpy, magray_kernels

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=11, help="timed rounds per side (median taken)")
    ap.add_argument("--only", choices=["hash", "normalize", "topk", "pool"], action="append")
    args = ap.parse_args()
    info = kernels.cpu_info()
    isa, best = info["isa"], info["best"]
    print(f"magray kernels: isa={isa} (best {best}), one thread; numpy {np.__version__}")
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            api, arch, n = (
                pool.get("internal_api"),
                pool.get("architecture"),
                pool.get("num_threads"),
            )
            print(f"  {api}: {arch}, {n} thread(s)")
    except ImportError:
        pass
    todo = args.only or ["hash", "normalize", "topk", "pool"]
    for name in todo:
        globals()[f"bench_{name}"](args.repeat)
    barred = [r for r in ROWS if r[4]]
    failed = [r for r in barred if r[3] < float(r[4].split()[1].rstrip("x"))]
    print(f"\n{len(barred) - len(failed)} of {len(barred)} bars met")


if __name__ == "__main__":
    main()
