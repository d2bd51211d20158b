"""The server under load from real client processes: SIGKILL during writes loses nothing
acknowledged and leaves no half batch; many namespaces under a small open bound lose no
write and stay small. Loopback only, bounded in count and time."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import magray

from .conftest import Server, remote, start_server

WRITER = r"""
import json, os, sys, numpy as np, magray
url, client, ack_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
m = magray.connect(url, namespace="load", timeout=10)
rng = np.random.default_rng(client)
ack = open(ack_path, "a")
for b in range(100000):
    texts = [f"c{client}-b{b}-{i}" for i in range(20)]
    try:
        ids = m.add_many(texts, vectors=rng.standard_normal((20, 384)).astype(np.float32))
    except magray.MagrayError:
        break  # the server is gone
    ack.write(json.dumps([f"c{client}-b{b}", ids]) + "\n")
    ack.flush()
    os.fsync(ack.fileno())
"""


@pytest.mark.slow
def test_sigkill_during_a_four_client_write_load_loses_no_acknowledged_batch(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    rnd = random.Random(7)
    acks = [tmp_path / f"ack{c}" for c in range(4)]
    for _trial in range(5):
        server = start_server(root)
        clients = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, server.url, str(c), str(acks[c])],
                stderr=subprocess.PIPE,
            )
            for c in range(4)
        ]
        time.sleep(rnd.uniform(1.0, 2.5))
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        for c in clients:
            c.wait(timeout=60)
    server = start_server(root)
    try:
        acked = [json.loads(line) for a in acks for line in a.read_text().splitlines()]
        assert len(acked) > 20
        with remote(server, "load") as m:
            texts = [r.text for r in m.recent(limit=1_000_000)]
            for _batch, ids in acked:
                assert all(m.get(i) is not None for i in ids), _batch
        batches: dict[str, int] = {}
        for t in texts:
            key = t.rsplit("-", 1)[0]
            batches[key] = batches.get(key, 0) + 1
        assert set(batches.values()) == {20}, "a batch is half there"
        assert {b for b, _ in acked} <= set(batches)
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_a_hundred_namespaces_under_a_bound_of_sixteen(
    server_factory: Callable[..., Server],
) -> None:
    import numpy as np
    import psutil

    server = server_factory("--max-open", "16")
    rng = np.random.default_rng(1)
    written: dict[str, list[str]] = {}
    with magray.connect(server.url, namespace="ns-000") as first:
        first.add("opened first")
    for n in range(100):
        ns = f"ns-{n:03d}"
        with remote(server, ns) as m:
            written[ns] = m.add_many(
                [f"{ns} record {i}" for i in range(20)],
                vectors=rng.standard_normal((20, 384)).astype(np.float32),
            )
    rss = psutil.Process(server.proc.pid).memory_info().rss
    for ns, ids in written.items():
        with remote(server, ns) as m:
            assert all(m.get(i) is not None for i in ids), ns
            assert m.stats()["records"] == (21 if ns == "ns-000" else 20)
    assert rss < 1 << 30, f"server RSS {rss / 2**20:.0f} MiB"
    assert sum(1 for p in server.root.iterdir() if (p / "serving.json").exists()) <= 16
    assert server.stop() == 0
