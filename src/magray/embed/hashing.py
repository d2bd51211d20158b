"""An offline lexical embedder: feature hashing, no model files.

Features of a text: its lower-cased words, adjacent word pairs, and the character
n-grams (3 to 5) of each word with boundary marks. Each feature is hashed with the native
XXH3-128 (all features of a batch in one call) to a signed bucket of ``dim``; counts get
sublinear weighting (1 + log tf) and rows are L2-normalised. Similar wording gives
similar vectors; it knows nothing of meaning, which is what a semantic model adds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_WORD = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Feature-hashing embedder; ``dim`` buckets (384 by default)."""

    VERSION = 1

    def __init__(self, dim: int = 384, ngram_range: tuple[int, int] = (3, 5)) -> None:
        if not isinstance(dim, int) or dim < 8:
            raise ValueError(f"dim must be an int >= 8, got {dim!r}")
        lo, hi = ngram_range
        if not (1 <= lo <= hi <= 8):
            raise ValueError(f"ngram_range must satisfy 1 <= lo <= hi <= 8, got {ngram_range!r}")
        self._dim = dim
        self._ngrams = (lo, hi)
        from magray.kernels import hash128

        spec = f"hash-embedder/v{self.VERSION}/dim={dim}/ngrams={lo}-{hi}/sublinear/l2"
        self._fingerprint = "hash-" + hash128(spec).hex()[:16]

    @property
    def name(self) -> str:
        return f"hash-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def features(self, text: str) -> list[str]:
        words = _WORD.findall(text.lower())
        feats = ["w " + w for w in words]
        feats += ["b " + a + " " + b for a, b in zip(words, words[1:])]
        lo, hi = self._ngrams
        for w in words:
            padded = "<" + w + ">"
            for n in range(lo, hi + 1):
                feats += ["c " + padded[i : i + n] for i in range(len(padded) - n + 1)]
        return feats

    def embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        from magray.kernels import hash128_many, l2_normalize

        n = len(texts)
        out = np.zeros((n, self._dim), dtype=np.float32)
        owners: list[int] = []
        feats: list[str] = []
        for i, text in enumerate(texts):
            f = self.features(text)
            feats += f
            owners += [i] * len(f)
        if not feats:
            return out
        digests = hash128_many(feats)
        words = digests[:, :8].copy().view(np.uint64).ravel()
        buckets = (words % np.uint64(self._dim)).astype(np.int64)
        signs = np.where(digests[:, 8] & 1, 1.0, -1.0)
        flat = np.asarray(owners, dtype=np.int64) * self._dim + buckets
        counts = np.bincount(flat, weights=signs, minlength=n * self._dim).reshape(n, self._dim)
        mag = np.abs(counts)
        weighted = np.sign(counts) * np.where(mag > 0, 1.0 + np.log(np.maximum(mag, 1.0)), 0.0)
        out[:] = weighted
        return l2_normalize(out, out=out)
