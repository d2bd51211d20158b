"""Where exact search stops paying: native top-k against an hnswlib graph (ef=64) per
layer size, one query at a time, on clustered 384-d unit vectors. Sets exact_threshold.

    python bench/exact_threshold.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def median_us(fn: Any, queries: Any) -> float:
    for q in queries[:20]:
        fn(q)
    samples = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def main() -> None:
    import hnswlib
    import numpy as np
    from compare_engine import clustered

    from magray import kernels

    data, queries = clustered(16000, 200, 384, seed=3)
    for n in (1000, 2000, 3000, 4000, 8000, 16000):
        base = np.ascontiguousarray(data[:n])
        graph = hnswlib.Index(space="ip", dim=384)
        graph.init_index(n, M=16, ef_construction=200)
        graph.add_items(base, num_threads=2)
        graph.set_ef(64)
        exact = median_us(lambda q, b=base: kernels.topk(q, b, 10, metric="dot"), queries)
        approx = median_us(lambda q, g=graph: g.knn_query(q, k=10, num_threads=1), queries)
        print(f"n={n:6d}: exact native top-k {exact:7.1f} us, hnswlib ef=64 {approx:7.1f} us")


if __name__ == "__main__":
    main()
