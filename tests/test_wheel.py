"""The wheel as a user gets it: built, repaired to a manylinux tag with auditwheel,
installed into a fresh virtual environment that cannot see the source tree, and run
from another directory (`magray --help`, `import magray`, a real add and search)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="auditwheel is for Linux")
def test_the_repaired_wheel_installs_and_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    auditwheel = Path(sys.executable).with_name("auditwheel")
    if not auditwheel.exists():
        pytest.skip("auditwheel is not installed (the test extra installs it)")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HNSWLIB_NO_NATIVE": "1"}
    env.pop("PYTHONPATH", None)  # nothing of the source tree
    built, repaired = tmp_path / "built", tmp_path / "repaired"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(built),
         str(ROOT)],
        check=True, env=env, timeout=1200,
    )  # fmt: skip
    (wheel,) = built.glob("magray-*.whl")
    subprocess.run(
        [str(auditwheel), "repair", "--wheel-dir", str(repaired), str(wheel)],
        check=True, env={**env, "PATH": f"{auditwheel.parent}:{env.get('PATH', '')}"},
        capture_output=True, timeout=600,
    )  # fmt: skip
    (fixed,) = repaired.glob("magray-*.whl")
    assert "manylinux" in fixed.name, fixed.name
    print(f"wheel {fixed.name}: {fixed.stat().st_size / 2**20:.2f} MiB")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", str(fixed)],
        check=True, env=env, timeout=1800,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_env = {**env, "MAGRAY_HOME": str(tmp_path / "home"), "MAGRAY_EMBEDDER": "hash"}

    def run(*args: str) -> str:
        proc = subprocess.run(
            list(args), cwd=elsewhere, env=run_env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "Usage: magray" in run(str(bin_dir / "magray"), "--help")
    where = run(str(bin_dir / "python"), "-c", "import magray; print(magray.__file__)")
    assert str(env_dir) in where and str(ROOT) not in where
    run(str(bin_dir / "magray"), "memory", "add", "the deploy key lives in the vault")
    found = run(str(bin_dir / "magray"), "memory", "search", "deploy key", "--json")
    assert "the deploy key lives in the vault" in found
    assert shutil.which("magray", path=str(bin_dir))
