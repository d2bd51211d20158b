"""The extension's stub (_native.pyi) matches the compiled module."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import resources

from magray import _native


def _stub_functions() -> dict[str, list[str]]:
    text = resources.files("magray").joinpath("_native.pyi").read_text()
    tree = ast.parse(text)
    return {
        node.name: [a.arg for a in node.args.args]
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }


def _runtime_functions() -> dict[str, list[str]]:
    out = {}
    for name in dir(_native):
        obj = getattr(_native, name)
        if not callable(obj) or name.startswith("__"):
            continue
        # pybind11 puts the signature on the first docstring line: name(a: T, b: U = x) -> R
        first = (obj.__doc__ or "").splitlines()[0]
        m = re.match(rf"{re.escape(name)}\((.*)\) ->", first)
        assert m, f"no signature in {name}'s docstring: {first!r}"
        args = [a.split(":")[0].strip() for a in m.group(1).split(",") if a.strip()]
        out[name] = args
    return out


def test_stub_names_and_parameters_match_runtime() -> None:
    assert _stub_functions() == _runtime_functions()


def test_stub_ships_with_py_typed() -> None:
    assert resources.files("magray").joinpath("py.typed").is_file()


def test_stubtest_accepts_the_stub() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "magray._native", "--ignore-missing-stub"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
