"""Crash safety with real processes: ingest, SIGKILL at random points (half of them in
the middle of an index snapshot), reopen, and check that nothing acknowledged is lost."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import magray
from magray import Layer

CHILD = r"""
import json, os, sys, time
import numpy as np
import magray
from magray.memory.index import VectorIndex

path, ack_path, seed, marker = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
original_save = VectorIndex.save

def save(self, *args, **kwargs):
    # Test instrumentation: announce the snapshot and widen its window.
    with open(marker, "w") as f:
        f.write("saving")
    time.sleep(0.05)
    try:
        return original_save(self, *args, **kwargs)
    finally:
        os.unlink(marker)

VectorIndex.save = save
cfg = {"exact_threshold": 150, "index_save_every": 60, "access_flush_seconds": 0.02}
mem = magray.open(path, embedder=None, config=cfg)
rng = np.random.default_rng(seed)
layers = ["interact", "insights", "assets"]
ack = open(ack_path, "a")
i = 0
while True:
    n = int(rng.integers(1, 12))
    vecs = rng.standard_normal((n, 16)).astype(np.float32)
    texts = [f"s{seed}-{i + j}" for j in range(n)]
    ids = mem.add_many(texts, vectors=vecs, layer=layers[i % 3])
    for rid, text, v in zip(ids, texts, vecs):
        ack.write(json.dumps([rid, text, v.tolist()]) + "\n")
    ack.flush()
    os.fsync(ack.fileno())
    if i % 7 == 0:
        mem.search(vector=vecs[0], k=3)
    i += n
"""


@pytest.mark.slow
def test_sigkill_never_loses_an_acknowledged_record(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ack = tmp_path / "acks.jsonl"
    marker = tmp_path / "saving"
    rnd = random.Random(1234)
    during_save = 0
    for trial in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(store), str(ack), str(trial), str(marker)],
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        if trial % 2:
            # Kill while a snapshot is being written.
            while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.001)
            time.sleep(rnd.uniform(0.0, 0.04))
            during_save += marker.exists()
        else:
            time.sleep(rnd.uniform(0.3, 1.5))
        assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        marker.unlink(missing_ok=True)
    assert during_save >= 3

    acked = [json.loads(line) for line in ack.read_text().splitlines() if line.strip()]
    assert len(acked) > 100
    with magray.open(store, embedder=None, config={"exact_threshold": 150}) as mem:
        mem.wait_ready()
        stats = mem.stats()
        # Every acknowledged record is there and is the top hit for its own vector.
        for rid, text, _vec in acked:
            rec = mem.get(rid)
            assert rec is not None and rec.text == text, rid
        for rid, _text, vec in acked[:: max(1, len(acked) // 300)]:
            hit = mem.search(vector=np.asarray(vec, np.float32), k=1)[0]
            assert hit.id == rid
        # Index and store agree, layer by layer, and nothing is duplicated.
        texts: list[str] = []
        for layer in Layer:
            in_store = [k for k, _ in mem.store.scan("labels", bytes((layer.code,)))]
            assert len(in_store) == stats["layers"][layer.value]["records"]
            texts += [r.text for r in mem._records_of(layer)]
        idx = mem._index
        assert idx is not None and idx.count == stats["records"]
        for _label, rid in idx.label_ids():
            assert mem.store.get("records", rid) is not None
        assert len(texts) == len(set(texts)) == stats["records"]
