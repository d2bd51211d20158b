"""The GitHub workflows pass actionlint, and keep the promises the README makes of them:
lint and tests on Linux (3.10 and 3.13) and macOS; wheels on tags; publishing only
from a version tag, by trusted publishing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

WORKFLOWS = Path(__file__).resolve().parents[1] / ".github" / "workflows"


def test_actionlint_is_clean() -> None:
    # Runner labels, action versions and their inputs, expressions, permissions.
    exe = shutil.which("actionlint") or str(Path(sys.executable).with_name("actionlint"))
    if not Path(exe).exists():
        pytest.skip("actionlint is not installed (the test extra installs it on Linux x86-64)")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    proc = subprocess.run([exe, *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def test_ci_lints_and_tests_on_linux_and_macos() -> None:
    ci = _load("ci.yml")
    jobs = ci["jobs"]
    assert {"lint", "test-linux", "test-macos"} <= set(jobs)
    assert jobs["test-linux"]["strategy"]["matrix"]["python-version"] == ["3.10", "3.13"]
    assert jobs["test-macos"]["runs-on"].startswith("macos")
    lint = " ".join(step.get("run", "") for step in jobs["lint"]["steps"])
    assert "ruff check" in lint and "mypy" in lint
    assert ci["permissions"] == {"contents": "read"}


def test_wheels_publish_only_from_a_tag_by_trusted_publishing() -> None:
    w = _load("wheels.yml")
    assert w["on"]["push"]["tags"] == ["v*"]
    publish = w["jobs"]["publish"]
    assert publish["permissions"] == {"id-token": "write"}
    assert "refs/tags/v" in publish["if"] and set(publish["needs"]) == {"sdist", "wheels"}
    uses = [step.get("uses", "") for step in publish["steps"]]
    assert any(u.startswith("pypa/gh-action-pypi-publish") for u in uses)
    assert any("cibuildwheel" in step.get("uses", "") for step in w["jobs"]["wheels"]["steps"])
