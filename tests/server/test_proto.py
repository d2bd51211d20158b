"""The committed generated code is what protoc makes of proto/magray/v1/memory.proto."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.generate(tmp_path)
    assert [p.name for p in written] == ["memory_pb2.py", "memory_pb2.pyi", "memory_pb2_grpc.py"]
    for p in written:
        committed = ROOT / "src" / "magray" / "v1" / p.name
        assert committed.read_bytes() == p.read_bytes(), (
            f"{committed.name} is stale: run python proto/generate.py"
        )
