"""Dynamic batching: concurrent embed calls share model calls, and each gets its rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from magray.embed.hashing import HashEmbedder
from magray.server.batching import BatchingEmbedder


class Slow:
    """A model whose every call costs 20 ms, however many texts: what batching saves."""

    name = "slow"
    dim = 384
    fingerprint = "slow-1"

    def __init__(self) -> None:
        self.inner = HashEmbedder()
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(0.02)
        self.calls.append(len(texts))
        return np.asarray(self.inner.embed(texts))

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        return -self.embed(texts)


def test_concurrent_calls_share_batches_and_get_their_own_rows() -> None:
    model = Slow()
    batcher = BatchingEmbedder(model, max_batch=64, max_wait=0.005)
    results: dict[int, np.ndarray] = {}
    texts = {i: [f"text {i} {j}" for j in range(i % 3 + 1)] for i in range(24)}

    def worker(i: int) -> None:
        results[i] = batcher.embed_query(texts[i]) if i % 4 == 0 else batcher.embed(texts[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    reference = HashEmbedder()
    for i, got in results.items():
        want = np.asarray(reference.embed(texts[i]))
        np.testing.assert_array_equal(got, -want if i % 4 == 0 else want)
    assert len(model.calls) < 12  # 24 requests, far fewer model calls
    assert sum(model.calls) == sum(len(t) for t in texts.values())


def test_a_failing_model_fails_every_request_of_its_batch_and_recovers() -> None:
    class Flaky(Slow):
        fail = True

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            if self.fail:
                self.fail = False
                raise RuntimeError("model exploded")
            return super().embed(texts)

    batcher = BatchingEmbedder(Flaky(), max_wait=0.0)
    with pytest.raises(RuntimeError, match="exploded"):
        batcher.embed(["a"])
    assert batcher.embed(["a"]).shape == (1, 384)
    batcher.close()
    with pytest.raises(RuntimeError, match="stopped"):
        batcher.embed(["b"])


def test_a_lone_caller_never_waits_for_a_batch_to_fill() -> None:
    batcher = BatchingEmbedder(HashEmbedder(), max_wait=0.5)
    for _ in range(3):
        t0 = time.perf_counter()
        batcher.embed(["one text alone"])
        assert time.perf_counter() - t0 < 0.25
    batcher.close()
