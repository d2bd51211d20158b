"""Re-embedding into another model, killed with SIGKILL at any point: every open still
works, and the conversion resumes and completes with nothing lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import magray
from magray.embed.hashing import HashEmbedder

TEXTS = [f"memory number {i} about topic {i % 7}" for i in range(40)]

CHILD = r"""
import os, signal, sys
import magray
from magray.embed.hashing import HashEmbedder
from magray.memory import reembed
from magray.memory.store import Store

path, step, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = [f"memory number {i} about topic {i % 7}" for i in range(40)]
if step == "add":
    mem = magray.open(path, embedder="hash")
    mem.add_many(texts[:20], layer="interact")
    mem.add_many(texts[20:30], layer="insights")
    mem.add_many(texts[30:], layer="assets")
    os.kill(os.getpid(), signal.SIGKILL)  # no index snapshot, no clean close
mem = magray.open(path, embedder=HashEmbedder(dim=256), reembed=True)
if step == "stage":
    def progress(done, total):
        if done >= at:
            os.kill(os.getpid(), signal.SIGKILL)
    mem.reembed(progress=progress, batch_size=10)
elif step == "commit":
    # Kill after `at` batches of the commit have been written.
    reembed._MOVE_BATCH = 4
    write = Store.write
    def counting(self, batch, **kw):
        write(self, batch, **kw)
        if self.meta("reembed_commit") is not None:
            counting.n += 1
            if counting.n > at:
                os.kill(os.getpid(), signal.SIGKILL)
    counting.n = 0
    Store.write = counting
    mem.reembed(batch_size=10)
"""


def _child(path: Path, step: str, at: int = 0) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), step, str(at)], capture_output=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr.decode()


def _every_open_works(path: Path, new: HashEmbedder) -> None:
    for kwargs in (
        {"embedder": new, "reembed": True},
        {"embedder": None},
        {"embedder": None, "read_only": True},
    ):
        with magray.open(path, **kwargs) as mem:  # type: ignore[arg-type]
            assert mem.stats()["records"] == 40
            assert sorted(r.text for r in mem.recent(limit=100)) == sorted(TEXTS)


def _finish_and_check(path: Path, new: HashEmbedder) -> None:
    with magray.open(path, embedder=new, reembed=True) as mem:
        mem.reembed(batch_size=10)
        assert mem.dim == 256 and mem.fingerprint == new.fingerprint
        assert mem.store.meta("reembed_target") is None
        assert list(mem.store.scan("staged")) == []
        for text in TEXTS:
            hit = mem.search(text, k=1)[0]
            assert hit.record.text == text and hit.record.fingerprint == new.fingerprint
    with magray.open(path, embedder=new) as mem:  # no longer needs reembed=True
        assert mem.stats()["records"] == 40


@pytest.mark.parametrize("at", [20, 1, 39])
def test_a_reembed_killed_while_staging_resumes(tmp_path: Path, at: int) -> None:
    path = tmp_path / "store"
    _child(path, "add")
    _child(path, "stage", at)
    new = HashEmbedder(dim=256)
    _every_open_works(path, new)
    # The old model still reads and writes the store while the conversion waits.
    with magray.open(path, embedder="hash") as mem:
        assert mem.search(TEXTS[3], k=1)[0].record.text == TEXTS[3]
        extra = mem.add("written with the old model mid-conversion")
    _finish_and_check_with(path, new, extra)


def _finish_and_check_with(path: Path, new: HashEmbedder, extra: str) -> None:
    with magray.open(path, embedder=new, reembed=True) as mem:
        mem.reembed(batch_size=10)
        hit = mem.search("written with the old model mid-conversion", k=1)[0]
        assert hit.id == extra and hit.record.fingerprint == new.fingerprint
        mem.delete(extra)
    _finish_and_check(path, new)


@pytest.mark.parametrize("at", [0, 2, 5])
def test_a_reembed_killed_while_committing_is_finished_by_the_next_open(
    tmp_path: Path, at: int
) -> None:
    path = tmp_path / "store"
    _child(path, "add")
    _child(path, "commit", at)
    new = HashEmbedder(dim=256)
    with magray.open(path, embedder=None, read_only=True) as mem:
        # Mid-commit: a read-only view indexes only what is already converted, and
        # never fails.
        assert mem.stats()["records"] <= 40
        assert len(mem.recent(limit=100)) == 40
    # A writable open finishes the commit first; the old model is then refused, clearly.
    with pytest.raises(magray.EmbedderMismatchError, match="reembed"):
        magray.open(path, embedder="hash")
    _finish_and_check(path, new)
