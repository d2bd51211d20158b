"""Equal scores go to the older record, in every index kind and at every k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import magray

from .conftest import FakeClock, unit_vectors


def test_exact_index_ties_go_to_the_older_record_after_an_update(
    store_path: Path, clock: FakeClock
) -> None:
    variants = ["Standup at nine", "standup at nine!", "STANDUP, at nine", "standup at nine?"]
    with magray.open(store_path, embedder="hash", clock=clock) as mem:
        ids = []
        for text in variants:
            ids.append(mem.add(text))
            clock.advance(1)
        # The hash embedder folds case and drops punctuation: all four embed identically.
        mem.update(ids[0], text="standup... at NINE")
        for k in (1, 2, 3, 4, 10):
            hits = mem.search("standup at nine", k=k)
            assert [h.id for h in hits] == ids[:k], k
            assert len({h.score for h in hits}) == 1


@pytest.mark.parametrize("layered", [False, True])
def test_graph_index_ties_go_to_the_older_record(
    store_path: Path, clock: FakeClock, layered: bool
) -> None:
    config = {"exact_threshold": 100}
    base = unit_vectors(600, 32, seed=3)
    copy = unit_vectors(1, 32, seed=99)[0]
    with magray.open(store_path, embedder=None, clock=clock, config=config) as mem:
        ids = mem.add_many([f"r{i}" for i in range(600)], vectors=base)
        clock.advance(1)
        copies = []
        for i in range(12):
            layer = ["interact", "insights", "assets"][i % 3] if layered else "interact"
            copies.append(mem.add(f"copy {i}", vector=copy, layer=layer))
            clock.advance(1)
        # More rows after the copies, so that their graph positions are not their ages.
        mem.add_many([f"s{i}" for i in range(300)], vectors=unit_vectors(300, 32, seed=4))
        mem.wait_ready()
        assert mem.stats()["index"]["state"] == "graph"
        for k in (1, 5, 11, 12):
            hits = mem.search(vector=copy, k=k)
            assert [h.id for h in hits] == copies[:k], k
        hits = mem.search(vector=copy, k=20)
        assert [h.id for h in hits[:12]] == copies
        assert all(h.id not in copies for h in hits[12:])
        # With a filter as well (the over-fetching graph path and the exact one).
        hits = mem.search(vector=copy, k=5, since=clock.now - 10_000)
        assert [h.id for h in hits] == copies[:5]
    assert ids
    np.testing.assert_allclose(np.linalg.norm(copy), 1.0, rtol=1e-6)
