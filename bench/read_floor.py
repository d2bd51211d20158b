"""How fast can one core stream memory here? The floor under memory-bound kernels.

Compiles a bare read loop (sum of 64-byte vectors, with and without software
prefetch) with the system C compiler into a temporary directory, then times it in
this process over the same 100k x 384 float32 array that bench/compare_kernels.py
searches, next to magray's one-query top-k and numpy's `base @ q`. One thread.

    python bench/read_floor.py
"""

from __future__ import annotations

import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

SOURCE = r"""
#include <stddef.h>
#if defined(__AVX512F__)
#include <immintrin.h>
float read_all(const float* x, size_t n, size_t ahead) {
    __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        if (ahead) __builtin_prefetch(x + i + ahead);
        a = _mm512_add_ps(a, _mm512_loadu_ps(x + i));
        b = _mm512_add_ps(b, _mm512_loadu_ps(x + i + 16));
        c = _mm512_add_ps(c, _mm512_loadu_ps(x + i + 32));
        d = _mm512_add_ps(d, _mm512_loadu_ps(x + i + 48));
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
    for (; i < n; ++i) s += x[i];
    return s;
}
#else
float read_all(const float* x, size_t n, size_t ahead) {
    float s[16] = {0};
    for (size_t i = 0; i + 16 <= n; i += 16) {
        if (ahead) __builtin_prefetch(x + i + ahead);
        for (int j = 0; j < 16; ++j) s[j] += x[i + j];
    }
    float t = 0;
    for (int j = 0; j < 16; ++j) t += s[j];
    return t;
}
#endif
"""


def median_ms(fn: Any, repeat: int = 31) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def build(work: Path) -> Any:
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        sys.exit("no C compiler found (set CC)")
    src, lib = work / "floor.c", work / "floor.so"
    src.write_text(SOURCE)
    for flags in (["-mavx512f"], []):
        r = subprocess.run(
            [cc, "-O2", "-shared", "-fPIC", *flags, "-o", str(lib), str(src)],
            capture_output=True,
            text=True,
        )
        if r.returncode == 0:
            break
    else:
        sys.exit(f"could not compile the read loop: {r.stderr.strip()}")
    so = ctypes.CDLL(str(lib))
    so.read_all.restype = ctypes.c_float
    so.read_all.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    return so


def main() -> None:
    import numpy as np

    from magray import kernels

    rng = np.random.default_rng(2)
    base = rng.standard_normal((100_000, 384)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    q = base[7].copy()
    work = Path(tempfile.mkdtemp(prefix="magray-floor-"))
    try:
        so = build(work)
        ptr, n = base.ctypes.data, base.size
        mb = base.nbytes / 1e6
        rows = [
            ("bare read loop", median_ms(lambda: so.read_all(ptr, n, 0))),
            ("bare read loop, prefetch 4 KiB ahead", median_ms(lambda: so.read_all(ptr, n, 1024))),
            (
                "magray topk, metric='dot'",
                median_ms(lambda: kernels.topk(q, base, 10, metric="dot")),
            ),
            ("magray topk, cosine", median_ms(lambda: kernels.topk(q, base, 10))),
            ("numpy base @ q", median_ms(lambda: base @ q)),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"one pass over {mb:.0f} MB (100k x 384 float32), one thread, medians of 31:")
    for name, ms in rows:
        print(f"  {name:<40} {ms:7.3f} ms  {mb / ms:6.1f} GB/s")


if __name__ == "__main__":
    main()
