"""A full disk and read-only media, on real tmpfs mounts: clear MagrayErrors, every
handle released, nothing acknowledged lost, and reading works from read-only media."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import magray

BIN = Path(sys.executable).parent / "magray"
DIM = 384


class Mount:
    def __init__(self, path: Path) -> None:
        self.path = path

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Mount]:
    """A 4 MiB tmpfs of this test's own (mounting needs root; CI runs as root)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield Mount(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MAGRAY_EMBEDDER="hash", NO_COLOR="1")
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=env, timeout=120)


def _fill(mem: magray.Memory, start: int = 0) -> tuple[list[str], BaseException]:
    """add_many batches until the disk is full; (acknowledged ids, the error)."""
    rng = np.random.default_rng(start)
    acked: list[str] = []
    for i in range(start, start + 400):
        vecs = rng.standard_normal((50, DIM)).astype(np.float32)
        try:
            acked += mem.add_many([f"b{i}-{j}" for j in range(50)], vectors=vecs)
        except Exception as exc:
            return acked, exc
    raise AssertionError("the disk never filled up")


def test_disk_full_gives_a_clear_error_and_the_store_reopens(tmpfs: Mount) -> None:
    path = tmpfs.path / "store"
    mem = magray.open(path, embedder=None)
    acked, err = _fill(mem)
    assert isinstance(err, magray.DiskFullError), repr(err)
    assert "no space left" in str(err) and str(path) in str(err) and "free space" in str(err)
    assert len(acked) >= 50
    with pytest.raises(magray.MagrayError):
        mem.add("one more", vector=np.ones(DIM, np.float32))
    try:
        mem.close()  # flushes fail too; every handle and the lock are released anyway
    except magray.MagrayError:
        pass
    tmpfs.remount("size=64m")
    with magray.open(path, embedder=None) as mem:  # same process, lock released
        assert mem.stats()["records"] >= len(acked)
        for rid in acked:
            assert mem.get(rid) is not None
        more = mem.add("written after space came back", vector=np.ones(DIM, np.float32))
    with magray.open(path, embedder=None, read_only=True) as mem:
        assert mem.get(more) is not None


def test_disk_full_in_the_cli_is_one_line_and_exit_1(tmpfs: Mount) -> None:
    if not BIN.exists():
        pytest.skip("the magray entry point is not installed")
    path = tmpfs.path / "store"
    r = _cli("--store", str(path), "memory", "add", "kept before the disk filled up")
    assert r.returncode == 0, r.stderr
    # Fill what is left of the device.
    with open(tmpfs.path / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass
    r = _cli("--store", str(path), "memory", "add", "does not fit")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left" in lines[0] and "Traceback" not in r.stderr
    (tmpfs.path / "filler").unlink()
    r = _cli("--store", str(path), "memory", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert "kept before the disk filled up" in r.stdout


def test_a_store_on_read_only_media_can_be_read(tmpfs: Mount) -> None:
    path = tmpfs.path / "store"
    with magray.open(path, embedder="hash") as mem:
        ids = mem.add_many([f"read-only fact {i}" for i in range(30)])
    tmpfs.remount("ro")
    try:
        for embedder in (None, "hash"):
            with magray.open(path, embedder=embedder, read_only=True) as mem:
                assert mem.stats()["records"] == 30
                assert mem.get(ids[7]).text == "read-only fact 7"  # type: ignore[union-attr]
                assert mem.refresh() == 0
                if embedder:
                    assert mem.search("read-only fact 12", k=1)[0].id == ids[12]
        with pytest.raises(magray.StoreError, match="read-only file system"):
            magray.open(path, embedder="hash")
        if BIN.exists():
            r = _cli("--store", str(path), "memory", "list", "--json")
            assert r.returncode == 0, r.stderr
            assert "read-only fact 29" in r.stdout
            r = _cli("--store", str(path), "memory", "search", "read-only fact 5", "--json")
            assert r.returncode == 0, r.stderr
            r = _cli("--store", str(path), "memory", "add", "cannot be written")
            assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
            assert "read-only" in r.stderr and "Traceback" not in r.stderr
    finally:
        tmpfs.remount("rw")
    with magray.open(path, embedder="hash") as mem:  # nothing was changed by the reads
        assert mem.stats()["records"] == 30
