"""Persistence, index repair, backups, exports, locks, read-only views, threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import magray
from magray import BackupError, Layer, StoreLockedError

from .conftest import FakeClock, unit_vectors

GRAPH = {"exact_threshold": 100, "index_save_every": 10**9}


def texts_of(hits) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.record.text for h in hits]


def test_reopen_keeps_everything(store_path: Path) -> None:
    vecs = unit_vectors(300, dim=16, seed=2)
    with magray.open(store_path, embedder=None, config=GRAPH) as m:
        m.add_many([f"r{i}" for i in range(300)], vectors=vecs, tags=["t"])
        m.wait_ready()
        before = texts_of(m.search(vector=vecs[9], k=5))
    with magray.open(store_path, embedder=None, config=GRAPH) as m:
        assert m.stats()["index"]["state"] == "graph"
        assert texts_of(m.search(vector=vecs[9], k=5)) == before
        assert texts_of(m.search(vector=vecs[9], k=5, tags=["t"])) == before


def test_reopen_keeps_tags_of_some_rows(store_path: Path) -> None:
    # A snapshot with tagged and untagged rows: after reopening, tag filters see exactly
    # the rows that carry each tag.
    vecs = unit_vectors(300, dim=16, seed=3)
    with magray.open(store_path, embedder=None, config=GRAPH) as m:
        for i in range(300):
            tags = ["odd"] if i % 2 else []
            tags += ["tenth"] if i % 10 == 0 else []
            m.add(f"r{i}", vector=vecs[i], tags=tags)
        m.wait_ready()
    with magray.open(store_path, embedder=None, config=GRAPH) as m:
        odd = m.search(vector=vecs[0], k=300, tags=["odd"])
        assert sorted(int(t[1:]) for t in texts_of(odd)) == list(range(1, 300, 2))
        tenth = m.search(vector=vecs[0], k=300, tags=["tenth"])
        assert sorted(int(t[1:]) for t in texts_of(tenth)) == list(range(0, 300, 10))
        assert sorted(m.get(h.id).tags for h in tenth)[0] == ("tenth",)


def abandon(m) -> None:  # type: ignore[no-untyped-def]
    """Drop a store the way a crash would: no access flush, no index snapshot. Its
    background threads are let finish first: a dead process holds no tantivy writer,
    and a thread of this one still writing would stand in for nothing real."""
    m._stop.set()
    m._worker.join()
    m._wait_builds()
    m._closed = True
    m.store.close()
    m._release()


def test_stale_snapshot_is_caught_up_from_the_oplog(store_path: Path) -> None:
    vecs = unit_vectors(400, dim=16, seed=4)
    m = magray.open(store_path, embedder=None, config=GRAPH)
    ids = m.add_many([f"r{i}" for i in range(200)], vectors=vecs[:200])
    m.flush()  # snapshot at this point
    ids += m.add_many([f"r{i}" for i in range(200, 400)], vectors=vecs[200:])
    m.delete(ids[:50])
    m.update(ids[60], layer="assets")
    abandon(m)
    with magray.open(store_path, embedder=None, config=GRAPH) as m:
        st = m.stats()["layers"]
        assert st["interact"]["records"] == 349 and st["assets"]["records"] == 1
        assert texts_of(m.search(vector=vecs[300], k=1)) == ["r300"]
        assert texts_of(m.search(vector=vecs[10], k=1)) != ["r10"]
        assert m.search(vector=vecs[60], k=1)[0].layer is Layer.ASSETS


def test_corrupt_or_missing_snapshot_is_rebuilt(store_path: Path) -> None:
    vecs = unit_vectors(300, dim=16, seed=5)
    with magray.open(store_path, embedder=None, config=GRAPH) as m:
        m.add_many([f"r{i}" for i in range(300)], vectors=vecs)
        m.wait_ready()
    graph = next((store_path / "index").rglob("graph.hnsw"))
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with magray.open(store_path, embedder=None, config=GRAPH) as m:
        # Served exactly while the graph is rebuilt in the background.
        assert texts_of(m.search(vector=vecs[77], k=1)) == ["r77"]
        m.wait_ready()
        assert m.stats()["index"]["state"] == "graph"
        assert texts_of(m.search(vector=vecs[78], k=1)) == ["r78"]
    import shutil

    shutil.rmtree(store_path / "index")
    with magray.open(store_path, embedder=None, config=GRAPH) as m:
        assert m.stats()["records"] == 300
        assert texts_of(m.search(vector=vecs[5], k=1)) == ["r5"]


def test_heavy_deletion_rebuilds_the_graph(store_path: Path) -> None:
    vecs = unit_vectors(500, dim=16, seed=6)
    cfg = dict(GRAPH, access_flush_seconds=0.05)
    with magray.open(store_path, embedder=None, config=cfg) as m:
        ids = m.add_many([f"r{i}" for i in range(500)], vectors=vecs)
        m.wait_ready()
        m.delete(ids[:150])
        assert m._index is not None and m._index.needs_rebuild()
        m.wait_ready()
        index = m.stats()["index"]
        assert index["state"] == "graph" and index["deleted_in_graph"] == 0
        assert texts_of(m.search(vector=vecs[400], k=1)) == ["r400"]


def test_move_interrupted_between_store_and_index_is_repaired(
    store_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = magray.open(store_path, embedder="hash", clock=clock)
    a = m.add("important decision about the schema", importance=0.9)
    from magray.memory.index import VectorIndex

    def boom(self, labels, layer):  # type: ignore[no-untyped-def]
        raise RuntimeError("crash after the store moved")

    monkeypatch.setattr(VectorIndex, "set_layer", boom)
    with pytest.raises(RuntimeError):
        m.promote()
    monkeypatch.undo()
    abandon(m)
    with magray.open(store_path, embedder="hash", clock=clock) as m:
        assert m.get(a).layer is Layer.INSIGHTS
        assert m.search("decision schema", k=1, layers=["insights"])[0].id == a
        assert m.search("decision schema", k=1, layers=["interact"]) == []


def test_backup_and_restore(store_path: Path, tmp_path: Path) -> None:
    vecs = unit_vectors(250, dim=16, seed=7)
    with magray.open(store_path, embedder=None, config=GRAPH) as m:
        m.add_many([f"r{i}" for i in range(200)], vectors=vecs[:200])
        dest = m.backup(tmp_path / "bk")
        m.add_many([f"r{i}" for i in range(200, 250)], vectors=vecs[200:])
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["records"] == 200 and any(k.startswith("db/") for k in manifest["files"])
    restored = magray.restore(dest, tmp_path / "restored")
    with magray.open(restored, embedder=None, config=GRAPH) as m:
        assert m.stats()["records"] == 200
        assert texts_of(m.search(vector=vecs[150], k=1)) == ["r150"]
    # Restore over an existing store replaces it.
    magray.restore(dest, store_path)
    with magray.open(store_path, embedder=None) as m:
        assert m.stats()["records"] == 200


def test_damaged_backup_is_refused_and_target_untouched(store_path: Path, tmp_path: Path) -> None:
    vecs = unit_vectors(50, dim=8, seed=8)
    with magray.open(store_path, embedder=None) as m:
        m.add_many([f"r{i}" for i in range(50)], vectors=vecs)
        dest = m.backup(tmp_path / "bk")
        m.add("extra", vector=vecs[0] + 0.1)
    victim = max(
        (p for p in (dest / "db").iterdir() if p.is_file()), key=lambda p: p.stat().st_size
    )
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(BackupError, match="damaged"):
        magray.restore(dest, store_path)
    with magray.open(store_path, embedder=None) as m:
        assert m.stats()["records"] == 51
    with pytest.raises(BackupError, match="not a magray backup"):
        magray.restore(tmp_path, tmp_path / "x")
    with (
        magray.open(store_path, embedder=None) as m,
        pytest.raises(magray.InvalidInputError, match="not an empty directory"),
    ):
        m.backup(dest)


def test_export_import_round_trip(store_path: Path, tmp_path: Path, clock: FakeClock) -> None:
    with magray.open(store_path, embedder="hash", clock=clock) as m:
        m.add(
            "first memory of the day",
            tags=["a", "b"],
            project="p",
            session="s",
            kind="k",
            importance=0.3,
            metadata={"raw": b"\x00\x01", "nested": {"x": [1, 2.5, None]}},
        )
        m.add("second memory", layer="assets")
        m.search("first memory", k=1)
        n = m.export_jsonl(tmp_path / "out.jsonl", vectors=True)
        m.export_jsonl(tmp_path / "novec.jsonl")
        originals = {
            r["id"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())
        }
    assert n == 2
    for src in ("out.jsonl", "novec.jsonl"):
        other = tmp_path / f"other-{src}"
        with magray.open(other, embedder="hash", clock=clock) as m2:
            report = m2.import_jsonl(tmp_path / src)
            assert report.added == 2 and report.errors == []
            for rid, orig in originals.items():
                rec = m2.get(rid).to_dict()
                rec_meta = rec.pop("metadata")
                assert (
                    rec_meta == {"raw": b"\x00\x01", "nested": {"x": [1, 2.5, None]}}
                    or orig["metadata"] == {}
                )
                for key, value in rec.items():
                    assert value == orig[key], key
            assert m2.search("first memory", k=1)[0].record.text == "first memory of the day"
            again = m2.import_jsonl(tmp_path / src)
            assert again.added == 0 and again.skipped == 2


def test_import_reports_bad_lines(store_path: Path, tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(
        '{"text": "good one"}\n{not json\n{"text": ""}\n{"text": "ok", "layer": "x"}\n'
        '{"text": "fine too", "bogus": 1}\n{"text": "last good"}\n'
    )
    with magray.open(store_path, embedder="hash") as m:
        report = m.import_jsonl(f)
        assert report.added == 2
        assert [line for line, _ in report.errors] == [2, 3, 4, 5]
        assert "unknown layer" in report.errors[2][1]


def test_second_writer_gets_store_locked_error(store_path: Path) -> None:
    with magray.open(store_path, embedder=None):
        code = (
            "import magray, sys\n"
            "try:\n    magray.open(sys.argv[1], embedder=None)\n"
            "except magray.StoreLockedError as e:\n    print('LOCKED', e.pid); sys.exit(3)\n"
        )
        r = subprocess.run(
            [sys.executable, "-c", code, str(store_path)], capture_output=True, text=True
        )
        assert r.returncode == 3, r.stderr
        assert r.stdout.split() == ["LOCKED", str(os.getpid())]
        with pytest.raises(StoreLockedError, match=f"process {os.getpid()}"):
            magray.open(store_path, embedder=None)
    with magray.open(store_path, embedder=None):
        pass  # free again after close


def test_read_only_view_alongside_a_writer(store_path: Path) -> None:
    vecs = unit_vectors(40, dim=8, seed=9)
    with magray.open(store_path, embedder=None) as w:
        w.add_many([f"r{i}" for i in range(20)], vectors=vecs[:20])
        with magray.open(store_path, embedder=None, read_only=True) as r:
            assert r.stats()["records"] == 20
            with pytest.raises(magray.ReadOnlyError):
                r.add("x", vector=vecs[0])
            w.add_many([f"r{i}" for i in range(20, 40)], vectors=vecs[20:])
            w.delete([w.search(vector=vecs[3], k=1)[0].id])
            assert r.refresh() > 0
            assert r.stats()["records"] == 39
            assert texts_of(r.search(vector=vecs[33], k=1)) == ["r33"]
            assert texts_of(r.search(vector=vecs[3], k=1)) != ["r3"]


def test_threads_share_a_memory(store_path: Path) -> None:
    vecs = unit_vectors(1600, dim=16, seed=10)
    errors: list[BaseException] = []
    with magray.open(store_path, embedder=None, config={"exact_threshold": 300}) as m:
        m.add_many([f"seed{i}" for i in range(100)], vectors=vecs[:100])

        def writer(t: int) -> None:
            try:
                for i in range(100 + t * 375, 100 + (t + 1) * 375, 25):
                    m.add_many([f"r{j}" for j in range(i, i + 25)], vectors=vecs[i : i + 25])
            except BaseException as exc:
                errors.append(exc)

        def reader() -> None:
            try:
                for i in range(300):
                    hits = m.search(vector=vecs[i % 100], k=5)
                    assert hits and hits[0].record.text == f"seed{i % 100}"
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        threads += [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        m.wait_ready()
        assert m.stats()["records"] == 1600
        for i in (150, 900, 1599):
            assert texts_of(m.search(vector=vecs[i], k=1)) == [f"r{i}"]


def test_reembed_converts_and_resumes(store_path: Path) -> None:
    from magray.embed import HashEmbedder

    with magray.open(store_path, embedder=HashEmbedder(dim=64)) as m:
        m.add_many([f"note about topic {i} and thing {i * 7}" for i in range(30)])
    with pytest.raises(magray.EmbedderMismatchError, match="reembed=True"):
        magray.open(store_path, embedder=HashEmbedder(dim=32))

    class Stop(Exception):
        pass

    def interrupt(done: int, total: int) -> None:
        if done == 12:
            raise Stop

    with magray.open(store_path, embedder=HashEmbedder(dim=32), reembed=True) as m:
        with pytest.raises(Stop):
            m.reembed(progress=interrupt, batch_size=5)
        with pytest.raises(magray.EmbedderMismatchError, match="reembed"):
            m.search("topic 3")
    seen: list[int] = []
    with magray.open(store_path, embedder=HashEmbedder(dim=32), reembed=True) as m:
        converted = m.reembed(progress=lambda d, t: seen.append(d), batch_size=5)
        assert 0 < converted < 30  # the first batches were already converted
        assert m.dim == 32
        assert m.search("note about topic 17 and thing 119", k=1)[0].record.text.startswith(
            "note about topic 17 "
        )
    with magray.open(store_path, embedder=HashEmbedder(dim=32)) as m:
        assert m.stats()["records"] == 30


def test_restore_refuses_a_directory_that_is_not_a_store(store_path: Path, tmp_path: Path) -> None:
    with magray.open(store_path, embedder=None) as m:
        m.add("x", vector=[1.0, 0.0])
        dest = m.backup(tmp_path / "bk")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.txt").write_text("precious")
    with pytest.raises(magray.InvalidInputError, match="not a magray store"):
        magray.restore(dest, docs)
    assert (docs / "thesis.txt").read_text() == "precious"


def test_failed_index_update_is_repaired_before_any_snapshot(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from magray.memory.index import VectorIndex

    vecs = unit_vectors(20, dim=8, seed=11)
    m = magray.open(store_path, embedder=None)
    m.add_many([f"r{i}" for i in range(10)], vectors=vecs[:10])
    real = VectorIndex.add

    def interrupted(self, rows, vectors):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(VectorIndex, "add", real)  # once: the repair then works
        raise KeyboardInterrupt

    monkeypatch.setattr(VectorIndex, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        m.add("r10", vector=vecs[10])
    monkeypatch.setattr(VectorIndex, "add", real)
    assert texts_of(m.search(vector=vecs[10], k=1)) == ["r10"]  # repaired at once
    m.close()
    with magray.open(store_path, embedder=None) as m:
        assert texts_of(m.search(vector=vecs[10], k=1)) == ["r10"]


def test_reader_reloads_after_the_writer_trims_the_oplog(store_path: Path) -> None:
    vecs = unit_vectors(10, dim=8, seed=12)
    with magray.open(store_path, embedder=None) as w:
        w.add_many([f"r{i}" for i in range(5)], vectors=vecs[:5])
        with magray.open(store_path, embedder=None, read_only=True) as r:
            w.add_many([f"r{i}" for i in range(5, 8)], vectors=vecs[5:8])
            w.flush()  # snapshots, then trims the oplog
            assert r.refresh() > 0
            assert texts_of(r.search(vector=vecs[6], k=1)) == ["r6"]


def test_snapshot_with_deletions_loads_without_a_rebuild(store_path: Path) -> None:
    vecs = unit_vectors(300, dim=16, seed=13)
    with magray.open(store_path, embedder=None, config=GRAPH) as m:
        ids = m.add_many([f"r{i}" for i in range(300)], vectors=vecs)
        m.wait_ready()
        m.delete(ids[:10])
    with magray.open(store_path, embedder=None, config=GRAPH) as m:
        index = m.stats()["index"]
        assert index["state"] == "graph" and index["deleted_in_graph"] == 10
        assert texts_of(m.search(vector=vecs[100], k=1)) == ["r100"]


def test_promoted_records_keep_duplicate_detection(store_path: Path) -> None:
    with magray.open(store_path, embedder="hash") as m:
        a = m.add("a decision that matters", importance=0.9)
        m.promote()
        assert m.add("a decision that matters", layer="insights") == a


def test_import_skips_repeated_ids_and_bad_values(store_path: Path, tmp_path: Path) -> None:
    with magray.open(store_path, embedder="hash") as m:
        rid = m.add("original text")
        m.export_jsonl(tmp_path / "a.jsonl")
    line = json.loads((tmp_path / "a.jsonl").read_text())
    other = dict(line, text="a different text under the same id")
    bad = [
        dict(line, id=None, text="t1", created_at=-1),
        dict(line, id=None, text="t2", vector=[1, "x"]),
        dict(line, id=None, text="t3", access_count=2**70),
        dict(line, id=None, text="t4", vector=5),
    ]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(x) for x in [line, other, *bad]) + "\n")
    with magray.open(tmp_path / "fresh", embedder="hash") as m:
        report = m.import_jsonl(tmp_path / "b.jsonl")
        assert report.added == 1 and report.skipped == 1 and len(report.errors) == 4
        assert m.get(rid).text == "original text"
        assert [h.id for h in m.search("original text", k=5)].count(rid) == 1


def test_vector_only_store_imports_its_own_export(store_path: Path, tmp_path: Path) -> None:
    vecs = unit_vectors(5, dim=6, seed=14)
    with magray.open(store_path, embedder=None) as m:
        m.add_many([f"v{i}" for i in range(5)], vectors=vecs)
        m.export_jsonl(tmp_path / "v.jsonl", vectors=True)
    with magray.open(tmp_path / "other", embedder=None) as m:
        assert m.import_jsonl(tmp_path / "v.jsonl").added == 5
        assert texts_of(m.search(vector=vecs[3], k=1)) == ["v3"]


def test_reopening_a_graph_store_allocates_no_exact_matrix(store_path: Path) -> None:
    import tracemalloc

    vecs = unit_vectors(20_000, dim=128, seed=21)
    matrix_bytes = vecs.nbytes  # what an exact matrix of these rows would take
    with magray.open(store_path, embedder=None, config=GRAPH) as m:
        m.add_many([f"r{i}" for i in range(20_000)], vectors=vecs)
        m.wait_ready()
    tracemalloc.start()
    try:
        with magray.open(store_path, embedder=None, config=GRAPH) as m:
            _current, peak = tracemalloc.get_traced_memory()
            assert m.stats()["index"]["state"] == "graph"
            assert texts_of(m.search(vector=vecs[3], k=1)) == ["r3"]
    finally:
        tracemalloc.stop()
    assert peak < matrix_bytes * 0.8, f"peak {peak / 2**20:.1f} MiB"
