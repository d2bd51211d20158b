"""Engine bars: magray.Memory against chromadb and raw hnswlib, same data, one run.

Two data sets of 384-d unit vectors, 200 queries drawn from the same mixture, k=10,
vectors supplied (no embedding):

- ``clustered``: 100k from n/100 Gaussian centres on the sphere, sigma 0.08 (seed 7);
- ``spread``: 100k from 200 standard-normal centres with noise sigma 0.6 per
  coordinate (seed 11), then normalised: far less clustered.

chromadb runs in its own interpreter (``--chroma-python``, a venv with chromadb 1.5.9),
on the same data, in the same run. Prints medians and ratios; run from a checkout with
the package and the bench extra installed:

    python bench/compare_engine.py [--n 100000] [--chroma-python PATH | --skip-chroma]
    python bench/compare_engine.py --only promote
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


def spread(n: int, nq: int, dim: int, seed: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((200, dim)).astype(np.float32)

    def draw(m: int) -> Any:
        c = centers[rng.integers(0, len(centers), size=m)]
        x = c + rng.standard_normal((m, dim)).astype(np.float32) * 0.6
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(nq)


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


CHROMA = r"""
import sys, time, json, statistics, tempfile
import numpy as np, chromadb
from chromadb.config import Settings
data, queries = np.load(sys.argv[1]), np.load(sys.argv[2])
k = 10
settings = Settings(anonymized_telemetry=False)
client = chromadb.PersistentClient(path=tempfile.mkdtemp(), settings=settings)
col = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
t0 = time.perf_counter()
for i in range(0, len(data), 1000):
    js = range(i, min(i + 1000, len(data)))
    col.add(ids=[str(j) for j in js], embeddings=data[i : i + 1000],
            documents=[f"memory {j}" for j in js])
ingest = time.perf_counter() - t0
for q in queries[:20]:
    col.query(query_embeddings=[q], n_results=k)
times, rows = [], []
for q in queries:
    t = time.perf_counter()
    r = col.query(query_embeddings=[q], n_results=k)
    times.append(time.perf_counter() - t)
    rows.append([int(x) for x in r["ids"][0]])
print(json.dumps({"ingest": ingest, "p50": statistics.median(times), "rows": rows}))
"""


def fresh_process(code: str, *args: str, python: str = sys.executable) -> dict[str, Any]:
    out = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_chroma(python: str, work: Path, data: Any, queries: Any) -> dict[str, Any]:
    import numpy as np

    np.save(work / "chroma-data.npy", data)
    np.save(work / "chroma-queries.npy", queries)
    return fresh_process(
        CHROMA, str(work / "chroma-data.npy"), str(work / "chroma-queries.npy"), python=python
    )


def search_during_build(mem: Any, queries: Any, truth: Any, k: int, limit_s: float) -> None:
    """Query in a loop from the moment add_many returned until the graph is built."""
    import numpy as np

    idx = mem._index
    times: list[float] = []
    found: list[list[int]] = []
    expected = []
    start = time.perf_counter()
    i = 0
    while idx.state != "graph" and time.perf_counter() - start < limit_s:
        q = queries[i % len(queries)]
        t0 = time.perf_counter()
        hits = mem.search(vector=q, k=k)
        times.append(time.perf_counter() - t0)
        found.append([int(h.record.text.split()[1]) for h in hits])
        expected.append(truth[i % len(queries)])
        i += 1
    window = time.perf_counter() - start
    if not times:
        report("search during the build: the graph was built before the first search")
        return
    quarters = [times[j * len(times) // 4 : (j + 1) * len(times) // 4] for j in range(4)]
    report(
        f"search during the background build: {len(times)} searches over {window:.1f} s, "
        f"p50 {p50(times) * 1e3:.3f} ms, recall@10 {recall_at_k(found, np.array(expected)):.4f}; "
        "p50 by quarter of the window: "
        + ", ".join(f"{p50(qt) * 1e3:.3f}" for qt in quarters if qt)
        + " ms"
    )
    RESULTS["build_p50"] = p50(times)


RESULTS: dict[str, float] = {}


def _peer_moves(path: Path, moved: int, record_size: int) -> tuple[float, int, int]:
    """The store writes of moving `moved` records alone, per record: the record; its
    layer-time key (delete, put a 32-byte summary), label key (delete, put) and
    promotable key (delete) re-keyed; a lifecycle-log entry; an oplog entry; its text
    holder moved (delete, put). Synced batches of 1000, built in Python as magray builds
    its own. Returns (seconds, puts and deletes, bytes)."""
    import numpy as np
    from rocksdict import Options, Rdict, WriteBatch, WriteOptions

    db = Rdict(str(path), Options(raw_mode=True))
    opts = WriteOptions()
    opts.sync = True
    rng = np.random.default_rng(0)
    value = rng.bytes(record_size)
    ops = size = 0
    t0 = time.perf_counter()
    for i in range(0, moved, 1000):
        b = WriteBatch(raw_mode=True)
        for j in range(i, min(i + 1000, moved)):
            rid = j.to_bytes(16, "big")
            b.put(rid, value)
            b.delete(b"\x00" + rid[:8] + rid)
            b.put(b"\x01" + rid[:8] + rid, rng.bytes(32))
            b.delete(b"\x00" + rid[8:])
            b.put(b"\x01" + rid[8:], rid)
            b.delete(b"\x00" + rid)
            b.put(rid[:8] + rid, rng.bytes(28))
            b.put(rid[:12], rng.bytes(32))
            b.delete(b"\x00" + rid[::-1])
            b.put(b"\x01" + rid[::-1], rid)
        b.put(b"seq", b"12345678")
        b.put(b"next_label", b"12345678")
        ops += b.len()
        size += b.size_in_bytes()
        db.write(b, opts)
    took = time.perf_counter() - t0
    db.close()
    return took, ops, size


def promote_10k(work: Path, data: Any, texts: list[str], rounds: int = 3) -> None:
    """Promote 10k records (of 100k) from interact to insights, on `rounds` copies of
    one store, each round followed by the peer: the same store writes alone
    (_peer_moves). Prints the medians and their ratio."""
    import magray
    from magray.memory.index import VectorIndex
    from magray.memory.validate import raw_id

    n = len(data)
    built = work / "promote"
    with magray.open(built, embedder=None) as mem:
        for i in range(0, n, 1000):
            important = 0.85 if i < 10_000 else 0.1  # promote_importance 0.8: to insights
            mem.add_many(texts[i : i + 1000], vectors=data[i : i + 1000], importance=important)
        mem.wait_ready()
    ours: list[float] = []
    peers: list[float] = []
    for r in range(rounds):
        path = work / f"promote-{r}"
        shutil.copytree(built, path)
        with magray.open(path, embedder=None) as mem:
            mem.wait_ready()
            mem.flush()
            idx = mem._index
            graph_before = idx.graph
            index_s = [0.0]
            original = VectorIndex.set_layer

            def timed(self: Any, labels: Any, layer: int) -> None:
                t = time.perf_counter()
                original(self, labels, layer)
                index_s[0] += time.perf_counter() - t

            written = {"ops": 0, "bytes": 0}
            store_write = mem.store.write

            def counted(batch: Any, *, durable: bool = True) -> None:
                written["ops"] += batch.len()
                written["bytes"] += batch.size_in_bytes()
                store_write(batch, durable=durable)

            VectorIndex.set_layer = timed  # type: ignore[method-assign]
            mem.store.write = counted  # type: ignore[method-assign]
            try:
                t0 = time.perf_counter()
                report_ = mem.promote()
                took = time.perf_counter() - t0
            finally:
                VectorIndex.set_layer = original  # type: ignore[method-assign]
                mem.store.write = store_write  # type: ignore[method-assign]
            moved = len(report_.moved)
            targets = sorted({m.to_layer.value for m in report_.moved})
            assert idx.graph is graph_before and idx.state == "graph"
            record_size = len(mem.store.get("records", raw_id(report_.moved[0].id)) or b"")
        shutil.rmtree(path, ignore_errors=True)
        peer, peer_ops, peer_bytes = _peer_moves(work / f"peer-{r}", moved, record_size)
        shutil.rmtree(work / f"peer-{r}", ignore_errors=True)
        ours.append(took)
        peers.append(peer)
        print(
            f"  round {r + 1}: promote {moved} interact -> {'/'.join(targets)} "
            f"{took * 1e3:.0f} ms (index columns {index_s[0] * 1e3:.1f} ms; "
            f"{written['ops']} puts and deletes, {written['bytes'] / 1e6:.2f} MB); "
            f"the same writes alone ({peer_ops}, {peer_bytes / 1e6:.2f} MB) {peer * 1e3:.0f} ms",
            flush=True,
        )
    shutil.rmtree(built, ignore_errors=True)
    report(
        f"promote 10k of {n} records, median of {rounds} rounds: {p50(ours) * 1e3:.0f} ms, "
        f"no graph rebuild, no vector read; the same store writes alone "
        f"{p50(peers) * 1e3:.0f} ms; ratio {p50(ours) / p50(peers):.2f}x"
    )


def steady_search(mem: Any, queries: Any, truth: Any, k: int, label: str) -> float:
    """p50 of magray's search on a built graph against raw hnswlib at the same ef, once
    the background work of the ingest is done (graph build, index snapshot, text index)."""
    cfg = mem.config
    mem.flush()
    for q in queries[:20]:
        mem.search(vector=q, k=k)
    results = [mem.search(vector=q, k=k) for q in queries]
    graph = mem._index.graph
    ef = max(cfg.hnsw_ef_search, k)
    graph.set_ef(ef)
    # Alternating rounds, so that a noisy stretch of the machine falls on both.
    ours_t: list[float] = []
    raw_t: list[float] = []
    for _ in range(3):
        ours_t += measure_each(lambda q: mem.search(vector=q, k=k), queries)
        raw_t += measure_each(lambda q: graph.knn_query(q, k=k, num_threads=1), queries)
    # Labels were assigned in insertion order, so label == row of the data.
    raw_labels = [graph.knn_query(q, k=k, num_threads=1)[0][0].tolist() for q in queries]
    rec = recall_at_k(raw_labels, truth)
    rows = [[int(h.record.text.split()[1]) for h in hits] for hits in results]
    rec_ours = recall_at_k(rows, truth)
    ours_p50 = p50(ours_t)
    report(
        f"[{label}] steady-state search p50: magray {ours_p50 * 1e3:.3f} ms "
        f"(recall@10 {rec_ours:.4f}), raw hnswlib knn_query ef={ef} "
        f"{p50(raw_t) * 1e3:.3f} ms (recall@10 {rec:.4f}); magray/raw = "
        f"{ours_p50 / p50(raw_t):.2f}x (bar <= 2x, recall >= 0.99)"
    )
    return ours_p50


def chroma_rows(label: str, chroma: dict[str, Any], truth: Any, ours_p50: float) -> None:
    report(
        f"[{label}] chromadb steady-state search p50 {chroma['p50'] * 1e3:.3f} ms "
        f"(recall@10 {recall_at_k(chroma['rows'], truth):.4f}); chroma/magray = "
        f"{chroma['p50'] / ours_p50:.2f}x"
    )


def ingest(path: Path, data: Any, texts: list[str], label: str) -> tuple[Any, float]:
    import magray

    t0 = time.perf_counter()
    mem = magray.open(path, embedder=None)
    for i in range(0, len(data), 1000):
        mem.add_many(texts[i : i + 1000], vectors=data[i : i + 1000])
    took = time.perf_counter() - t0
    report(
        f"[{label}] ingest {len(data)} (add_many x1000): magray {took:.2f} s "
        f"({len(data) / took:,.0f}/s) until the last add_many returned (durable, searchable)"
    )
    return mem, took


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--chroma-python", default=None, help="python of a venv with chromadb")
    ap.add_argument("--skip-chroma", action="store_true")
    ap.add_argument(
        "--only",
        choices=["promote", "steady"],
        help="measure one bar alone (its peer runs too); steady: both sets, built graph",
    )
    args = ap.parse_args()

    import numpy as np

    import magray
    from magray import kernels

    n, dim, k = args.n, 384, 10
    chroma_python = None if args.skip_chroma else (args.chroma_python or sys.executable)
    data, queries = clustered(n, args.queries, dim, seed=7)
    texts = [f"memory {i}" for i in range(n)]
    truth, _ = kernels.topk(queries, data, k, metric="dot")
    work = Path(tempfile.mkdtemp(prefix="magray-bench-"))
    print(f"n={n} dim={dim} k={k} queries={len(queries)}; magray {magray.__version__}; dir {work}")
    if args.only == "promote":
        try:
            promote_10k(work, data, texts)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.only == "steady":
        try:
            for label, (d, qs) in (
                ("clustered", (data, queries)),
                ("spread", spread(n, args.queries, dim, seed=11)),
            ):
                t, _ = kernels.topk(qs, d, k, metric="dot")
                m, _ = ingest(work / label, d, texts, label)
                m.wait_ready()
                steady_search(m, qs, t, k, label)
                m.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    try:
        # --- ingest, then search while the graph builds -----------------------------------
        path1 = work / "one"
        mem, ours_ingest = ingest(path1, data, texts, "clustered")
        t0 = time.perf_counter()
        search_during_build(mem, queries, truth, k, limit_s=600)
        mem.wait_ready()
        report(f"[clustered] graph built {time.perf_counter() - t0:.2f} s after ingest returned")
        ours_p50 = steady_search(mem, queries, truth, k, "clustered")

        # --- three layers, measured in alternation with the one-layer store ----------------
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
            one_t: list[float] = []
            three_t: list[float] = []
            for _ in range(3):
                one_t += measure_each(lambda q: mem.search(vector=q, k=k), queries)
                three_t += measure_each(lambda q: mem3.search(vector=q, k=k), queries)
            results3 = [mem3.search(vector=q, k=k) for q in queries]
            rec3 = recall_at_k(
                [[int(h.record.text.split()[1]) for h in hits] for hits in results3], truth
            )
            report(
                f"search 3 layers ({n} total) p50: {p50(three_t) * 1e3:.3f} ms "
                f"(recall@10 {rec3:.4f}); one layer, same rounds: {p50(one_t) * 1e3:.3f} ms; "
                f"ratio {p50(three_t) / p50(one_t):.2f}x (bar <= 1.2x)"
            )
            # One layer of the three, through the filter path of the same index.
            f_t = measure_each(lambda q: mem3.search(vector=q, k=k, layers=["insights"]), queries)
            report(f"search 1 layer of the 3 (filter path) p50: {p50(f_t) * 1e3:.3f} ms")
        shutil.rmtree(path3, ignore_errors=True)
        mem.close()
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

        # --- promotion -----------------------------------------------------------------
        promote_10k(work, data, texts)
        shutil.rmtree(work / "promote", ignore_errors=True)

        # --- chromadb on the same data -------------------------------------------------------
        if chroma_python:
            chroma = run_chroma(chroma_python, work, data, queries)
            report(
                f"[clustered] ingest {n}: chromadb {chroma['ingest']:.2f} s; magray/chroma "
                f"throughput = {chroma['ingest'] / ours_ingest:.2f}x to acknowledged (bar >= 2x)"
            )
            chroma_rows("clustered", chroma, truth, ours_p50)
            if "build_p50" in RESULTS:
                report(
                    f"[clustered] search during the build p50 {RESULTS['build_p50'] * 1e3:.3f} ms"
                    f" / chromadb steady-state p50 {chroma['p50'] * 1e3:.3f} ms = "
                    f"{RESULTS['build_p50'] / chroma['p50']:.2f}x (bar <= 1x)"
                )

        # --- the second, less clustered set --------------------------------------------------
        data2, queries2 = spread(n, args.queries, dim, seed=11)
        truth2, _ = kernels.topk(queries2, data2, k, metric="dot")
        mem2, _ = ingest(work / "spread", data2, texts, "spread")
        search_during_build(mem2, queries2, truth2, k, limit_s=600)
        mem2.wait_ready()
        p2 = steady_search(mem2, queries2, truth2, k, "spread")
        mem2.close()
        if chroma_python:
            chroma2 = run_chroma(chroma_python, work, data2, queries2)
            chroma_rows("spread", chroma2, truth2, p2)
            if "build_p50" in RESULTS:
                report(
                    f"[spread] search during the build p50 {RESULTS['build_p50'] * 1e3:.3f} ms"
                    f" / chromadb steady-state p50 {chroma2['p50'] * 1e3:.3f} ms = "
                    f"{RESULTS['build_p50'] / chroma2['p50']:.2f}x (bar <= 1x)"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nsummary:")
    for line in ROWS:
        print("  " + line)


if __name__ == "__main__":
    main()
