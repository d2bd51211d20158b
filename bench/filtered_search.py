"""A selective filter on a store whose graph is built: the candidates are scored exactly,
and their vectors are read from the store (magray) or from the graph with
`hnswlib.Index.get_items` (the path before; the peer). Same store, same queries, one run.

    python bench/filtered_search.py [--n 50000] [--candidates 2500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_engine import clustered  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--candidates", type=int, default=2500)
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()
    import magray

    base, queries = clustered(args.n, args.queries, 384, seed=7)
    c = args.candidates
    with tempfile.TemporaryDirectory() as d, magray.open(Path(d) / "s", embedder=None) as mem:
        for i in range(0, args.n, 10_000):
            part = base[i : i + 10_000]
            project = ["few" if i + j < c else "many" for j in range(len(part))]
            for p in ("few", "many"):
                rows = [j for j, x in enumerate(project) if x == p]
                if rows:
                    mem.add_many([f"d{i + j}" for j in rows], vectors=part[rows], project=p)
        mem.wait_ready()
        idx = mem._index
        assert idx is not None and idx.graph is not None

        def timed() -> tuple[float, list[list[str]]]:
            out, times = [], []
            for q in queries:
                t0 = time.perf_counter()
                hits = mem.search(vector=q, k=10, project="few")
                times.append(time.perf_counter() - t0)
                out.append([h.id for h in hits])
            return statistics.median(times), out

        store_fetch = idx.vectors_of
        rounds = []
        for _ in range(3):
            idx.vectors_of = store_fetch
            ours, ours_ids = timed()
            idx.vectors_of = None  # the graph's get_items
            theirs, their_ids = timed()
            rounds.append((ours, theirs))
        idx.vectors_of = store_fetch
        assert ours_ids == their_ids, "the two paths must find the same records"
    o = statistics.median(r[0] for r in rounds)
    t = statistics.median(r[1] for r in rounds)
    print(
        f"filtered search, {c} candidates of {args.n}, k=10, p50: vectors from the store "
        f"{o * 1e3:.2f} ms, from hnswlib get_items {t * 1e3:.2f} ms; {t / o:.1f}x faster"
    )


if __name__ == "__main__":
    main()
