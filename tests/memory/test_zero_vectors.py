"""Texts an embedder maps to the zero vector: what the engine stores, it can export,
import and find by its own text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import magray
from magray.embed.hashing import HashEmbedder

from .conftest import FakeClock

NO_WORDS = ["🎉🎉🎉", "?!… — ¿¡", "🙂"]


class ZeroForShortTexts:
    """An embedder (any model could) that returns the zero vector for short texts."""

    name = "zero-for-short"
    dim = 16
    fingerprint = "zero-for-short-v1"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            if len(t) > 8:
                out[i, hash(t) % self.dim] = 1.0
        return out


def test_texts_without_words_are_stored_found_exported_and_imported(
    tmp_path: Path, clock: FakeClock
) -> None:
    assert not HashEmbedder().embed(NO_WORDS).any()  # the model itself gives no direction
    a, b = tmp_path / "a", tmp_path / "b"
    with magray.open(a, embedder="hash", clock=clock) as mem:
        ids = [mem.add(t) for t in NO_WORDS]
        mem.add("a plain sentence with words")
        for rid, text in zip(ids, NO_WORDS):
            hits = mem.search(text, k=1)
            assert hits and hits[0].id == rid and abs(hits[0].score - 1.0) < 1e-5, text
        mem.export_jsonl(tmp_path / "out.jsonl", vectors=True)
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert all(np.any(line["vector"]) for line in lines)
    with magray.open(b, embedder="hash", clock=clock) as mem:
        report = mem.import_jsonl(tmp_path / "out.jsonl")
        assert (report.added, report.skipped, report.errors) == (4, 0, [])
        for rid, text in zip(ids, NO_WORDS):
            assert mem.search(text, k=1)[0].id == rid


def test_any_embedder_returning_zero_vectors_is_covered(tmp_path: Path) -> None:
    with magray.open(tmp_path / "s", embedder=ZeroForShortTexts()) as mem:
        short = mem.add_many(["tiny", "small", "a long enough text"])
        assert [h.id for h in mem.search("small", k=1)] == [short[1]]
        assert [h.id for h in mem.search("tiny", k=1)] == [short[0]]
        # Only the texts themselves score high against their fallback direction.
        assert mem.search("tiny", k=3)[1].score < 0.9


def test_an_exported_zero_vector_is_embedded_again_on_import(tmp_path: Path) -> None:
    """Exports of older stores hold zero vectors for such texts."""
    line = {"id": None, "text": "🎉🎉🎉", "vector": [0.0] * 384}
    (tmp_path / "old.jsonl").write_text(json.dumps(line) + "\n")
    with magray.open(tmp_path / "s", embedder="hash") as mem:
        report = mem.import_jsonl(tmp_path / "old.jsonl")
        assert (report.added, report.errors) == (1, [])
        assert mem.search("🎉🎉🎉", k=1)[0].record.text == "🎉🎉🎉"
    with magray.open(tmp_path / "v", embedder=None) as mem:
        report = mem.import_jsonl(tmp_path / "old.jsonl")
        assert report.added == 0
        assert "no usable vector" in report.errors[0][1]


def test_fallback_directions_are_fixed_unit_and_nearly_orthogonal() -> None:
    from magray.embed.base import fallback_directions

    texts = [f"t{i}" for i in range(64)]
    v = fallback_directions(texts, 384)
    assert v.dtype == np.float32 and v.shape == (64, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(v, fallback_directions(texts, 384))
    gram = v @ v.T
    assert np.abs(gram[~np.eye(64, dtype=bool)]).max() < 0.3
    assert fallback_directions(["x"], 10).shape == (1, 10)
