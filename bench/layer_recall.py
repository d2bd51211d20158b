"""Recall and time of one hnswlib graph over 100k vectors against three graphs over
33k each (merged by score), at a ladder of ef values.

It answers whether a search over several layers could use a smaller ef per layer
than a one-layer search at the same recall. The data are those of
bench/compare_engine.py (clustered 384-d unit vectors, seed 7; records assigned to
the layers in blocks of 1000, as there); recall@10 is against exact search.

    python bench/layer_recall.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_engine import clustered  # noqa: E402
from exact_threshold import median_us  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()

    import hnswlib
    import numpy as np

    from magray import kernels

    k, dim = 10, 384
    data, queries = clustered(args.n, args.queries, dim, seed=7)
    truth = [set(row) for row in kernels.topk(queries, data, k, metric="dot")[0].tolist()]

    def build(rows: Any) -> Any:
        g = hnswlib.Index(space="ip", dim=dim)
        g.init_index(max_elements=len(rows), M=16, ef_construction=200, random_seed=100)
        g.add_items(data[rows], rows, num_threads=2)
        return g

    rows = np.arange(args.n)
    layer = (rows // 1000) % 3
    t0 = time.perf_counter()
    one = build(rows)
    three = [build(rows[layer == i]) for i in range(3)]
    print(f"built in {time.perf_counter() - t0:.1f} s; n={args.n}, k={k}, {len(queries)} queries")

    def merged(q: Any) -> list[int]:
        cand: list[tuple[float, int]] = []
        for g in three:
            labels, dist = g.knn_query(q, k=k, num_threads=1)
            cand += zip(dist[0].tolist(), labels[0].tolist())
        cand.sort()
        return [label for _, label in cand[:k]]

    def recall(found: list[list[int]]) -> float:
        return sum(len(set(f) & t) for f, t in zip(found, truth)) / (k * len(truth))

    print(
        f"{'ef':>4}  {'one graph: recall':>18} {'p50':>8}   {'three graphs: recall':>21} {'p50':>8}"
    )
    for ef in (10, 16, 24, 32, 48, 64):
        for g in [one, *three]:
            g.set_ef(ef)
        r1 = recall([one.knn_query(q, k=k)[0][0].tolist() for q in queries])
        r3 = recall([merged(q) for q in queries])
        t1 = median_us(lambda q: one.knn_query(q, k=k, num_threads=1), queries)
        t3 = median_us(lambda q: [g.knn_query(q, k=k, num_threads=1) for g in three], queries)
        print(f"{ef:>4}  {r1:>18.4f} {t1:>6.0f}us   {r3:>21.4f} {t3:>6.0f}us")


if __name__ == "__main__":
    main()
