"""CLI bars: whole-process times of the `magray` command (medians of at least 10 runs),
against a minimal Python script doing the same search through the library.

A 10k-record store is built once with the default model (all-MiniLM-L6-v2, imported
from the shared model directory into a temporary models folder, as `magray models
import` would).

    python bench/compare_cli.py [--model-dir DIR] [--runs 10]
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

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE.parent.parent / "shared" / "models" / "all-MiniLM-L6-v2"
BIN = Path(sys.executable).parent / "magray"

MINIMAL = r"""
import json, sys
import magray
with magray.open(sys.argv[1]) as mem:
    hits = mem.search(sys.argv[2], k=10)
    print(json.dumps([{"id": h.id, "score": h.score, "text": h.record.text} for h in hits]))
"""

PEAK_RSS = r"""
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def wall(cmd: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--records", type=int, default=10_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="magray-cli-bench-"))
    env = dict(
        os.environ,
        MAGRAY_MODELS_DIR=str(work / "models"),
        MAGRAY_HOME=str(work / "store"),
        MAGRAY_CONFIG=str(work / "config.toml"),
        NO_COLOR="1",
    )
    env.pop("MAGRAY_EMBEDDER", None)
    try:
        os.environ.update(MAGRAY_MODELS_DIR=env["MAGRAY_MODELS_DIR"])
        from magray.embed import models

        models.import_dir(args.model_dir, "all-MiniLM-L6-v2")
        import magray

        t0 = time.perf_counter()
        with magray.open(work / "store") as mem:
            assert "MiniLM" in mem.stats()["embedder"]["name"]
            texts = [
                f"memory {i}: the agent noted fact number {i} "
                f"about topic {i % 97} and task {i % 13}"
                for i in range(args.records)
            ]
            for i in range(0, len(texts), 1000):
                mem.add_many(texts[i : i + 1000])
            mem.wait_ready()
        print(
            f"built a {args.records:,}-record store with the default model in "
            f"{time.perf_counter() - t0:.1f} s"
        )

        # --help, cold: and which heavy modules it imports.
        help_s = wall([str(BIN), "--help"], env, args.runs)
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys\nsys.argv=['magray','--help']\nfrom magray.cli import main\n"
                "try:\n    main()\nexcept SystemExit:\n    pass\n"
                "heavy=('numpy','onnxruntime','rocksdict','hnswlib')\n"
                "print([m for m in heavy if m in sys.modules])",
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        imported = probe.stdout.strip().splitlines()[-1]
        print(
            f"magray --help, cold: {help_s * 1e3:.0f} ms (bar <= 150 ms); "
            f"heavy modules imported: {imported}"
        )

        query = "what did the agent note about topic 42?"
        cli_s = wall([str(BIN), "memory", "search", query, "--json"], env, args.runs)
        lib_s = wall([sys.executable, "-c", MINIMAL, str(work / "store"), query], env, args.runs)
        print(
            f"magray memory search --json on {args.records:,}: {cli_s:.3f} s wall (bar <= 1.5 s); "
            f"minimal library script {lib_s:.3f} s; CLI/script = {cli_s / lib_s:.2f}x (bar <= 1.2x)"
        )

        status_s = wall([str(BIN), "status"], env, args.runs)
        print(f"magray status on {args.records:,}: {status_s:.3f} s wall (bar <= 1 s)")

        rss = []
        for _ in range(3):
            out = subprocess.run(
                [sys.executable, "-c", PEAK_RSS, str(BIN), "memory", "search", query, "--json"],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            rss.append(int(out.stdout.strip()))
        print(f"peak RSS of magray memory search: {max(rss) / 2**20:.0f} MB (bar <= 400 MB)")
        check = subprocess.run(
            [str(BIN), "memory", "search", query, "--json"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        top = json.loads(check.stdout)[0]["record"]["text"]
        print(f"  (top hit: {top!r})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
