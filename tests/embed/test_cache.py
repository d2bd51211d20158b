from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import magray
from magray.embed.cache import EmbeddingCache
from magray.embed.hashing import HashEmbedder
from magray.memory.store import Store


def vecs(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_l1_hits_misses_and_byte_bound() -> None:
    c = EmbeddingCache("fp", 8, l1_bytes=10 * (8 * 4 + 120))
    texts = [f"t{i}" for i in range(15)]
    out, missing, keys = c.get_many(texts)
    assert missing == list(range(15)) and not out.any()
    c.put_many(keys, vecs(15))
    st = c.stats()["l1"]
    assert st["entries"] == 10 and st["evictions"] == 5 and st["bytes"] <= st["limit_bytes"]
    out, missing, _ = c.get_many(texts)
    assert missing == list(range(5))  # the oldest five were evicted
    np.testing.assert_array_equal(out[5:], vecs(15)[5:])
    st = c.stats()["l1"]
    assert (st["hits"], st["misses"]) == (10, 20) and st["hit_rate"] == pytest.approx(
        1 / 3, abs=1e-3
    )
    c.resize_l1(0)
    assert c.stats()["l1"]["entries"] == 0


def test_keys_separate_models() -> None:
    a, b = EmbeddingCache("model-a", 8), EmbeddingCache("model-b", 8)
    assert a.keys(["same text"]) != b.keys(["same text"])


def test_l2_persists_is_bounded_and_batched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    entry = 8 * 4 + 64
    c = EmbeddingCache("fp", 8, store=store, l2_bytes=100 * entry)
    texts = [f"doc {i}" for i in range(150)]
    _, _, keys = c.get_many(texts)
    c.put_many(keys, vecs(150))
    st = c.stats()["l2"]
    assert st["bytes"] <= 100 * entry and st["evictions"] >= 50
    store.close()

    store = Store(tmp_path)
    calls = []
    real = store.multi_get
    monkeypatch.setattr(store, "multi_get", lambda cf, ks: calls.append(len(ks)) or real(cf, ks))
    c2 = EmbeddingCache("fp", 8, store=store, l2_bytes=100 * entry)
    out, missing, _ = c2.get_many(texts)
    assert calls == [150]  # one multi_get for the whole batch
    assert missing and min(missing) == 0 and max(missing) < 60  # the oldest went first
    np.testing.assert_array_equal(out[140:], vecs(150)[140:])
    assert c2.stats()["l2"]["hits"] == 150 - len(missing)
    store.close()


def test_corrupt_entries_are_recomputed_never_fatal(tmp_path: Path) -> None:
    store = Store(tmp_path)
    c = EmbeddingCache("fp", 8, store=store)
    _, _, keys = c.get_many(["a", "b"])
    c.put_many(keys, vecs(2))
    b = store.batch()
    b.put(b"v" + keys[0], b"garbage", store.handle["cache"])
    b.put(b"m", b"bad header", store.handle["cache"])
    store.write(b)
    c2 = EmbeddingCache("fp", 8, store=store)  # a bad header clears the tier
    out, missing, _ = c2.get_many(["a", "b"])
    assert missing == [0, 1]
    store.close()


def test_memory_uses_the_cache_for_documents_and_queries(tmp_path: Path) -> None:
    calls: list[int] = []

    class Counting(HashEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            calls.append(len(texts))
            return super().embed(texts)

    e = Counting()
    with magray.open(tmp_path / "s", embedder=e) as m:
        m.add_many([f"fact number {i}" for i in range(20)])
        m.search("which fact is number 3")
        m.search("which fact is number 3")
        m.add_many([f"fact number {i}" for i in range(20)], layer="assets")  # cached vectors
        assert calls == [20, 1]
        st = m.stats()["cache"]["doc"]
        assert st["l1"]["hits"] == 21
    with magray.open(tmp_path / "s", embedder=e) as m:
        m.search("which fact is number 3")  # a fresh process finds it in L2
        assert calls == [20, 1]
        assert m.stats()["cache"]["doc"]["l2"]["hits"] == 1
