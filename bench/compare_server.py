"""Server bars: `magray serve` against chroma's own server (`chroma run`), same data, one run.

Data: 50k clustered 384-d unit vectors (compare_engine.clustered, seed 42) and 1200
queries from the same mixture. Every client is a separate process on loopback.

1. Ingest: one client adds the 50k in batches of 1000 (magray: add_many with vectors;
   chroma: HttpClient collection.add), timed until the last batch is acknowledged.
2. Query load: 4 client processes, each 300 vector queries with k=10, started together;
   throughput = all queries / wall time, latency p50/p99 over every query.
3. Dynamic batching: 8 client processes sending text queries (distinct texts, so the
   embedding cache never answers) to a server with the real ONNX model, with batching
   (the default) and with one model call per request (--batch-max 1).
4. SIGKILL of the server during a 4-client write load, 5 trials: after a restart every
   acknowledged record is there and no batch is half there.
5. 100 namespaces written in turn under --max-open 16: no lost write; server RSS.

    python bench/compare_server.py --chroma /path/to/venv/bin/chroma \\
        --model ../shared/models/all-MiniLM-L6-v2

The chroma server and its client run from their own virtual environment (chromadb
1.5.9 brings its own onnxruntime); --chroma names its `chroma` executable, and the
python beside it runs the chroma clients. Thread counts are left to each server.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_engine import clustered  # noqa: E402

ROWS: list[str] = []
PY = sys.executable
MAGRAY = str(Path(PY).parent / "magray")


def report(line: str) -> None:
    ROWS.append(line)
    print(line, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_magray(
    root: Path, *args: str, embedder: str = "hash"
) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, MAGRAY_EMBEDDER=embedder)
    proc = subprocess.Popen(
        [MAGRAY, "serve", "--root", str(root), "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if " on grpc" not in line:
        proc.kill()
        raise SystemExit(f"magray serve did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1].strip()


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# -- client processes -----------------------------------------------------------------------

# Each query client loads its queries, warms up, says "ready", waits for "go" on stdin,
# then runs its queries one after another and prints {"start", "end", "lat"} as JSON.
MAGRAY_QUERY = r"""
import json, sys, time, numpy as np, magray
url, ns, qfile, lo, hi = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
queries = np.load(qfile)[lo:hi]
m = magray.connect(url, namespace=ns)
for q in queries[:5]:
    m.search(vector=q, k=10)
print("ready", flush=True); sys.stdin.readline()
lat = []; start = time.time()
for q in queries:
    t0 = time.perf_counter(); hits = m.search(vector=q, k=10); lat.append(time.perf_counter() - t0)
    assert len(hits) == 10
print(json.dumps({"start": start, "end": time.time(), "lat": lat}), flush=True)
"""

MAGRAY_TEXT = r"""
import json, sys, time, magray
url, ns, client, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
m = magray.connect(url, namespace=ns)
m.search(f"warm up {client}", k=5)
print("ready", flush=True); sys.stdin.readline()
lat = []; start = time.time()
for i in range(n):
    t0 = time.perf_counter()
    m.search(f"what did client {client} note about topic {i} and item {i * 7919 % 1000}?", k=5)
    lat.append(time.perf_counter() - t0)
print(json.dumps({"start": start, "end": time.time(), "lat": lat}), flush=True)
"""

MAGRAY_INGEST = r"""
import json, sys, time, numpy as np, magray
url, ns, vfile = sys.argv[1], sys.argv[2], sys.argv[3]
vecs = np.load(vfile)
m = magray.connect(url, namespace=ns, timeout=600)
t0 = time.perf_counter()
for i in range(0, len(vecs), 1000):
    m.add_many([f"doc {j}" for j in range(i, i + len(vecs[i:i + 1000]))], vectors=vecs[i:i + 1000])
print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
"""

CHROMA_INGEST = r"""
import json, sys, time, numpy as np, chromadb
from chromadb.config import Settings
port, vfile = int(sys.argv[1]), sys.argv[2]
vecs = np.load(vfile)
c = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
col = c.create_collection("bench", metadata={"hnsw:space": "cosine"})
t0 = time.perf_counter()
for i in range(0, len(vecs), 1000):
    part = vecs[i:i + 1000]
    col.add(ids=[str(j) for j in range(i, i + len(part))], embeddings=part,
            documents=[f"doc {j}" for j in range(i, i + len(part))])
print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
"""

CHROMA_QUERY = r"""
import json, sys, time, numpy as np, chromadb
from chromadb.config import Settings
port, qfile, lo, hi = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
queries = np.load(qfile)[lo:hi]
c = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
col = c.get_collection("bench")
for q in queries[:5]:
    col.query(query_embeddings=[q], n_results=10)
print("ready", flush=True); sys.stdin.readline()
lat = []; start = time.time()
for q in queries:
    t0 = time.perf_counter(); r = col.query(query_embeddings=[q], n_results=10)
    lat.append(time.perf_counter() - t0)
    assert len(r["ids"][0]) == 10
print(json.dumps({"start": start, "end": time.time(), "lat": lat}), flush=True)
"""

WRITER = r"""
import json, os, sys, numpy as np, magray
url, client, ack_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
m = magray.connect(url, namespace="kill", timeout=10)
rng = np.random.default_rng(client)
with open(ack_path, "a") as ack:
    for b in range(100000):
        texts = [f"c{client}-b{b}-{i}" for i in range(20)]
        try:
            ids = m.add_many(texts, vectors=rng.standard_normal((20, 384)).astype(np.float32))
        except magray.MagrayError:
            break
        ack.write(json.dumps([f"c{client}-b{b}", ids]) + "\n"); ack.flush(); os.fsync(ack.fileno())
"""


def run_one(py: str, code: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([py, "-c", code, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"client failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def load(py: str, code: str, arg_sets: list[list[str]]) -> dict[str, float]:
    """Start one client per arg set, release them together, and aggregate."""
    procs = [
        subprocess.Popen(
            [py, "-c", code, *a], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for a in arg_sets
    ]
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"client did not start: {line!r}")
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        if p.returncode != 0:
            raise SystemExit("client failed")
        results.append(json.loads(out.strip().splitlines()[-1]))
    lat = sorted(x for r in results for x in r["lat"])
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "qps": len(lat) / wall,
        "p50": statistics.median(lat),
        "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "n": len(lat),
    }


def wait_for_graph(url: str, ns: str, timeout: float = 600) -> float:
    import magray

    t0 = time.perf_counter()
    with magray.connect(url, namespace=ns) as m:
        while time.perf_counter() - t0 < timeout:
            if m.stats()["index"]["state"] == "graph":
                return time.perf_counter() - t0
            time.sleep(0.25)
    raise SystemExit("the graph was not built in time")


# -- the bars -------------------------------------------------------------------------------


def median_of(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def bars_against_chroma(work: Path, chroma: str, n: int, rounds: int) -> None:
    """Both servers hold the same data and run side by side; the query load alternates
    between them for `rounds` rounds each, and each figure is the median over rounds."""
    import numpy as np

    base, queries = clustered(n, 1200, 384, seed=42)
    np.save(work / "base.npy", base)
    np.save(work / "queries.npy", queries)
    quarters = [[str(i * 300), str((i + 1) * 300)] for i in range(4)]

    proc, url = start_magray(work / "magray", "--max-open", "4")
    port = free_port()
    chroma_py = str(Path(chroma).parent / "python")
    server = subprocess.Popen(
        [chroma, "run", "--path", str(work / "chroma"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, ANONYMIZED_TELEMETRY="False"),
    )
    try:
        ingest = run_one(PY, MAGRAY_INGEST, url, "bench", str(work / "base.npy"))["seconds"]
        graph = wait_for_graph(url, "bench")
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("chroma run did not start") from None
                time.sleep(0.25)
        c_ingest = run_one(chroma_py, CHROMA_INGEST, str(port), str(work / "base.npy"))["seconds"]
        ours: list[dict[str, float]] = []
        theirs: list[dict[str, float]] = []
        for _ in range(rounds):
            ours.append(
                load(
                    PY,
                    MAGRAY_QUERY,
                    [[url, "bench", str(work / "queries.npy"), *q] for q in quarters],
                )
            )
            theirs.append(
                load(
                    chroma_py,
                    CHROMA_QUERY,
                    [[str(port), str(work / "queries.npy"), *q] for q in quarters],
                )
            )
        rss = rss_of(proc.pid)
    finally:
        stop(proc)
        server.terminate()
        server.wait(60)
    for name, runs in (("magray", ours), ("chroma run", theirs)):
        each = ", ".join(
            f"{r['qps']:.0f} q/s p50 {r['p50'] * 1e3:.2f} p99 {r['p99'] * 1e3:.2f}" for r in runs
        )
        report(f"{name} rounds: {each}")
    q_ours, q_theirs = median_of(ours, "qps"), median_of(theirs, "qps")
    p99_ours, p50_theirs = median_of(ours, "p99"), median_of(theirs, "p50")
    report(
        f"magray: ingest {n} {ingest:.2f} s ({n / ingest:,.0f}/s; graph ready {graph:.1f} s "
        f"later); 4 clients x 300 queries, median of {rounds} rounds: {q_ours:.0f} q/s, "
        f"p50 {median_of(ours, 'p50') * 1e3:.2f} ms, p99 {p99_ours * 1e3:.2f} ms; "
        f"server RSS {rss / 2**20:.0f} MiB"
    )
    report(
        f"chroma run: ingest {n} {c_ingest:.2f} s ({n / c_ingest:,.0f}/s); same load: "
        f"{q_theirs:.0f} q/s, p50 {p50_theirs * 1e3:.2f} ms, "
        f"p99 {median_of(theirs, 'p99') * 1e3:.2f} ms"
    )
    report(f"query throughput magray/chroma = {q_ours / q_theirs:.2f}x (bar >= 2x)")
    report(
        f"magray p99 {p99_ours * 1e3:.2f} ms vs chroma p50 {p50_theirs * 1e3:.2f} ms: "
        f"{'holds' if p99_ours <= p50_theirs else 'MISSED'} (bar: magray p99 <= chroma p50)"
    )
    report(f"ingest over the wire magray/chroma = {c_ingest / ingest:.2f}x (bar >= 2x)")


def bar_batching(work: Path, model: str, clients: int, per_client: int, rounds: int) -> None:
    """Two servers with the model, batched (the default) and one model call per request
    (--batch-max 1), side by side; the text-query load alternates between them, with
    fresh texts each round so that no cache answers; medians over rounds."""
    import magray

    model_ceiling(model, clients * per_client // 2)
    labels = {"batched": [], "one call per request": ["--batch-max", "1"]}
    servers = {}
    results: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    try:
        for i, (label, extra) in enumerate(labels.items()):
            servers[label] = start_magray(work / f"text-{i}", *extra, embedder=model)
            with magray.connect(servers[label][1], namespace="text") as m:
                m.add_many([f"note {j} about topic {j % 17}" for j in range(200)])
        for r in range(rounds):
            for label, (_proc, url) in servers.items():
                args = [[url, "text", str(r * 1000 + c), str(per_client)] for c in range(clients)]
                results[label].append(load(PY, MAGRAY_TEXT, args))
    finally:
        for proc, _url in servers.values():
            stop(proc)
    for label, runs in results.items():
        each = ", ".join(f"{x['qps']:.0f}" for x in runs)
        report(
            f"text queries, {clients} clients, {label}, median of {rounds} rounds: "
            f"{median_of(runs, 'qps'):.1f} q/s, p50 {median_of(runs, 'p50') * 1e3:.1f} ms, "
            f"p99 {median_of(runs, 'p99') * 1e3:.1f} ms "
            f"(rounds: {each} q/s)"
        )
    ratio = median_of(results["batched"], "qps") / median_of(results["one call per request"], "qps")
    report(f"dynamic batching throughput ratio = {ratio:.2f}x (bar >= 1.5x)")


def model_ceiling(model: str, n: int) -> None:
    """What batching can give at most here: the model alone, in this process, embedding
    the same kind of query texts one per call and 16 per call (the most a batch of 8
    clients' requests reaches under load is 8)."""
    from magray.embed.onnx import OnnxEmbedder

    emb = OnnxEmbedder(model)
    texts = [f"what did client {c} note about topic {i} and item {i * 7919 % 1000}?"
             for c in range(8) for i in range(n)][:n]  # fmt: skip
    emb.embed_query(texts[:16])
    rates = {}
    for size in (1, 8, 16):
        t0 = time.perf_counter()
        for i in range(0, len(texts), size):
            emb.embed_query(texts[i : i + size])
        rates[size] = len(texts) / (time.perf_counter() - t0)
    report(
        f"the model alone, {n} query texts: {rates[1]:.0f} texts/s one per call, "
        f"{rates[8]:.0f} in batches of 8 ({rates[8] / rates[1]:.2f}x), {rates[16]:.0f} in "
        f"batches of 16 ({rates[16] / rates[1]:.2f}x): the ceiling of the batching ratio"
    )


def bar_sigkill(work: Path, trials: int) -> None:
    root = work / "kill"
    rnd = random.Random(7)
    acks = [work / f"ack{c}" for c in range(4)]
    for _ in range(trials):
        proc, url = start_magray(root)
        clients = [
            subprocess.Popen(
                [PY, "-c", WRITER, url, str(c), str(acks[c])], stderr=subprocess.DEVNULL
            )
            for c in range(4)
        ]
        time.sleep(rnd.uniform(1.0, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for c in clients:
            c.wait(60)
    import magray

    proc, url = start_magray(root)
    try:
        acked = [json.loads(x) for a in acks for x in a.read_text().splitlines()]
        with magray.connect(url, namespace="kill") as m:
            missing = sum(1 for _, ids in acked for i in ids if m.get(i) is None)
            texts = [r.text for r in m.recent(limit=10_000_000)]
    finally:
        stop(proc)
    sizes: dict[str, int] = {}
    for t in texts:
        sizes[t.rsplit("-", 1)[0]] = sizes.get(t.rsplit("-", 1)[0], 0) + 1
    half = sum(1 for v in sizes.values() if v != 20)
    report(
        f"SIGKILL during a 4-client write load, {trials} trials: {len(acked)} acknowledged "
        f"batches ({len(acked) * 20} records), {missing} missing, {half} half-present batches "
        f"(bar: 0 and 0)"
    )


def bar_namespaces(work: Path, count: int, bound: int) -> None:
    import numpy as np

    import magray

    proc, url = start_magray(work / "many", "--max-open", str(bound))
    rng = np.random.default_rng(3)
    written: dict[str, list[str]] = {}
    peak = 0
    try:
        for i in range(count):
            ns = f"ns-{i:03d}"
            with magray.connect(url, namespace=ns) as m:
                written[ns] = m.add_many(
                    [f"{ns} {j}" for j in range(50)],
                    vectors=rng.standard_normal((50, 384)).astype(np.float32),
                )
            peak = max(peak, rss_of(proc.pid))
        lost = 0
        for ns, ids in written.items():
            with magray.connect(url, namespace=ns) as m:
                lost += sum(1 for x in ids if m.get(x) is None)
            peak = max(peak, rss_of(proc.pid))
    finally:
        stop(proc)
    report(
        f"{count} namespaces in turn under --max-open {bound}: {lost} lost writes, server RSS "
        f"peak {peak / 2**20:.0f} MiB (bar: 0 lost, < 1024 MiB)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--chroma", help="the `chroma` executable of a chromadb 1.5.9 venv")
    ap.add_argument("--model", help="an ONNX model directory for the text-query bar")
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--text-clients", type=int, default=8)
    ap.add_argument("--text-queries", type=int, default=80, help="per client and round")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="alternating query-load rounds")
    ap.add_argument(
        "--bars",
        default="chroma,batching,sigkill,namespaces",
        help="which bars to run (comma-separated)",
    )
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="magray-bench-server-"))
    try:
        bars = set(args.bars.split(","))
        if "chroma" in bars:
            if args.chroma:
                bars_against_chroma(work, args.chroma, args.n, args.rounds)
            else:
                report("chroma bars skipped (pass --chroma PATH)")
        if "batching" in bars:
            if args.model:
                bar_batching(work, args.model, args.text_clients, args.text_queries, args.rounds)
            else:
                report("dynamic batching bar skipped (pass --model DIR)")
        if "sigkill" in bars:
            bar_sigkill(work, args.trials)
        if "namespaces" in bars:
            bar_namespaces(work, 100, 16)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(ROWS, indent=1))


if __name__ == "__main__":
    main()
