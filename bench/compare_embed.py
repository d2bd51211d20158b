"""Embedding bars: magray's ONNX pipeline and cache against chromadb's default embedding
function, same model files, same machine, one process.

Corpus: the first 512 paragraphs longer than 40 characters of Python's
``pydoc_data.topics``. Model: all-MiniLM-L6-v2 from the shared model directory.

    python bench/compare_embed.py [--model-dir DIR] [--skip-chroma]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE.parent.parent / "shared" / "models" / "all-MiniLM-L6-v2"


def corpus(n: int = 512) -> list[str]:
    from pydoc_data.topics import topics

    out: list[str] = []
    for text in topics.values():
        for para in text.split("\n\n"):
            para = " ".join(para.split())
            if len(para) > 40:
                out.append(para)
                if len(out) == n:
                    return out
    return out


def chroma_ef(model_dir: Path, home: Path) -> Any:
    """chromadb's default embedding function, given our model files in its cache folder."""
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    target = home / "onnx"
    target.mkdir(parents=True, exist_ok=True)
    for name in (
        "model.onnx",
        "tokenizer.json",
        "tokenizer_config.json",
        "config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ):
        if not (target / name).exists():
            (target / name).symlink_to(model_dir / name)
    ONNXMiniLM_L6_V2.DOWNLOAD_PATH = home
    return ONNXMiniLM_L6_V2(preferred_providers=["CPUExecutionProvider"])


L2_PROBE = r"""
import json, sys, time
import magray
texts = json.load(open(sys.argv[2]))
with magray.open(sys.argv[1], embedder=sys.argv[3]) as mem:
    t0 = time.perf_counter()
    mem.embed(texts)
    took = time.perf_counter() - t0
    print(json.dumps({"seconds": took, "l2_hits": mem.stats()["cache"]["doc"]["l2"]["hits"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--skip-chroma", action="store_true")
    ap.add_argument("--search-n", type=int, default=100_000)
    args = ap.parse_args()
    model = args.model_dir
    import numpy as np

    import magray
    from magray.embed.onnx import OnnxEmbedder

    texts = corpus()
    print(
        f"corpus: {len(texts)} paragraphs, mean {statistics.mean(map(len, texts)):.0f} chars; "
        f"model {model.name}"
    )
    work = Path(tempfile.mkdtemp(prefix="magray-embed-bench-"))
    try:
        emb = OnnxEmbedder(model, device="cpu")
        emb.embed(texts[:32])  # warm-up (session start, allocations)
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            emb.embed(texts)
            runs.append(time.perf_counter() - t0)
        ours = len(texts) / statistics.median(runs)
        print(
            f"embed, CPU, cache cold: magray {ours:.1f} texts/s "
            f"({emb.stats()['provider']}, intra-op threads = {os.cpu_count()})",
            flush=True,
        )

        # add_many: embed + store + index; then the same texts again (duplicates).
        mem = magray.open(work / "store", embedder=str(model))
        t0 = time.perf_counter()
        mem.add_many(texts)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        mem.add_many(texts)
        again = time.perf_counter() - t0
        print(
            f"add_many of {len(texts)} texts: first {first:.2f} s ({len(texts) / first:.1f}/s); "
            f"repeated {again * 1e3:.2f} ms; first/repeated = {first / again:.0f}x (bar >= 50x)",
            flush=True,
        )

        # Cache hits, a batch of 1000 texts (distinct from the corpus).
        batch = [f"cached text number {i} about embeddings" for i in range(1000)]
        mem.embed(batch)
        l1 = []
        for _ in range(7):
            t0 = time.perf_counter()
            mem.embed(batch)
            l1.append(time.perf_counter() - t0)
        mem.close()
        tfile = work / "batch.json"
        tfile.write_text(json.dumps(batch))
        probes = [
            json.loads(
                subprocess.run(
                    [sys.executable, "-c", L2_PROBE, str(work / "store"), str(tfile), str(model)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            for _ in range(3)
        ]
        assert all(p["l2_hits"] == 1000 for p in probes), probes
        l2 = statistics.median(p["seconds"] for p in probes)
        print(
            f"cache hit, batch of 1000: L1 {statistics.median(l1) / 1000 * 1e6:.2f} us/text "
            "(bar <= 5); "
            f"L2 in a fresh process {l2 / 1000 * 1e6:.2f} us/text (bar <= 30)",
            flush=True,
        )

        # A short query, cache miss, embed + search over 100k records.
        n = args.search_n
        rng = np.random.default_rng(5)
        data = rng.standard_normal((n, 384)).astype(np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        mem = magray.open(work / "big", embedder=str(model))
        for i in range(0, n, 5000):
            mem.add_many([f"record {j}" for j in range(i, i + 5000)], vectors=data[i : i + 5000])
        mem.wait_ready()
        words = ["memory", "agent", "vector", "search", "layer"]
        words += ["index", "cache", "model", "store", "query"]
        lat = []
        for i in range(120):
            q = " ".join(words[(i + j) % len(words)] for j in range(7)) + f" {i}"
            t0 = time.perf_counter()
            mem.search(q, k=10)
            lat.append(time.perf_counter() - t0)
        mem.close()
        print(
            f"short query (8 words), cache miss, embed + search over {n:,}: "
            f"p50 {statistics.median(lat[20:]) * 1e3:.2f} ms (bar <= 15)",
            flush=True,
        )

        if not args.skip_chroma:
            import chromadb
            from chromadb.config import Settings

            ef = chroma_ef(model, work / "chroma-models")
            ef(texts[:32])
            t0 = time.perf_counter()
            ef(texts)
            theirs = len(texts) / (time.perf_counter() - t0)
            print(
                f"embed, CPU: chromadb ONNXMiniLM_L6_V2 {theirs:.1f} texts/s; "
                f"magray/chroma = {ours / theirs:.2f}x (bar >= 3.5x)",
                flush=True,
            )
            client = chromadb.PersistentClient(
                path=str(work / "chroma"), settings=Settings(anonymized_telemetry=False)
            )
            col = client.create_collection("bench", embedding_function=ef)
            t0 = time.perf_counter()
            col.add(ids=[str(i) for i in range(len(texts))], documents=texts)
            chroma_add = time.perf_counter() - t0
            print(
                f"add of {len(texts)} documents: chromadb {chroma_add:.2f} s; "
                f"magray add_many {first:.2f} s; ratio {chroma_add / first:.2f}x (bar >= 3x)",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
