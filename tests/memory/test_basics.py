from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import magray
from magray import InvalidInputError, Layer, NotFoundError
from magray.memory import ids
from magray.memory.codec import StoredRecord

from .conftest import FakeClock, unit_vectors


def test_add_get_search(mem: Any, clock: FakeClock) -> None:
    a = mem.add(
        "the deploy key lives in the vault",
        tags=["ops", "secrets"],
        project="infra",
        session="s1",
        kind="fact",
        importance=0.4,
        metadata={"source": "chat", "n": 3},
    )
    mem.add("remember to buy milk and bread")
    mem.add("the quarterly report is due on friday")
    rec = mem.get(a)
    assert rec is not None
    assert rec.text == "the deploy key lives in the vault"
    assert rec.layer is Layer.INTERACT and rec.kind == "fact"
    assert rec.tags == ("ops", "secrets") and rec.project == "infra" and rec.session == "s1"
    assert rec.metadata == {"source": "chat", "n": 3}
    assert rec.importance == 0.4 and rec.created_at == clock.now and rec.access_count == 0
    assert rec.fingerprint == mem.fingerprint
    hits = mem.search("where is the deploy key?", k=3)
    assert [h.id for h in hits][0] == a
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0001 <= s <= 1.0001 for s in scores)
    assert hits[0].record.access_count == 1  # counted, visible at once
    assert mem.get(a).access_count == 1


def test_ids_are_time_sortable_and_validated(mem: Any, clock: FakeClock) -> None:
    made = []
    for i in range(5):
        made.append(mem.add(f"note number {i}"))
        clock.advance(0.001)
    assert made == sorted(made)
    assert ids.encode(ids.decode(made[0])) == made[0]
    with pytest.raises(InvalidInputError, match="not a magray id"):
        mem.get("nope")
    assert mem.get(ids.encode(ids.new_id())) is None


def test_duplicate_text_in_a_layer_is_an_access(mem: Any) -> None:
    a = mem.add("same words")
    assert mem.add("same words") == a
    assert mem.add_many(["same words", "same words", "other"])[:2] == [a, a]
    assert mem.get(a).access_count == 3
    b = mem.add("same words", layer="assets")
    assert b != a
    assert mem.stats()["records"] == 3


def test_vector_only_store(store_path: Path) -> None:
    with magray.open(store_path, embedder=None) as m:
        v = unit_vectors(20, dim=16)
        got = m.add_many([f"v{i}" for i in range(20)], vectors=v)
        assert m.dim == 16
        hits = m.search(vector=v[7], k=1)
        assert hits[0].id == got[7] and hits[0].score == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(InvalidInputError, match="no embedder"):
            m.search("text query")
        with pytest.raises(InvalidInputError, match="dimension 8, the store holds 16"):
            m.add("x", vector=np.ones(8))


def test_unit_scores_and_unnormalised_vectors(store_path: Path) -> None:
    with magray.open(store_path, embedder=None) as m:
        m.add("a", vector=[3.0, 0.0, 0.0])
        m.add("b", vector=[0.0, 5.0, 0.0])
        hits = m.search(vector=[1.0, 1.0, 0.0], k=2)
        assert [h.score for h in hits] == pytest.approx([0.7071068, 0.7071068], abs=1e-6)
        # Ties go to the older record.
        assert [h.record.text for h in hits] == ["a", "b"]


def test_update_and_delete(mem: Any) -> None:
    a = mem.add("the cat sat on the mat", tags=["pets"])
    b = mem.add("stock prices rose sharply today")
    r = mem.update(
        a, text="the dog slept on the rug", tags=["dogs"], importance=0.5, metadata={"v": 2}
    )
    assert r.text == "the dog slept on the rug" and r.tags == ("dogs",) and r.importance == 0.5
    assert mem.search("dog rug", k=1)[0].id == a
    assert mem.search("cat", k=5, tags=["pets"]) == []
    r = mem.update(a, layer="assets")
    assert r.layer is Layer.ASSETS
    assert mem.search("dog rug", k=1, layers=["assets"])[0].id == a
    assert mem.search("dog rug", k=5, layers=["interact"])[0].id == b
    assert mem.delete([a, b]) == 2
    assert mem.get(a) is None and mem.search("dog", k=5) == []


def test_update_keeps_pending_access_counts(store_path: Path, clock: FakeClock) -> None:
    # Accesses not yet flushed are folded into the record an update writes: after the
    # update, and after a reopen, none is lost or counted twice.
    with magray.open(store_path, embedder="hash", clock=clock) as m:
        a = m.add("kappa lambda note")
        assert m.add("kappa lambda note") == a  # a duplicate: one access, pending
        m.search("kappa lambda", k=1)  # a second one
        clock.advance(5)
        m.update(a, tags=["t"], layer="insights")
        rec = m.get(a)
        assert (rec.access_count, rec.tags, rec.layer) == (2, ("t",), Layer.INSIGHTS)
        assert m.add("kappa lambda note", layer="insights") == a  # duplicate detection moved
    with magray.open(store_path, embedder="hash", clock=clock) as m:
        assert m.get(a).access_count == 3


def test_access_flush_writes_in_chunks_and_keeps_what_failed(
    store_path: Path, clock: FakeClock
) -> None:
    # 10 records in chunks of 4: the second write fails, so the first 4 are written and
    # the other 6 stay pending; the next flush writes them, and nothing counts twice.
    with magray.open(store_path, embedder="hash", clock=clock) as m:
        made = m.add_many([f"note number {i}" for i in range(10)])
        m._access.FLUSH_CHUNK = 4
        m._touch([ids.decode(x) for x in made])
        real, calls = m.store.write, []

        def failing(batch: Any, *, durable: bool = True) -> None:
            calls.append(durable)
            if len(calls) == 2:
                raise OSError("injected")
            real(batch, durable=durable)

        m.store.write = failing
        with pytest.raises(OSError):
            m._flush_access()
        m.store.write = real
        stored = [m.store.get("records", ids.decode(x)) for x in made]
        counts = [StoredRecord.decode(ids.decode(x), v).access_count for x, v in zip(made, stored)]
        assert sorted(counts) == [0] * 6 + [1] * 4
        assert len(m._access) == 6
        m._flush_access()
        assert m._access.pending == {}
    with magray.open(store_path, embedder="hash", clock=clock) as m:
        assert [m.get(x).access_count for x in made] == [1] * 10
        # The lifecycle summaries agree with the records (promotion plans from them).
        import struct

        summaries = [struct.unpack("<dQdd", v) for _k, v in m.store.scan("layer_time")]
        assert [s[1] for s in summaries] == [1] * 10


def test_access_statistics_wait_for_a_pause_in_searches(tmp_path: Path) -> None:
    import time

    # The policy, with the clocks set by hand (the maintenance thread sleeps an hour).
    slow = {"access_flush_seconds": 3600.0, "access_flush_max_seconds": 7200.0}
    with magray.open(tmp_path / "a", embedder="hash", config=slow) as m:
        made = m.add_many([f"note number {i}" for i in range(5)])
        m._touch([ids.decode(made[0])])
        now = time.monotonic()
        m._access.last_touch, m._access.last_flush = now, now
        assert not m._access.due()  # searching right now: wait
        m._access.last_touch = now - 3601
        assert m._access.due()  # searches paused for longer than access_flush_seconds
        m._access.last_touch, m._access.last_flush = now, now - 7201
        assert m._access.due()  # under load, but the last write is too old
        m._access.last_flush = now
        m._access.PENDING_MAX = 1
        assert m._access.due()  # too many records waiting
        m._access.pending.clear()
        assert not m._access.due()  # nothing to write

    # For real: once searches stop, the maintenance thread writes what they counted.
    with magray.open(tmp_path / "b", embedder="hash", config={"access_flush_seconds": 0.1}) as m:
        rid = ids.decode(m.add("note number one"))
        m.search("note number", k=1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if StoredRecord.decode(rid, m.store.get("records", rid)).access_count:
                break
            time.sleep(0.05)
        assert StoredRecord.decode(rid, m.store.get("records", rid)).access_count == 1


def test_bad_input_is_rejected_and_writes_nothing(store_path: Path) -> None:
    with magray.open(store_path, embedder="hash", config={"max_text_bytes": 100}) as m:
        keep = m.add("a valid memory")
        before = m.stats()

        def same() -> None:
            after = m.stats()
            assert after["records"] == before["records"] and after["seq"] == before["seq"]

        cases = [
            (lambda: m.add(""), "empty"),
            (lambda: m.add("   \n\t"), "empty"),
            (lambda: m.add("x" * 101), "over the limit of 100"),
            (lambda: m.add("ok", layer="archive"), "interact, insights, assets"),
            (lambda: m.add("ok", metadata={"f": object()}), "metadata cannot be stored"),
            (lambda: m.add("ok", metadata=[1]), "must be a dict"),
            (lambda: m.add("ok", importance=2), r"\[0, 1\]"),
            (lambda: m.add("ok", vector=np.full(384, np.nan)), "NaN or Inf"),
            (lambda: m.add("ok", vector=np.ones(5)), "dimension 5"),
            (lambda: m.add("ok", vector=np.zeros(384)), "all zeros"),
            (lambda: m.add("bad \ud800"), "lone surrogates"),
            (lambda: m.add_many(["fine", ""]), r"texts\[1\]"),
            (lambda: m.search("q", k=0), "k must be"),
            (lambda: m.search("q", k=-1), "k must be"),
            (lambda: m.search("", k=3), "empty"),
            (lambda: m.search("q", layers=["nope"]), "unknown layer"),
        ]
        for fn, msg in cases:
            with pytest.raises(InvalidInputError, match=msg):
                fn()
            same()
        missing = ids.encode(ids.new_id())
        with pytest.raises(NotFoundError, match="no record with id"):
            m.update(missing, text="x")
        with pytest.raises(NotFoundError, match="nothing was deleted"):
            m.delete([keep, missing])
        assert m.get(keep) is not None
        same()


def test_bad_paths(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InvalidInputError, match="is a file"):
        magray.open(f)
    with pytest.raises(magray.StoreError, match="cannot create"):
        magray.open(f / "sub")
    with pytest.raises(magray.StoreError, match="no magray store"):
        magray.open(tmp_path / "missing", read_only=True)


def test_default_path_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGRAY_HOME", str(tmp_path / "home"))
    with magray.open(embedder=None) as m:
        assert m.path == tmp_path / "home"


def test_closed_store_says_so(store_path: Path) -> None:
    m = magray.open(store_path, embedder="hash")
    m.close()
    with pytest.raises(magray.StoreError, match="closed"):
        m.add("x")


def test_operations_log_durations_and_ids_never_texts(store_path: Path) -> None:
    import io
    import json as _json

    from magray.ops.logging import configure

    stream = io.StringIO()
    configure(fmt="json", level="INFO", stream=stream)
    try:
        with magray.open(store_path, embedder="hash") as m:
            rid = m.add("a very private sentence about the vault code 4711")
            m.search("private vault code")
            m.update(rid, importance=0.5)
            m.delete(rid)
    finally:
        configure(fmt="text", level="WARNING")
    lines = [_json.loads(line) for line in stream.getvalue().splitlines()]
    ops = {line["op"]: line for line in lines if "op" in line}
    assert {"add", "search", "update", "delete"} <= set(ops)
    assert all("duration_ms" in line and rid in line["ids"] for line in ops.values())
    assert "4711" not in stream.getvalue() and "private" not in stream.getvalue()
    assert ops["search"]["query_len"] == len("private vault code")


def test_given_vectors_must_match_the_embedders_dimension_in_an_empty_store(
    store_path: Path,
) -> None:
    with magray.open(store_path, embedder="hash") as m:
        with pytest.raises(magray.InvalidInputError, match="makes 384-d vectors"):
            m.add("sixteen", vector=np.ones(16, np.float32))
        m.add("right size", vector=np.ones(384, np.float32))
    with magray.open(store_path, embedder="hash") as m:  # and the store reopens
        assert m.stats()["records"] == 1
