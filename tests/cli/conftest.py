from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent / "magray"


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., Result]:
    """Run the installed `magray` entry point in a real subprocess against a temp store."""
    if not BIN.exists():
        pytest.skip("the magray entry point is not installed")
    env = dict(os.environ)
    env.update(
        {
            "MAGRAY_HOME": str(tmp_path / "store"),
            "MAGRAY_CONFIG": str(tmp_path / "config.toml"),
            "MAGRAY_MODELS_DIR": str(tmp_path / "models"),
            "HF_HOME": str(tmp_path / "hf"),
            "HF_ENDPOINT": "http://127.0.0.1:9",
            "MAGRAY_EMBEDDER": "hash",
            "NO_COLOR": "1",
        }
    )

    # A working directory of its own: a path the command mistook for a relative one lands
    # here, never in the project tree.
    work = tmp_path / "cwd"
    work.mkdir()

    def call(
        *args: str,
        input: str | None = None,
        extra_env: dict[str, str] | None = None,
        timeout: float = 120,
        cwd: Path | None = None,
    ) -> Result:
        e = dict(env, **(extra_env or {}))
        proc = subprocess.run(
            [str(BIN), *args],
            capture_output=True,
            text=True,
            env=e,
            input=input,
            timeout=timeout,
            cwd=cwd or work,
        )
        return Result(proc)

    return call
