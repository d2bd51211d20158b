from __future__ import annotations

from pathlib import Path

import pytest

import magray
from magray import Layer

from .conftest import FakeClock

DAY = 86_400.0


def test_promotion_rules_and_report(store_path: Path, clock: FakeClock) -> None:
    with magray.open(store_path, embedder="hash", clock=clock) as m:
        used = m.add("alpha beta gamma used often")
        vital = m.add("delta epsilon vital", importance=0.85)
        critical = m.add("zeta eta critical", importance=0.97)
        idle = m.add("theta iota idle")
        for _ in range(3):
            assert m.search("alpha beta gamma", k=1)[0].id == used
        dry = m.promote(dry_run=True)
        assert {mv.id for mv in dry.moved} == {used, vital, critical}
        assert m.get(used).layer is Layer.INTERACT  # a dry run moves nothing
        report = m.promote()
        moved = {mv.id: mv for mv in report.moved}
        assert moved[used].to_layer is Layer.INSIGHTS and "used 3 times" in moved[used].reason
        assert moved[vital].to_layer is Layer.INSIGHTS and "importance 0.85" in moved[vital].reason
        assert moved[critical].to_layer is Layer.ASSETS
        assert idle not in moved
        assert m.get(used).layer is Layer.INSIGHTS and m.get(used).layer_since == clock.now
        # The indexes moved too.
        assert m.search("alpha beta gamma", k=1, layers=["insights"])[0].id == used
        assert all(h.id != used for h in m.search("alpha beta gamma", k=5, layers=["interact"]))
        assert m.stats()["moves"] == {"interact->insights": 2, "interact->assets": 1}


def test_insights_to_assets_needs_use_and_age(store_path: Path, clock: FakeClock) -> None:
    with magray.open(store_path, embedder="hash", clock=clock) as m:
        a = m.add("kappa lambda", layer="insights")
        for _ in range(10):
            m.search("kappa lambda", k=1)
        assert m.promote().moved == []  # used enough, but only hours old
        clock.advance(7 * DAY + 1)
        report = m.promote()
        assert [(mv.id, mv.to_layer) for mv in report.moved] == [(a, Layer.ASSETS)]


def test_expiry_by_ttl_since_last_use(store_path: Path, clock: FakeClock) -> None:
    with magray.open(store_path, embedder="hash", clock=clock) as m:
        old = m.add("mu nu old note")
        kept = m.add("xi omicron kept by use")
        insight = m.add("pi rho insight", layer="insights")
        asset = m.add("sigma tau asset", layer="assets")
        clock.advance(20 * 3600)
        m.search("xi omicron kept", k=1)  # used: its 24 hours start again
        clock.advance(5 * 3600)
        report = m.expire()
        assert [mv.id for mv in report.expired] == [old]
        assert m.get(old) is None and m.get(kept) is not None
        assert m.search("mu nu old note", k=5, layers=["interact"])[0].id != old
        clock.advance(91 * DAY)
        report = m.expire()
        assert {mv.id for mv in report.expired} == {kept, insight}
        assert m.get(asset) is not None  # assets are permanent
        assert m.stats()["moves"]["interact->expired"] == 2


def test_promotion_is_checked_before_expiry(store_path: Path, clock: FakeClock) -> None:
    with magray.open(store_path, embedder="hash", clock=clock) as m:
        a = m.add("upsilon phi important", importance=0.9)
        clock.advance(2 * DAY)
        report = m.expire()
        assert report.expired == [] and report.moved[0].id == a
        assert m.get(a).layer is Layer.INSIGHTS


def test_config_values_drive_the_rules(store_path: Path, clock: FakeClock) -> None:
    cfg = {"ttl_interact": 60.0, "promote_access_count": 1}
    with magray.open(store_path, embedder="hash", clock=clock, config=cfg) as m:
        a = m.add("chi psi")
        b = m.add("omega alpha two")
        m.search("chi psi", k=1)
        clock.advance(61)
        report = m.expire()
        assert [mv.id for mv in report.moved] == [a]
        assert [mv.id for mv in report.expired] == [b]
        assert report.expired[0].reason == f"unused for more than {60 / 86400:g} days"


def test_promotion_moves_no_vector_and_rebuilds_no_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from magray.memory.index import VectorIndex
    from magray.memory.store import Store

    vecs = np.random.default_rng(5).standard_normal((2000, 16)).astype(np.float32)
    with magray.open(tmp_path / "s", embedder=None, config={"exact_threshold": 500}) as m:
        ids = m.add_many([f"r{i}" for i in range(2000)], vectors=vecs, importance=0.9)
        m.wait_ready()
        graph = m._index.graph  # type: ignore[union-attr]
        assert graph is not None
        real_multi_get = Store.multi_get

        def no_vectors(self, cf, keys):  # type: ignore[no-untyped-def]
            assert cf != "vectors", "a promotion read vectors"
            return real_multi_get(self, cf, keys)

        def no_index_change(*args: object, **kwargs: object) -> None:
            raise AssertionError("a promotion changed the vector index")

        with monkeypatch.context() as patch:
            patch.setattr(Store, "multi_get", no_vectors)
            patch.setattr(VectorIndex, "add", no_index_change)
            patch.setattr(VectorIndex, "remove", no_index_change)
            patch.setattr(VectorIndex, "start_rebuild", no_index_change)
            report = m.promote()
        assert len(report.moved) == 2000
        assert m._index.graph is graph  # type: ignore[union-attr]
        assert m.stats()["layers"]["insights"]["records"] == 2000
        hits = m.search(vector=vecs[7], k=1, layers=["insights"])
        assert hits[0].id == ids[7] and hits[0].layer.value == "insights"
        assert m.search(vector=vecs[7], k=1, layers=["interact"]) == []


@pytest.mark.parametrize("summaries", ["current", "absent"])
def test_planning_reads_only_the_records_that_qualify(
    store_path: Path, clock: FakeClock, summaries: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Promotion plans from the promotable keys and reads only the records they name;
    # expiry plans from the summary beside each layer_time key. A store written before
    # either existed (empty summaries, no promotable keys) is read in full once, when
    # it opens, to make the keys; from then on promotion reads only what qualifies.
    from magray.memory.codec import StoredRecord

    with magray.open(store_path, embedder="hash", clock=clock) as m:
        ids = [m.add(f"note number {i}", importance=0.9 if i % 10 == 0 else 0.1) for i in range(60)]
        for _ in range(3):
            assert m.search("note number 1", k=1)[0].id == ids[1]
        old = m.add("an old insight", layer="insights")
        if summaries == "absent":  # as an older version wrote the store
            m._flush_access()
            b = m.store.batch()
            for key, _ in m.store.scan("layer_time", b""):
                b.put(bytes(key), b"", m.store.handle["layer_time"])
            for key, _ in m.store.scan("promotable", b""):
                b.delete(bytes(key), m.store.handle["promotable"])
            b.delete(b"promotable_rule", m.store.handle["meta"])
            m.store.write(b)

    decoded: list[bytes] = []
    original = StoredRecord.decode

    def counting(rid: bytes, raw: bytes) -> StoredRecord:
        decoded.append(rid)
        return original(rid, raw)

    want = {ids[i] for i in range(0, 60, 10)} | {ids[1]}
    monkeypatch.setattr(StoredRecord, "decode", staticmethod(counting))
    with magray.open(store_path, embedder="hash", clock=clock) as m:
        assert len(decoded) == (61 if summaries == "absent" else 0)
        decoded.clear()
        report = m.promote(dry_run=True)
        assert len(decoded) == len(want)  # the 7 that qualify, not all 61
        monkeypatch.undo()
        assert {mv.id for mv in report.moved} == want
        clock.advance(100 * DAY)
        expired = m.expire(dry_run=True)
        assert {mv.id for mv in expired.expired} == (set(ids) - want) | {old}


def test_promotable_keys_follow_the_thresholds_a_store_opens_with(
    store_path: Path, clock: FakeClock
) -> None:
    # The promotable keys are made under the thresholds a store was last opened with;
    # opening under others makes them anew, so planning never misses a record.
    import dataclasses

    from magray.config import MemoryConfig

    with magray.open(store_path, embedder="hash", clock=clock) as m:
        ids = [m.add(f"note number {i}", importance=i / 10) for i in range(10)]
        m.search("note number 2", k=1)  # accesses, written by the flush at close
    lower = dataclasses.replace(MemoryConfig(), promote_importance=0.35, promote_access_count=1)
    with magray.open(store_path, embedder="hash", clock=clock, config=lower) as m:
        moved = {mv.id for mv in m.promote(dry_run=True).moved}
        assert moved == {ids[2]} | set(ids[4:])
    with magray.open(store_path, embedder="hash", clock=clock) as m:
        assert {mv.id for mv in m.promote(dry_run=True).moved} == set(ids[8:])
        for _ in range(2):  # with the first, three accesses: the flush makes it promotable
            m.search("note number 2", k=1)
        m._flush_access()
        assert {mv.id for mv in m.promote().moved} == {ids[2]} | set(ids[8:])
        assert m.get(ids[2]).layer is Layer.INSIGHTS


def test_promotable_keys_stay_in_step_with_every_write(store_path: Path, clock: FakeClock) -> None:
    def keyed(m: magray.Memory) -> dict[str, str]:
        from magray.memory import ids as idcodec

        return {
            idcodec.encode(bytes(k[1:])): Layer.from_code(k[0]).value
            for k, _ in m.store.scan("promotable", b"")
        }

    with magray.open(store_path, embedder="hash", clock=clock) as m:
        a = m.add("alpha note", importance=0.9)
        b = m.add("beta note", importance=0.1)
        c = m.add("gamma note", importance=0.97, layer="insights")
        assert keyed(m) == {a: "interact", c: "insights"}
        m.update(a, importance=0.2)  # no longer promotable
        m.update(b, importance=0.85)  # now promotable
        assert keyed(m) == {b: "interact", c: "insights"}
        m.update(b, layer="insights")  # promotable in insights only from 0.95
        m.update(c, text="gamma note, rewritten")
        assert keyed(m) == {c: "insights"}
        m.delete(c)
        assert keyed(m) == {}
        m.update(a, importance=0.99)
        assert {mv.id for mv in m.promote().moved} == {a}  # straight on to assets
        assert keyed(m) == {} and m.get(a).layer is Layer.ASSETS


def test_a_promotable_key_out_of_step_is_dropped_not_followed(
    store_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    from magray.memory import ids as idcodec
    from magray.memory.validate import raw_id

    with magray.open(store_path, embedder="hash", clock=clock) as m:
        a = m.add("alpha note", importance=0.1)
        b = m.store.batch()
        for key in (bytes((0,)) + raw_id(a), bytes((0,)) + idcodec.new_id()):
            b.put(key, b"", m.store.handle["promotable"])
        m.store.write(b)
        assert m.promote(dry_run=True).moved == []
        assert len(list(m.store.scan("promotable", b""))) == 2  # a dry run writes nothing
        with caplog.at_level("WARNING", logger="magray.memory"):
            assert m.promote().moved == []
        assert "2 promotable keys" in caplog.text
        assert list(m.store.scan("promotable", b"")) == []
        assert m.get(a).layer is Layer.INTERACT
