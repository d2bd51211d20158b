"""The extension builds and works without the x86 kernel files (the scalar kernels
alone, as on a CPU that is not x86-64), and gives the same results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, numpy as np
from magray import kernels
rng = np.random.default_rng(0)
base = kernels.l2_normalize(rng.standard_normal((500, 24)).astype(np.float32))
idx, sc = kernels.topk(base[:3], base, 5)
print(json.dumps({"cpu": kernels.cpu_info(), "idx": idx.tolist(),
                  "hash": kernels.hash128("magray").hex()}))
"""


def _probe(path: Path | None) -> dict:  # type: ignore[type-arg]
    env = {**os.environ}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True,
        cwd=path or ROOT.parent,
    )  # fmt: skip
    result: dict = json.loads(out.stdout)  # type: ignore[type-arg]
    return result


@pytest.mark.slow
def test_the_build_without_x86_kernels_is_scalar_and_agrees(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels),
         "-C", "cmake.define.MAGRAY_X86_KERNELS=OFF", "-C", f"build-dir={tmp_path / 'build'}",
         str(ROOT)],
        check=True, timeout=1800,
    )  # fmt: skip
    (wheel,) = wheels.glob("magray-*.whl")
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(unpacked)
    scalar = _probe(unpacked)
    assert scalar["cpu"]["isa"] == "scalar"
    assert scalar["cpu"]["available"] == ["scalar"]
    usual = _probe(None)
    assert scalar["idx"] == usual["idx"] and scalar["hash"] == usual["hash"]
