"""A real `magray serve` in a subprocess on an ephemeral loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent / "magray"


class Server:
    def __init__(self, proc: subprocess.Popen[str], url: str, root: Path) -> None:
        self.proc = proc
        self.url = url
        self.root = root

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr else ""  # type: ignore[union-attr]


def start_server(root: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """Start `magray serve` and wait for its "serving ... on URL" line."""
    if not BIN.exists():
        pytest.skip("the magray entry point is not installed")
    full_env = dict(os.environ, MAGRAY_EMBEDDER="hash", NO_COLOR="1", **(env or {}))
    proc = subprocess.Popen(
        [str(BIN), "serve", "--root", str(root), "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if " on grpc" not in line:
        proc.kill()
        raise AssertionError(f"server did not start: {line!r} {proc.stderr.read()}")  # type: ignore[union-attr]
    assert time.monotonic() < deadline
    return Server(proc, line.rsplit(" ", 1)[1].strip(), root)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(*args: str, root: Path | None = None, env: dict[str, str] | None = None) -> Server:
        s = start_server(root or tmp_path / "root", *args, env=env)
        started.append(s)
        return s

    yield make
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    return server_factory()


def remote(server: Server, namespace: str = "default", **kw: Any) -> Any:
    import magray

    return magray.connect(server.url, namespace=namespace, **kw)
