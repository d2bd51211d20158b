"""The version has one source, pyproject.toml: the package and the native module
report it as written there."""

from __future__ import annotations

import sys
from pathlib import Path

import magray
from magray import _native

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_one_version_everywhere() -> None:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    want = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert magray.__version__ == want
    assert _native.__version__ == want
