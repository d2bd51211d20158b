from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def model_dir() -> Path | None:
    """The shared all-MiniLM-L6-v2 directory beside the checkout (or MAGRAY_TEST_MODEL_DIR)."""
    env = os.environ.get("MAGRAY_TEST_MODEL_DIR")
    path = Path(env) if env else ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2"
    return path if (path / "model.onnx").is_file() else None


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    path = model_dir()
    if path is None:
        pytest.skip("the shared all-MiniLM-L6-v2 model directory is not present")
    return path
