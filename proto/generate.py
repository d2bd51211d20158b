"""Generate the Python code of magray's wire API from proto/magray/v1/memory.proto.

    python proto/generate.py [OUT]     (OUT defaults to src/; needs grpcio-tools)

The output (magray/v1/memory_pb2.py, .pyi and memory_pb2_grpc.py) is committed;
tests/server/test_proto.py regenerates it into a temporary directory and checks that
the committed files are identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PROTO = "magray/v1/memory.proto"


def generate(out: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) on the proto; returns the files written."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{ROOT}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        str(ROOT / PROTO),
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTO}")
    return sorted((out / "magray" / "v1").glob("memory_pb2*"))


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "src"
    for path in generate(target):
        print(path)
