"""A program that exits without closing its store exits cleanly, and leaves the store
closed as close() would: statistics flushed, the index snapshot saved."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import magray

# Adds enough records to start a graph build, searches while it runs, and exits with
# the store open and the build (usually) still going.
SCRIPT = r"""
import sys
import numpy as np
import magray
mem = magray.open(sys.argv[1], embedder=None)
v = np.random.default_rng(int(sys.argv[2])).standard_normal((3000, 64)).astype(np.float32)
ids = mem.add_many([f"note {i}" for i in range(3000)], vectors=v)
for q in v[:300]:
    mem.search(vector=q, k=10)
print(ids[0])
"""


def test_exit_without_close_is_clean_and_closes_the_store(tmp_path: Path) -> None:
    # Before the exit hook about half of these runs died with SIGABRT (a build thread
    # torn down inside hnswlib by the interpreter's shutdown).
    firsts = []
    for run in range(5):
        path = tmp_path / f"s{run}"
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(path), str(run)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "terminate called" not in proc.stderr
        firsts.append((path, proc.stdout.strip()))
    for path, first in firsts:
        assert (path / "index").exists()
        with magray.open(path, embedder=None) as mem:
            assert mem.stats()["records"] == 3000
            got = mem.get(first)
            assert got is not None and got.access_count >= 1  # the searches' accesses
            assert mem.stats()["index"]["state"] == "graph"  # the snapshot, no rebuild


FORK = r"""
import os, sys
import numpy as np
import magray
mem = magray.open(sys.argv[1], embedder=None)
mem.add_many(["a", "b"], vectors=np.eye(2, 8, dtype=np.float32))
pid = os.fork()
if pid == 0:
    sys.exit(0)  # the child's exit runs the atexit hooks it inherited
os.waitpid(pid, 0)
mem.add("c", vector=np.ones(8, np.float32))  # the parent's store is still open and locked
print(mem.stats()["records"])
"""


def test_a_forked_child_does_not_close_its_parents_store(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FORK, str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,  # without the fork hook the child deadlocks closing the copy
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "3"
