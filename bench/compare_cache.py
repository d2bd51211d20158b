"""The Redis cache tier (L3): a second host, the per-text cost of a hit, and Redis
killed mid-run; against a standalone server and a 3-master Cluster started here.

    python -m bench.compare_cache --model PATH/TO/all-MiniLM-L6-v2

Run from the checkout's root (it starts Redis with the tests' own ``tests.redis_servers``).
Needs redis-server and redis-cli on PATH. Paragraphs are the standard library's
docstrings (real text, as bench/retrieval_data.py reads them): 512 of 200 characters or
more for the second host, 5000 of 40 or more for the kill run.

- second host: process A embeds 512 paragraphs into its store (and L3); process B, a
  separate process with a new store (cold L1 and L2), adds the same 512. Peer: the same
  add in a process with no L3 (cold embedding with the model). Medians of 3.
- L3 hit cost: ``RedisTier.get_many`` of 1000 keys that are all present, per text.
- Redis killed: ``add_many`` of 5000 paragraphs (all already in L3) in batches of 250
  while Redis is SIGKILLed after batch 4 and restarted (AOF on, so its data comes back)
  after batch 10; throughput per batch, and every record once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported in main: asv imports every bench module, from bench/
    from tests.redis_servers import RedisServer

CHILD = r"""
import json, sys, time
import magray
texts = json.load(open(sys.argv[3]))
config = {"cache_redis_url": sys.argv[2]} if sys.argv[2] else {}
t0 = time.perf_counter()
with magray.open(sys.argv[1], embedder=sys.argv[4], config=config) as mem:
    t1 = time.perf_counter()
    mem.add_many(texts)
    t2 = time.perf_counter()
    st = mem.stats().get("cache_redis") or {}
print(json.dumps({"add": t2 - t1, "hits": st.get("hits", 0)}))
"""


def paragraphs(n: int, min_chars: int) -> list[str]:
    """Up to n distinct docstrings of min_chars characters or more, whitespace
    collapsed."""
    from bench.retrieval_data import stdlib_docstrings

    out: list[str] = []
    seen: set[str] = set()
    for _, doc in stdlib_docstrings():
        text = " ".join(doc.split())
        if len(text) >= min_chars and text not in seen:
            seen.add(text)
            out.append(text)
            if len(out) >= n:
                break
    return out


def flush(url: str) -> None:
    import redis
    from redis.cluster import RedisCluster

    if "+cluster" in url:
        RedisCluster.from_url(url.replace("redis+cluster", "redis")).flushall()
    else:
        redis.Redis.from_url(url).flushall()


def second_host(url: str, texts: list[str], model: str, work: Path) -> None:
    work = Path(tempfile.mkdtemp(dir=work))  # new stores for every call
    data = work / "texts.json"
    data.write_text(json.dumps(texts))

    def child(store: Path, l3: str) -> dict[str, float]:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(store), l3, str(data), model],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    cold, warm = [], []
    for r in range(3):
        flush(url)
        a = child(work / f"a{r}", url)  # process A: cold, fills L3
        b = child(work / f"b{r}", url)  # process B: new store, reads L3
        assert b["hits"] == len(texts), b
        plain = child(work / f"p{r}", "")  # no L3 at all: cold embedding
        cold.append(plain["add"])
        warm.append(b["add"])
        print(f"  round {r}: A {a['add']:.2f} s, B {b['add']:.3f} s, no L3 {plain['add']:.2f} s")
    c, w = statistics.median(cold), statistics.median(warm)
    print(
        f"second host, {len(texts)} paragraphs: cold embedding {c:.2f} s, from L3 {w:.3f} s; "
        f"{c / w:.1f}x faster (bar >= 20x)"
    )


def hit_cost(url: str) -> None:
    import numpy as np

    from magray.embed.redis_tier import RedisTier

    tier = RedisTier(url)
    keys = [os.urandom(16) for _ in range(1000)]
    vecs = np.random.default_rng(0).standard_normal((1000, 384)).astype(np.float32)
    tier.put_many(keys, vecs)
    tier.get_many(keys, 384)
    times = []
    for _ in range(30):
        t = time.perf_counter()
        got = tier.get_many(keys, 384)
        times.append(time.perf_counter() - t)
    assert all(g is not None for g in got)
    per = statistics.median(times) / 1000 * 1e6
    print(f"L3 hit, batch of 1000 (384-d), loopback: {per:.1f} us per text (bar <= 40 us)")
    tier.close()


def killed(url: str, server: RedisServer, work: Path, texts: list[str], model: str) -> None:
    import magray

    flush(url)
    with magray.open(work / "prefill", embedder=model, config={"cache_redis_url": url}) as m:
        for i in range(0, len(texts), 500):
            m.embed(texts[i : i + 500])
    rates = []
    with magray.open(work / "killed", embedder=model, config={"cache_redis_url": url}) as mem:
        ids: list[str] = []
        for b in range(20):
            if b == 4:
                server.kill()  # SIGKILL
            if b == 10:  # the same directory: its AOF brings the entries back
                server.start()
            t = time.perf_counter()
            ids += mem.add_many(texts[b * 250 : (b + 1) * 250])
            rates.append(250 / (time.perf_counter() - t))
        st = mem.stats()
        assert len(ids) == 5000 and len(set(ids)) == 5000 and st["records"] == 5000, (
            len(ids),
            len(set(ids)),
            st["records"],
        )
    print(
        "Redis SIGKILLed before batch 5, back before batch 11 (every text was in L3); "
        "texts/s per batch of 250: " + " ".join(f"{r:.0f}" for r in rates)
    )
    print(f"  5000 records, each once; L3 at the end: {st['cache_redis']}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", required=True)
    ap.add_argument("--skip-cluster", action="store_true")
    ap.add_argument("--skip-kill", action="store_true")
    ap.add_argument("--only-kill", action="store_true")
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not on PATH")
    texts = paragraphs(5000, 40)
    if len(texts) < 5000:
        raise SystemExit(f"only {len(texts)} docstrings of 40 characters or more here")
    long_texts = paragraphs(512, 200)
    from tests.redis_servers import RedisServer, free_cluster_port

    work = Path(tempfile.mkdtemp(prefix="magray-cache-bench-"))
    servers: list[RedisServer] = []
    try:
        standalone = RedisServer(work, "--appendonly", "yes", "--appendfsync", "always")
        servers.append(standalone)
        url = standalone.url
        print(f"[standalone {url}]")
        if not args.only_kill:
            second_host(url, long_texts, args.model, work)
            hit_cost(url)
        if not args.skip_kill:
            killed(url, standalone, work, texts, args.model)
        if not args.skip_cluster and not args.only_kill:
            ports = []
            for _ in range(3):
                node = RedisServer(
                    work,
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    port=free_cluster_port(),
                )  # fmt: skip
                servers.append(node)
                ports.append(node.port)
            subprocess.run(
                ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True,
            )  # fmt: skip
            time.sleep(2)
            curl = f"redis+cluster://127.0.0.1:{ports[0]}"
            print(f"[cluster {curl}, 3 masters]")
            second_host(curl, long_texts, args.model, work)
            hit_cost(curl)
    finally:
        for server in servers:
            server.kill()
        subprocess.run(["pkill", "-f", f"redis-server.*{work}"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
