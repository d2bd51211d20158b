"""Reopen cost of a large store: magray.open until the first search returns, against
`hnswlib.Index.load_index` of the same graph alone, each in a fresh process, with the
peak (VmHWM) and settled (VmRSS) memory of each.

    python bench/reopen.py --n 1000000 [--store DIR] [--rounds 3]
    python bench/reopen.py --n 1000000 --store NEW_DIR --writer-memory

--writer-memory builds the store in a fresh process that draws each batch as it adds it,
and reports that writer's peak memory (VmHWM) through ingest and through the graph build
against its settled memory (VmRSS) once the graph is built; the reopen rounds follow.

Without --store (or when DIR holds no store) it first builds one: n clustered 384-d
unit vectors (compare_engine.clustered, seed 7) added in batches of 10,000, then waits
for the graph (at 1M that takes minutes; pass --store to reuse it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_engine import clustered  # noqa: E402

MEMORY = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, magray
mem = magray.open(sys.argv[1], embedder=None)
hits = mem.search(vector=np.load(sys.argv[2])[0], k=10)
seconds = time.perf_counter() - t0
status = dict(l.split(":", 1) for l in open("/proc/self/status") if l.startswith("Vm"))
print(json.dumps({"seconds": seconds, "hits": len(hits),
                  "peak": int(status["VmHWM"].split()[0]) * 1024,
                  "rss": int(status["VmRSS"].split()[0]) * 1024}))
mem.close()
"""

GRAPH = r"""
import json, glob, sys, time
t0 = time.perf_counter()
import hnswlib
g = hnswlib.Index(space="ip", dim=384)
g.load_index(glob.glob(sys.argv[1] + "/index/vectors/snap-*/graph.hnsw")[0])
seconds = time.perf_counter() - t0
status = dict(l.split(":", 1) for l in open("/proc/self/status") if l.startswith("Vm"))
print(json.dumps({"seconds": seconds, "count": g.get_current_count(),
                  "peak": int(status["VmHWM"].split()[0]) * 1024,
                  "rss": int(status["VmRSS"].split()[0]) * 1024}))
"""


WRITER = r"""
import json, sys, time
import numpy as np, magray

def vm(name):
    for line in open("/proc/self/status"):
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024

n, store = int(sys.argv[1]), sys.argv[2]
# The clustered set of compare_engine, drawn one batch at a time, so that the input the
# caller holds (10,000 vectors, 15 MB) does not hide the writer's own memory.
rng = np.random.default_rng(7)
centers = rng.standard_normal((max(n // 100, 8), 384)).astype(np.float32)
centers /= np.linalg.norm(centers, axis=1, keepdims=True)
t0 = time.perf_counter()
with magray.open(store, embedder=None) as mem:
    for i in range(0, n, 10_000):
        c = centers[rng.integers(0, len(centers), size=10_000)]
        x = c + rng.standard_normal((10_000, 384)).astype(np.float32) * 0.08
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        mem.add_many([f"doc {j}" for j in range(i, i + 10_000)], vectors=x)
    t1 = time.perf_counter()
    peak_ingest = vm("VmHWM")
    mem.wait_ready()
    t2 = time.perf_counter()
    peak_build = vm("VmHWM")
    time.sleep(2)
    settled = vm("VmRSS")
print(json.dumps({"add_many_s": t1 - t0, "build_s": t2 - t1, "peak_ingest": peak_ingest,
                  "peak_build": peak_build, "settled": settled}))
"""


def fresh(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def build(store: Path, n: int) -> None:
    import magray

    base, _ = clustered(n, 1, 384, seed=7)
    t0 = time.perf_counter()
    with magray.open(store, embedder=None) as mem:
        for i in range(0, n, 10_000):
            mem.add_many([f"doc {j}" for j in range(i, i + 10_000)], vectors=base[i : i + 10_000])
        t1 = time.perf_counter()
        mem.wait_ready()
        t2 = time.perf_counter()
    print(f"built {n}: add_many {t1 - t0:.1f} s, graph {t2 - t1:.1f} s more", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--store", type=Path, default=Path("/tmp/magray-bench-reopen"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--writer-memory",
        action="store_true",
        help="build a new store at --store in a fresh process and report its peak and"
        " settled memory during ingest and the graph build",
    )
    args = ap.parse_args()
    import numpy as np

    if args.writer_memory:
        if args.store.exists():
            raise SystemExit(f"{args.store} exists; --writer-memory builds a new store there")
        w = fresh(WRITER, str(args.n), str(args.store))
        gib = 2**30
        print(
            f"writer at {args.n}: add_many {w['add_many_s']:.1f} s, graph {w['build_s']:.1f} s"
            f" more; peak during ingest {w['peak_ingest'] / gib:.2f} GiB, peak through the"
            f" build {w['peak_build'] / gib:.2f} GiB, settled {w['settled'] / gib:.2f} GiB;"
            f" peak/settled {w['peak_build'] / w['settled']:.2f}x (bar <= 1.5x)",
            flush=True,
        )

    if not (args.store / "db").is_dir():
        build(args.store, args.n)
    _, queries = clustered(1000, 1, 384, seed=8)
    qfile = args.store.parent / "reopen-query.npy"
    np.save(qfile, queries)
    ours, graph = [], []
    for _ in range(args.rounds):  # alternate, so that both see the same page cache
        ours.append(fresh(MEMORY, str(args.store), str(qfile)))
        graph.append(fresh(GRAPH, str(args.store)))
    o = statistics.median(r["seconds"] for r in ours)
    g = statistics.median(r["seconds"] for r in graph)
    peak = max(r["peak"] for r in ours)
    rss = statistics.median(r["rss"] for r in ours)
    each = ", ".join(f"{r['seconds']:.2f}" for r in ours)
    print(
        f"reopen until the first search: magray {o:.2f} s (rounds {each}), "
        f"load_index alone {g:.2f} s; ratio {o / g:.2f}x (bar <= 2x)"
    )
    print(
        f"reopen memory: peak {peak / 2**30:.2f} GiB, settled {rss / 2**30:.2f} GiB, "
        f"peak/settled {peak / rss:.2f}x (bar <= 1.5x); load_index alone peak "
        f"{max(r['peak'] for r in graph) / 2**30:.2f} GiB"
    )


if __name__ == "__main__":
    main()
