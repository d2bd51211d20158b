from __future__ import annotations

import os
import subprocess
import sys

import pytest

from magray import kernels

from .conftest import AVAILABLE_ISAS


def test_cpu_info_shape() -> None:
    info = kernels.cpu_info()
    assert info["isa"] in ("scalar", "avx2", "avx512")
    assert info["best"] in info["available"]  # type: ignore[operator]
    assert "scalar" in info["available"]  # type: ignore[operator]


def _run(env_isa: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MAGRAY_FORCE_ISA=env_isa)
    code = "from magray import kernels; i = kernels.cpu_info(); print(i['isa'], i['forced'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("name", AVAILABLE_ISAS)
def test_force_isa_env(name: str) -> None:
    r = _run(name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [name, "True"]


def test_force_isa_rejects_unknown_value() -> None:
    r = _run("sse9")
    assert r.returncode != 0
    assert "MAGRAY_FORCE_ISA=sse9 is not one of scalar, avx2, avx512" in r.stderr


def test_force_isa_rejects_unsupported() -> None:
    missing = [n for n in ("avx2", "avx512") if n not in AVAILABLE_ISAS]
    if not missing:
        pytest.skip("this CPU supports every instruction set")
    r = _run(missing[0])
    assert r.returncode != 0 and "does not support" in r.stderr
