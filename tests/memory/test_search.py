"""Filters never lose recall, in exact and graph mode alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import magray

from .conftest import FakeClock, unit_vectors

N = 1200


@pytest.fixture(params=["exact", "graph"])
def filled(request: pytest.FixtureRequest, store_path: Path, clock: FakeClock):  # type: ignore[no-untyped-def]
    threshold = 10_000 if request.param == "exact" else 200
    m = magray.open(
        store_path,
        embedder=None,
        clock=clock,
        config={"exact_threshold": threshold, "hnsw_ef_search": 64},
    )
    vecs = unit_vectors(N, dim=24, seed=3, clusters=12)
    meta = []
    for i in range(0, N, 100):
        for j in range(i, i + 100):
            tags = [f"t{j % 7}"] + (["rare"] if j % 97 == 0 else [])
            meta.append(
                {
                    "tags": tags,
                    "project": f"p{j % 3}",
                    "session": f"s{j % 5}",
                    "kind": "fact" if j % 2 else "note",
                    "created": clock.now,
                }
            )
            m.add(
                f"item {j}",
                vector=vecs[j],
                tags=tags,
                project=f"p{j % 3}",
                session=f"s{j % 5}",
                kind="fact" if j % 2 else "note",
            )
            clock.advance(1.0)
    m.wait_ready()
    assert m.stats()["index"]["state"] == request.param
    yield m, vecs, meta
    m.close()


def brute(vecs: np.ndarray, meta: list[dict], q: np.ndarray, k: int, pred) -> list[int]:  # type: ignore[no-untyped-def]
    rows = [i for i in range(len(vecs)) if pred(meta[i])]
    scores = vecs[rows] @ q
    order = np.argsort(-scores, kind="stable")[:k]
    return [rows[i] for i in order]


@pytest.mark.parametrize(
    "kwargs,pred",
    [
        ({"tags": ["rare"]}, lambda m: "rare" in m["tags"]),
        ({"tags": ["t1", "t2"]}, lambda m: "t1" in m["tags"] or "t2" in m["tags"]),
        ({"project": "p1"}, lambda m: m["project"] == "p1"),
        (
            {"project": "p2", "session": "s3"},
            lambda m: m["project"] == "p2" and m["session"] == "s3",
        ),
        ({"kind": "fact"}, lambda m: m["kind"] == "fact"),
        ({"tags": ["t0"], "kind": "note"}, lambda m: "t0" in m["tags"] and m["kind"] == "note"),
    ],
)
def test_filters_match_brute_force(filled, kwargs, pred) -> None:  # type: ignore[no-untyped-def]
    m, vecs, meta = filled
    total = found = 0
    for qi in range(0, 40):
        q = vecs[(qi * 37) % N]
        expected = brute(vecs, meta, q, 10, pred)
        hits = m.search(vector=q, k=10, **kwargs)
        got = [int(h.record.text.split()[1]) for h in hits]
        for h in hits:
            i = int(h.record.text.split()[1])
            assert pred(meta[i]), (kwargs, h.record)
        total += len(expected)
        found += len(set(got) & set(expected))
    assert found / total >= 0.97, found / total


def test_time_range_and_min_score(filled, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    m, vecs, meta = filled
    lo, hi = meta[100]["created"], meta[300]["created"]
    hits = m.search(vector=vecs[200], k=50, since=lo, until=hi)
    assert hits and all(lo <= h.record.created_at <= hi for h in hits)
    assert hits[0].record.text == "item 200"
    hits = m.search(vector=vecs[5], k=100, min_score=0.9)
    assert all(h.score >= 0.9 for h in hits)
    assert m.search(vector=vecs[5], k=10, project="no-such-project") == []


def test_graph_recall_unfiltered(filled) -> None:  # type: ignore[no-untyped-def]
    m, vecs, meta = filled
    total = found = 0
    for qi in range(50):
        q = vecs[(qi * 53) % N]
        expected = brute(vecs, meta, q, 10, lambda _m: True)
        got = [int(h.record.text.split()[1]) for h in m.search(vector=q, k=10)]
        total += 10
        found += len(set(got) & set(expected))
    assert found / total >= 0.98


def test_results_are_deterministic(filled) -> None:  # type: ignore[no-untyped-def]
    m, vecs, _ = filled
    first = [(h.id, h.score) for h in m.search(vector=vecs[11], k=20)]
    for _ in range(3):
        assert [(h.id, h.score) for h in m.search(vector=vecs[11], k=20)] == first


def test_searches_all_layers_and_merges(store_path: Path) -> None:
    vecs = unit_vectors(30, dim=8, seed=1)
    with magray.open(store_path, embedder=None) as m:
        for i, layer in enumerate(["interact", "insights", "assets"] * 10):
            m.add(f"r{i}", vector=vecs[i], layer=layer)
        for i in (0, 1, 2, 29):
            hits = m.search(vector=vecs[i], k=3)
            assert hits[0].record.text == f"r{i}"
            assert hits[0].layer.value == ["interact", "insights", "assets"][i % 3]
        only = m.search(vector=vecs[1], k=30, layers=["insights"])
        assert len(only) == 10 and all(h.layer.value == "insights" for h in only)


def test_one_index_serves_every_layer_and_each_layer_alone(store_path: Path) -> None:
    # One graph holds all three layers: a search over all of them and searches of each
    # layer alone (the filter path) agree with brute force, and a failure of the index
    # reaches the caller without wedging later searches.
    vecs = unit_vectors(1800, dim=16, seed=4, clusters=20)
    layers = ["interact", "insights", "assets"]
    layer_of = [layers[(j // 100) % 3] for j in range(1800)]
    with magray.open(store_path, embedder=None, config={"exact_threshold": 100}) as m:
        for i in range(0, 1800, 100):
            m.add_many(
                [f"r{j}" for j in range(i, i + 100)],
                vectors=vecs[i : i + 100],
                layer=layers[(i // 100) % 3],
            )
        m.wait_ready()
        assert m.stats()["index"]["state"] == "graph"
        assert [m.stats()["layers"][name]["records"] for name in layers] == [600] * 3
        found = total = 0
        for v in vecs[:60]:
            truth = np.argsort(-(vecs @ v), kind="stable")
            hits = m.search(vector=v, k=15)
            found += len({h.record.text for h in hits} & {f"r{j}" for j in truth[:15]})
            total += 15
            for name in layers:
                want = [f"r{j}" for j in truth if layer_of[j] == name][:15]
                got = [h.record.text for h in m.search(vector=v, k=15, layers=[name])]
                assert all(h.layer.value == name for h in m.search(vector=v, k=3, layers=[name]))
                found += len(set(got) & set(want))
                total += 15
        assert found / total >= 0.99

        index = m._index
        assert index is not None
        real = index.search

        def broken(*args: object) -> object:
            raise RuntimeError("index search failed")

        index.search = broken  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="index search failed"):
            m.search(vector=vecs[0], k=5)
        index.search = real  # type: ignore[method-assign]
        assert m.search(vector=vecs[0], k=1)[0].record.text == "r0"
