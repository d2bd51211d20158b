"""The same operations against a local store (magray.open) and a server's namespace
(magray.connect): same results, same exceptions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import magray

from .conftest import Server, start_server


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("root"))
    yield s
    assert s.stop() == 0


@pytest.fixture(params=["local", "remote"])
def mem(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "local":
        m = magray.open(tmp_path / "store", embedder="hash")
    else:
        server = request.getfixturevalue("shared_server")
        m = magray.connect(server.url, namespace=f"t-{uuid.uuid4().hex[:12]}")
    with m:
        yield m


def test_add_get_search_keep_every_field(mem: Any) -> None:
    meta = {"raw": b"\x00\xff", "n": 2**40, "f": 0.25, "nested": {"a": [1, "b", None]}}
    rid = mem.add(
        "the deploy key lives in the vault",
        layer="insights",
        kind="fact",
        tags=["ops", "keys"],
        project="infra",
        session="s1",
        metadata=meta,
        importance=0.5,
    )
    rec = mem.get(rid)
    assert rec.text == "the deploy key lives in the vault" and rec.layer is magray.Layer.INSIGHTS
    assert (rec.kind, rec.tags, rec.project, rec.session) == (
        "fact",
        ("ops", "keys"),
        "infra",
        "s1",
    )
    assert rec.metadata == meta and rec.importance == 0.5
    hits = mem.search("where is the deploy key?", k=3)
    assert (
        hits[0].id == rid and isinstance(hits[0].score, float) and hits[0].record.metadata == meta
    )
    assert mem.get("01M8N2EFTAKCMXF47WZKFQACQG") is None


def test_duplicates_and_on_duplicate(mem: Any) -> None:
    a = mem.add("standup at 9:30")
    assert mem.add("standup at 9:30") == a
    assert mem.add_many(["standup at 9:30", "new text"], on_duplicate="skip")[0] is None
    assert mem.get(a).access_count >= 1


def test_filters(mem: Any) -> None:
    vecs = np.eye(384, dtype=np.float32)[:4] + 0.1
    ids = [
        mem.add("a one", vector=vecs[0], tags=["x"], project="p1"),
        mem.add("a two", vector=vecs[1], tags=["y"], project="p2", layer="assets"),
        mem.add("a three", vector=vecs[2], kind="todo", session="s"),
        mem.add("a four", vector=vecs[3]),
    ]
    q = np.ones(384, np.float32)
    assert {h.id for h in mem.search(vector=q, tags=["x", "y"])} == set(ids[:2])
    assert [h.id for h in mem.search(vector=q, project="p2")] == [ids[1]]
    assert [h.id for h in mem.search(vector=q, kind="todo")] == [ids[2]]
    assert [h.id for h in mem.search(vector=q, session="s")] == [ids[2]]
    assert [h.id for h in mem.search(vector=q, layers=["assets"])] == [ids[1]]
    assert len(mem.search(vector=q, tags=[])) == 4  # an empty tag list filters nothing
    assert len(mem.search(vector=q, since=0, until=4e9)) == 4
    assert mem.search(vector=q, min_score=1.01) == []
    assert [h.id for h in mem.search(vector=vecs[3], k=1)] == [ids[3]]
    assert [r.id for r in mem.recent(limit=2)] == [ids[3], ids[2]]
    assert [r.id for r in mem.recent(layer="assets")] == [ids[1]]


def test_update_delete_and_lifecycle(mem: Any) -> None:
    rid = mem.add("first text", project="p", session="s")
    rec = mem.update(rid, text="second text", tags=["t"], metadata={"k": 1}, importance=0.9)
    assert (rec.text, rec.tags, rec.metadata, rec.importance) == (
        "second text",
        ("t",),
        {"k": 1},
        0.9,
    )
    rec = mem.update(rid, project=None, session="s2", kind="fact", layer="insights")
    assert (rec.project, rec.session, rec.kind, rec.layer.value) == (None, "s2", "fact", "insights")
    mem.update(rid, layer="interact")
    report = mem.promote(dry_run=True)
    assert report.dry_run and [m.id for m in report.moved] == [rid]
    assert mem.get(rid).layer.value == "interact"
    report = mem.promote()
    assert report.moved[0].to_layer is magray.Layer.ASSETS or report.moved[0].to_layer.value
    other = mem.add("expires soon")
    report = mem.expire(now=mem.get(other).created_at + 2 * 86400)
    assert [m.id for m in report.expired] == [other]
    assert mem.get(other) is None
    assert mem.delete([rid]) == 1
    with pytest.raises(magray.NotFoundError):
        mem.delete(rid)
    with pytest.raises(magray.NotFoundError):
        mem.update(rid, importance=0.1)


def test_stats_embed_flush_export_import(mem: Any, tmp_path: Path) -> None:
    ids = mem.add_many([f"note {i} about {i % 3}" for i in range(12)], tags=["bulk"])
    assert mem.stats()["records"] == 12
    v = mem.embed(["note 1 about 1", "x y"])
    assert v.shape == (2, 384) and v.dtype == np.float32
    mem.flush()
    out = tmp_path / "out.jsonl"
    assert mem.export_jsonl(out, vectors=True) == 12
    with magray.open(tmp_path / "copy", embedder="hash") as copy:
        report = copy.import_jsonl(out)
        assert (report.added, report.skipped) == (12, 0)
        assert {r.id for r in copy.recent(limit=50)} == set(ids)
    report = mem.import_jsonl(out)  # every id is already there
    assert (report.added, report.skipped, report.errors) == (0, 12, [])


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda m: m.add("   "), magray.InvalidInputError),
        (lambda m: m.add("x", layer="nowhere"), magray.InvalidInputError),
        (lambda m: m.add("x", importance=2.0), magray.InvalidInputError),
        (lambda m: m.add("x", metadata={1: "one"}), magray.InvalidInputError),
        (lambda m: m.add("x", vector=[0.0, 0.0]), magray.InvalidInputError),
        (lambda m: m.add_many("not a list"), magray.InvalidInputError),
        (lambda m: m.add_many(["a"], on_duplicate="merge"), magray.InvalidInputError),
        (lambda m: m.search("q", k=0), magray.InvalidInputError),
        (lambda m: m.search(), magray.InvalidInputError),
        (lambda m: m.search("q", layers=[]), magray.InvalidInputError),
        (lambda m: m.get("not-an-id"), magray.InvalidInputError),
        (lambda m: m.recent(limit=0), magray.InvalidInputError),
        (lambda m: m.update("01M8N2EFTAKCMXF47WZKFQACQG", text="t"), magray.NotFoundError),
        (lambda m: m.embed("one text"), magray.InvalidInputError),
    ],
)
def test_bad_input_raises_the_same_exception(mem: Any, call: Any, error: type) -> None:
    mem.add("something to search", vector=np.ones(384, np.float32))
    with pytest.raises(error) as info:
        call(mem)
    assert str(info.value)
    assert mem.stats()["records"] == 1  # nothing was written, and it keeps serving


def test_search_modes_and_contains_agree(mem: Any) -> None:
    ids = mem.add_many(
        ["deploy failed with ERR_CONN_RESET", "the cat sleeps", "release v2.3.1 shipped"]
    )
    hits = mem.search("err_conn_reset", k=2, mode="text")
    assert hits[0].id == ids[0] and set(hits[0].scores) == {"text"}
    hybrid = mem.search("ERR_CONN_RESET deploy", k=3, mode="hybrid")
    assert hybrid[0].id == ids[0] and set(hybrid[0].scores) == {"vector", "text"}
    assert [h.id for h in mem.search("anything", k=3, contains="V2.3")] == [ids[2]]
    with pytest.raises(magray.InvalidInputError, match="mode must be one of"):
        mem.search("x", mode="fuzzy")
