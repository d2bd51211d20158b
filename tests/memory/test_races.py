"""Searches, writes and deletes racing on a fresh store: what is set up lazily on the first
write (the layer table, the dimension, the caches) is never seen half made."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import magray

from .conftest import unit_vectors

DIM = 24


def _race(path: Path, seed: int) -> list[BaseException]:
    errors: list[BaseException] = []
    stop = threading.Event()
    written: list[str] = []
    lock = threading.Lock()
    mem = magray.open(path, embedder=None, config={"exact_threshold": 150})
    q = unit_vectors(1, DIM, seed=seed + 1000)[0]

    def guard(fn: Any) -> Any:
        def body() -> None:
            try:
                fn()
            except BaseException as exc:  # handed to the test below
                errors.append(exc)
                stop.set()

        return body

    @guard
    def writer() -> None:
        rng = np.random.default_rng(seed)
        for b in range(6):
            vecs = rng.standard_normal((100, DIM)).astype(np.float32)
            tags = ["rare" if i % 10 == 0 else "common" for i in range(100)]
            for i in range(0, 100, 50):
                ids = mem.add_many(
                    [f"b{b}-{i + j}" for j in range(50)],
                    vectors=vecs[i : i + 50],
                    tags=[tags[i]],
                    layer=["interact", "insights", "assets"][b % 3],
                )
                with lock:
                    written.extend(ids)
        stop.set()

    @guard
    def deleter() -> None:
        seen = 0
        while True:
            finished = stop.is_set()
            with lock:
                fresh, start = written[seen:], seen
                seen = len(written)
            for n, rid in enumerate(fresh, start):
                if n % 10 == 0:  # every tenth id, as it appears
                    mem.delete(rid)
            if finished and not fresh:
                return
            if not fresh:
                time.sleep(0.0005)

    @guard
    def reader() -> None:
        while not stop.is_set():
            for hit in mem.search(vector=q, k=10):
                assert hit.record.text.startswith("b")

    @guard
    def filtered_reader() -> None:
        while not stop.is_set():
            for hit in mem.search(vector=q, k=5, tags=["rare", "common"]):
                assert set(hit.record.tags) <= {"rare", "common"}

    threads = [threading.Thread(target=t) for t in (writer, deleter, reader, filtered_reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    mem.close()
    return errors


def test_searches_racing_the_first_writes_of_a_new_store_never_fail(tmp_path: Path) -> None:
    deadline = time.monotonic() + 40
    runs = 0
    while runs < 30 and time.monotonic() < deadline:
        errors = _race(tmp_path / f"store{runs}", runs)
        assert not errors, repr(errors[0])
        runs += 1
    assert runs >= 5
