"""GPU check: the CUDA provider runs the model with outputs equal to the CPU's, and how
much faster it is. Run on a machine with an NVIDIA GPU and onnxruntime-gpu:

    python bench/gpu_check.py --model-dir DIR

Prints the providers, the largest difference between GPU and CPU vectors over the
benchmark corpus (bar: <= 1e-4 per component), and throughput per batch size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_embed import corpus  # noqa: E402


def throughput(embedder, texts: list[str], rounds: int = 3) -> float:  # type: ignore[no-untyped-def]
    embedder.embed(texts[:64])
    runs = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        embedder.embed(texts)
        runs.append(time.perf_counter() - t0)
    return len(texts) / statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", type=Path, required=True)
    args = ap.parse_args()
    import numpy as np
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* wheels, where installed
    from magray.embed.onnx import OnnxEmbedder

    print(f"onnxruntime {ort.__version__}; providers {ort.get_available_providers()}")
    texts = corpus()
    cpu = OnnxEmbedder(args.model_dir, device="cpu")
    gpu = OnnxEmbedder(args.model_dir, device="gpu")
    print(f"gpu embedder: {gpu.provider} (start-up error: {gpu.gpu_error})")
    a, b = cpu.embed(texts), gpu.embed(texts)
    diff = float(np.abs(a - b).max())
    print(
        f"max |gpu - cpu| over {len(texts)} texts x {a.shape[1]}: {diff:.2e} (bar <= 1e-4): "
        f"{'PASS' if diff <= 1e-4 else 'FAIL'}"
    )
    result = {"max_abs_diff": diff, "provider": gpu.provider, "rows": []}
    for bs in (32, 128, 512):
        cpu.batch_size = gpu.batch_size = bs
        c = throughput(cpu, texts)
        g = throughput(gpu, texts)
        result["rows"].append({"batch": bs, "cpu": c, "gpu": g, "ratio": g / c})
        print(f"batch {bs:4d}: CPU {c:8.1f} texts/s, GPU {g:8.1f} texts/s, GPU/CPU {g / c:6.2f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
