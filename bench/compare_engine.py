"""Engine bars: magray.Memory against chromadb and raw hnswlib, same data, one run.

Data: 100k clustered 384-d unit vectors (a seeded mixture of Gaussians), 200 queries
drawn from the same mixture, k=10, vectors supplied (no embedding). Prints medians and
ratios; run from a checkout with the package and the bench extra installed:

    python bench/compare_engine.py [--n 100000] [--skip-chroma]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROWS: list[str] = []


def report(line: str) -> None:
    ROWS.append(line)
    print(line, flush=True)


def clustered(n: int, nq: int, dim: int, seed: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(n // 100, 8), dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)

    def draw(m: int) -> Any:
        c = centers[rng.integers(0, len(centers), size=m)]
        x = c + rng.standard_normal((m, dim)).astype(np.float32) * 0.08
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(nq)


def p50(times: list[float]) -> float:
    return statistics.median(times)


def measure_each(fn: Any, items: Any) -> list[float]:
    out = []
    for x in items:
        t0 = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t0)
    return out


def recall_at_k(found: list[list[int]], truth: Any) -> float:
    hits = sum(len(set(f) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


REOPEN = r"""
import sys, time, json
t0 = time.perf_counter()
import numpy as np, magray
q = np.load(sys.argv[2])
mem = magray.open(sys.argv[1], embedder=None)
hits = mem.search(vector=q, k=10)
t1 = time.perf_counter()
rss = 0
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        rss = int(line.split()[1]) * 1024
print(json.dumps({"seconds": t1 - t0, "rss": rss, "top": hits[0].id if hits else None}))
mem.close()
"""

LOAD_ONLY = r"""
import sys, time, json
t0 = time.perf_counter()
import numpy as np, hnswlib
for path in sys.argv[2:]:
    g = hnswlib.Index(space="ip", dim=int(sys.argv[1]))
    g.load_index(path)
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0}))
"""


def fresh_process(code: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--skip-chroma", action="store_true")
    args = ap.parse_args()

    import numpy as np

    import magray
    from magray import kernels

    n, dim, k = args.n, 384, 10
    data, queries = clustered(n, args.queries, dim, seed=7)
    texts = [f"memory {i}" for i in range(n)]
    truth, _ = kernels.topk(queries, data, k, metric="dot")
    work = Path(tempfile.mkdtemp(prefix="magray-bench-"))
    print(f"n={n} dim={dim} k={k} queries={len(queries)}; magray {magray.__version__}; dir {work}")
    try:
        cfg = magray.MemoryConfig()
        # --- ingest ---------------------------------------------------------------------
        path1 = work / "one"
        t0 = time.perf_counter()
        with magray.open(path1, embedder=None) as mem:
            for i in range(0, n, 1000):
                mem.add_many(texts[i : i + 1000], vectors=data[i : i + 1000])
            ours_ingest = time.perf_counter() - t0
            mem.wait_ready()
            ours_indexed = time.perf_counter() - t0
            report(
                f"ingest {n} (add_many x1000): magray {ours_ingest:.2f} s "
                f"({n / ours_ingest:,.0f}/s) "
                f"until the last add_many returned (durable, searchable); {ours_indexed:.2f} s "
                f"until the background graph build finished (hnswlib M=16, ef_construction=200)"
            )

            # --- one-layer search -----------------------------------------------------------
            for q in queries[:20]:
                mem.search(vector=q, k=k)
            results = [mem.search(vector=q, k=k) for q in queries]
            ours_t = measure_each(lambda q: mem.search(vector=q, k=k), queries)
            ours_p50 = p50(ours_t)
            idx = mem._index
            graph = idx.graph
            ef = max(cfg.hnsw_ef_search, k)
            graph.set_ef(ef)
            raw_t = measure_each(lambda q: graph.knn_query(q, k=k, num_threads=1), queries)
            raw_labels = [graph.knn_query(q, k=k, num_threads=1)[0][0].tolist() for q in queries]
            # Labels were assigned in insertion order, so label == row of `data`.
            rec = recall_at_k(raw_labels, truth)
            text_rows = [[int(h.record.text.split()[1]) for h in hits] for hits in results]
            rec_ours = recall_at_k(text_rows, truth)
            report(
                f"search 1 layer p50: magray {ours_p50 * 1e3:.3f} ms (recall@10 {rec_ours:.4f}), "
                f"raw hnswlib knn_query ef={ef} {p50(raw_t) * 1e3:.3f} ms (recall@10 {rec:.4f}); "
                f"magray/raw = {ours_p50 / p50(raw_t):.2f}x (bar <= 2.5x)"
            )
            snapshot_files = sorted(str(p) for p in (path1 / "index").rglob("graph.hnsw"))
        # --- reopen in a fresh process -----------------------------------------------------
        qfile = work / "q.npy"
        np.save(qfile, queries[0])
        reopen = [fresh_process(REOPEN, str(path1), str(qfile)) for _ in range(5)]
        snapshot_files = sorted(str(p) for p in (path1 / "index").rglob("graph.hnsw"))
        load = [fresh_process(LOAD_ONLY, str(dim), *snapshot_files) for _ in range(5)]
        r_p50 = p50([r["seconds"] for r in reopen])
        l_p50 = p50([r["seconds"] for r in load])
        report(
            f"reopen {n} to first search (fresh process, incl. imports): magray {r_p50:.3f} s, "
            f"hnswlib load_index alone {l_p50:.3f} s; ratio {r_p50 / l_p50:.2f}x (bar <= 2x)"
        )
        rss = max(r["rss"] for r in reopen)
        report(f"RSS after reopening: {rss / 2**20:.0f} MB (bar <= 512 MB)")

        # --- three layers ----------------------------------------------------------------
        path3 = work / "three"
        with magray.open(path3, embedder=None) as mem3:
            layers = ["interact", "insights", "assets"]
            for i in range(0, n, 1000):
                mem3.add_many(
                    texts[i : i + 1000], vectors=data[i : i + 1000], layer=layers[(i // 1000) % 3]
                )
            mem3.wait_ready()
            for q in queries[:20]:
                mem3.search(vector=q, k=k)
            three_t = measure_each(lambda q: mem3.search(vector=q, k=k), queries)
            results3 = [mem3.search(vector=q, k=k) for q in queries]
            rec3 = recall_at_k(
                [[int(h.record.text.split()[1]) for h in hits] for hits in results3], truth
            )
            report(
                f"search 3 layers ({n} total) p50: {p50(three_t) * 1e3:.3f} ms "
                f"(recall@10 {rec3:.4f}); "
                f"/ one layer = {p50(three_t) / ours_p50:.2f}x (bar <= 1.2x)"
            )
            # One layer of the three, through the filter path of the same index.
            one_t = measure_each(lambda q: mem3.search(vector=q, k=k, layers=["insights"]), queries)
            report(
                f"search 1 layer of the 3 (filter path) p50: {p50(one_t) * 1e3:.3f} ms; "
                f"raw hnswlib, one graph of {n}: {p50(raw_t) * 1e3:.3f} ms"
            )

        # --- chromadb --------------------------------------------------------------------
        if not args.skip_chroma:
            import chromadb
            from chromadb.config import Settings

            client = chromadb.PersistentClient(
                path=str(work / "chroma"), settings=Settings(anonymized_telemetry=False)
            )
            col = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
            t0 = time.perf_counter()
            for i in range(0, n, 1000):
                col.add(
                    ids=[str(j) for j in range(i, min(i + 1000, n))],
                    embeddings=data[i : i + 1000],
                    documents=texts[i : i + 1000],
                )
            chroma_ingest = time.perf_counter() - t0
            report(
                f"ingest {n}: chromadb {chroma_ingest:.2f} s ({n / chroma_ingest:,.0f}/s); "
                f"magray/chroma throughput = {chroma_ingest / ours_ingest:.2f}x to acknowledged "
                f"(bar >= 2x), {chroma_ingest / ours_indexed:.2f}x to graph built"
            )
            for q in queries[:20]:
                col.query(query_embeddings=[q], n_results=k)
            chroma_t = measure_each(lambda q: col.query(query_embeddings=[q], n_results=k), queries)
            chroma_rows = [
                [int(x) for x in col.query(query_embeddings=[q], n_results=k)["ids"][0]]
                for q in queries
            ]
            report(
                f"search 1 layer p50: chromadb {p50(chroma_t) * 1e3:.3f} ms "
                f"(recall@10 {recall_at_k(chroma_rows, truth):.4f}); "
                f"chroma/magray = {p50(chroma_t) / ours_p50:.2f}x (bar >= 3x)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
