"""The full-text index and the search modes: BM25 with stemming and whole identifiers,
filters and contains= in every mode, the lifecycle reaching the index, and the index
as derived data (caught up, rebuilt when damaged, absent when switched off)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import magray
from magray.errors import InvalidInputError, StoreError
from magray.memory import hybrid
from magray.memory.fulltext import FullText
from magray.memory.textindex import TextIndex

DOCS = [
    ("The connection was reset by the peer: ERR_CONN_RESET after 30 s", "net", ["ops"]),
    ("Release v2.3.1 fixes the crash reported in #4471", "rel", ["ops", "release"]),
    ("Cats sleep most of the day on the warm sofa", "home", []),
    ("Connecting to the database failed with ERR_DB_TIMEOUT", "net", ["db"]),
    ("The garden needs watering every morning in summer", "home", ["garden"]),
    ("Upgrade to v2.3.2 before the next release of the client", "rel", ["release"]),
]


@pytest.fixture
def filled(mem: Any) -> tuple[Any, list[str]]:
    ids = [mem.add(t, project=p, tags=tags) for t, p, tags in DOCS]
    return mem, ids


def texts(hits: list[Any]) -> list[str]:
    return [h.record.text for h in hits]


@pytest.mark.parametrize(
    ("query", "want"),
    [
        ("ERR_CONN_RESET", 0),  # an identifier, whole
        ("err_conn_reset", 0),  # ... ignoring case
        ("v2.3.1", 1),  # a version string, whole (v2.3.2 is another term)
        ("#4471", 1),
        ("sleeping cat", 2),  # stemmed: sleeping -> sleep, cat -> cats
    ],
)
def test_text_mode_finds_words_and_whole_identifiers(
    filled: tuple[Any, list[str]], query: str, want: int
) -> None:
    mem, ids = filled
    hits = mem.search(query, k=3, mode="text")
    assert hits[0].id == ids[want], texts(hits)
    assert set(hits[0].scores) == {"text"} and hits[0].score == hits[0].scores["text"] > 0


def test_words_are_stemmed(filled: tuple[Any, list[str]]) -> None:
    mem, ids = filled
    # connection, connecting and connections all stem to connect.
    assert {h.id for h in mem.search("connections", k=5, mode="text")} == {ids[0], ids[3]}


def test_an_identifier_outranks_its_parts(filled: tuple[Any, list[str]]) -> None:
    mem, ids = filled
    hits = mem.search("v2.3.2", k=2, mode="text")
    assert [h.id for h in hits] == [ids[5], ids[1]]  # v2.3.1 shares only the parts


def test_hybrid_fuses_both_rankings_and_names_the_signals(filled: tuple[Any, list[str]]) -> None:
    mem, ids = filled
    hits = mem.search("ERR_DB_TIMEOUT database", k=6, mode="hybrid")
    assert hits[0].id == ids[3]
    assert set(hits[0].scores) == {"vector", "text"}
    assert hits[0].score == pytest.approx(1.0)  # best on both: 0.6 * 1 + 0.4 * 1
    assert all(0 <= h.score <= 1 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # Every hit carries both signals; one that shares no word with the query, text 0.
    assert all(set(h.scores) == {"vector", "text"} for h in hits)
    assert any(h.scores["text"] == 0.0 for h in hits)


WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "kernel",
    "socket",
    "packet",
    "router",
    "cache",
    "shard",
    "quorum",
    "lease",
]


def test_hybrid_scores_every_candidate_by_both_retrievers(mem: Any) -> None:
    # 200 records, so each mode's top 50 leaves out most of the other's: a text-only
    # candidate gets its exact cosine, a vector-only one its BM25 score (or 0).
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((200, 384)).astype(np.float32)
    texts = [" ".join(rng.choice(WORDS, 6)) + f" item{i}" for i in range(200)]
    ids = mem.add_many(texts, vectors=vectors)
    q = rng.standard_normal(384).astype(np.float32)
    cosine = {h.id: h.score for h in mem.search(vector=q, k=200)}
    query = "quorum lease shard"
    bm25 = {h.id: h.score for h in mem.search(query, k=200, mode="text")}
    assert len(cosine) == 200 and 0 < len(bm25) < 200

    top_vec = sorted(cosine, key=lambda i: -cosine[i])[:50]
    top_text = sorted(bm25, key=lambda i: -bm25[i])[:50]
    union = set(top_vec) | set(top_text)
    assert len(union) > 60 and set(ids) >= union
    best_v = max(cosine[i] for i in union)
    best_t = max(bm25.get(i, 0.0) for i in union)
    fused = {i: 0.6 * max(cosine[i], 0) / best_v + 0.4 * bm25.get(i, 0.0) / best_t for i in union}
    order = {rid: n for n, rid in enumerate(ids)}  # ties go to the older record
    want = sorted(fused, key=lambda i: (-round(fused[i], 6), order[i]))[:50]

    hits = mem.search(query, vector=q, k=50, mode="hybrid")  # depth 50, as k=10
    assert [h.id for h in hits] == want
    # The winners include candidates that only one retriever returned.
    assert set(want) - set(top_vec) and set(want) - set(top_text)
    for h in hits:
        assert h.scores["vector"] == pytest.approx(cosine[h.id], abs=1e-5)
        assert h.scores["text"] == pytest.approx(bm25.get(h.id, 0.0), rel=1e-5)
        assert h.score == pytest.approx(fused[h.id], abs=1e-5)


def test_hybrid_answers_alike_on_one_cpu_and_passes_errors_up(
    filled: tuple[Any, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The BM25 side runs in a worker thread where there are CPUs to spare, inline where
    # there are not; either way the answer is the same and a failure reaches the caller.
    mem, _ = filled
    query = "ERR_DB_TIMEOUT database release"
    beside = [(h.id, h.score, h.scores) for h in mem.search(query, k=6, mode="hybrid")]
    monkeypatch.setattr(hybrid.os, "cpu_count", lambda: 1)
    inline = [(h.id, h.score, h.scores) for h in mem.search(query, k=6, mode="hybrid")]
    assert inline == beside and len(beside) == 6

    def broken(*args: Any) -> Any:
        raise StoreError("the text index failed")

    monkeypatch.setattr(FullText, "search", broken)
    for cpus in (1, 4):
        monkeypatch.setattr(hybrid.os, "cpu_count", lambda cpus=cpus: cpus)
        with pytest.raises(StoreError, match="text index failed"):
            mem.search(query, k=6, mode="hybrid")


@pytest.mark.parametrize("size", [0, 1, 40, TextIndex.LABEL_TERMS_MAX + 1, 900])
def test_a_label_restriction_keeps_each_bm25_score(size: int) -> None:
    # Both ways of restricting (a disjunction of label terms for few labels, a term set
    # for many) select exactly the given labels and score each as unrestricted.
    text = TextIndex(None)
    rng = np.random.default_rng(3)
    text.put((label, " ".join(rng.choice(WORDS, 5))) for label in range(1000))
    text.commit(1)
    full = dict(text.search("quorum lease kernel", 1000))
    labels = sorted(rng.choice(1000, size, replace=False).tolist())
    got = dict(text.search("quorum lease kernel", 1000, labels))
    assert got == pytest.approx({x: full[x] for x in labels if x in full}, rel=1e-6)


@pytest.mark.parametrize("mode", ["vector", "text", "hybrid"])
def test_every_filter_works_in_every_mode(filled: tuple[Any, list[str]], mode: str) -> None:
    mem, ids = filled
    q = "the release connection"
    assert {h.id for h in mem.search(q, k=6, mode=mode, project="net")} <= {ids[0], ids[3]}
    assert {h.id for h in mem.search(q, k=6, mode=mode, tags=["release"])} <= {ids[1], ids[5]}
    assert mem.search(q, k=6, mode=mode, layers=["assets"]) == []
    held = {h.id for h in mem.search(q, k=6, mode=mode, contains="RELEASE")}
    assert held <= {ids[1], ids[5]} and held
    # contains= is a substring, ignoring case, that may start and end inside words.
    assert {h.id for h in mem.search(q, k=6, mode=mode, contains="onnect")} <= {ids[0], ids[3]}
    assert mem.search(q, k=6, mode=mode, contains="no such text") == []


@pytest.mark.parametrize(
    "restrict", [{"project": "net"}, {"tags": ["ops", "db"]}, {"contains": "err_"}]
)
def test_a_filter_leaves_each_text_score_as_it_is(
    filled: tuple[Any, list[str]], restrict: dict[str, Any]
) -> None:
    # A filter narrows the records, not their BM25 scores: the same record scores the
    # same with and without it, so min_score means one thing in both.
    mem, ids = filled
    q = "connection reset database"
    plain = {h.id: h.score for h in mem.search(q, k=6, mode="text")}
    narrowed = {h.id: h.score for h in mem.search(q, k=6, mode="text", **restrict)}
    assert narrowed and set(narrowed) <= set(plain)
    for rid, score in narrowed.items():
        assert score == pytest.approx(plain[rid], rel=1e-6)
    floor = min(narrowed.values())
    kept = mem.search(q, k=6, mode="text", min_score=floor, **restrict)
    assert {h.id for h in kept} == set(narrowed)


def test_contains_alone_is_exact(filled: tuple[Any, list[str]]) -> None:
    mem, ids = filled
    for needle, want in [
        ("n was res", {ids[0]}),
        ("2.3", {ids[1], ids[5]}),
        ("_DB_", {ids[3]}),
        ("E WARM S", {ids[2]}),
        ("!!", set()),
    ]:
        got = {h.id for h in mem.search("anything", k=10, mode="vector", contains=needle)}
        assert got == want, needle


def test_a_filter_that_keeps_many_records_loses_none(mem: Any) -> None:
    """A broad filter over the text index is applied by fetching wider, not by
    truncating: the best passing records come back even when they rank low overall."""
    n = 400
    ids = mem.add_many([f"common word number {i}" for i in range(n)], project="a")
    rare = mem.add_many([f"common word rare item {i}" for i in range(5)], project="b")
    hits = mem.search("common word", k=5, mode="text", project="b")
    assert {h.id for h in hits} == set(rare)
    assert len(mem.search("common", k=50, mode="text", project="a")) == 50
    assert ids  # (used above only through the filter)


def test_the_lifecycle_reaches_the_text_index(mem: Any, clock: Any) -> None:
    a = mem.add("quarterly revenue report draft")
    b = mem.add("the kettle is broken again", importance=0.9)
    assert texts(mem.search("revenue", mode="text")) == ["quarterly revenue report draft"]
    mem.update(a, text="annual budget plan")
    assert mem.search("revenue", mode="text") == []
    assert [h.id for h in mem.search("budget", mode="text")] == [a]
    mem.promote()
    assert mem.search("kettle", mode="text")[0].layer.value == "insights"
    clock.advance(2 * 86400)
    mem.expire()  # a, unused in interact for two days, expires; b is in insights
    assert mem.search("budget", mode="text") == []
    assert [h.id for h in mem.search("kettle", mode="text")] == [b]
    mem.delete(b)
    assert mem.search("kettle", mode="text") == []


def test_bad_modes_say_what_to_do(filled: tuple[Any, list[str]]) -> None:
    mem, _ = filled
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        mem.search("x", mode="bm25")
    with pytest.raises(InvalidInputError, match="needs query text"):
        mem.search(vector=np.ones(mem.dim, np.float32), mode="text")
    with pytest.raises(InvalidInputError, match="contains must be"):
        mem.search("x", contains="  ")


def test_full_text_off_builds_nothing_and_refuses_text_modes(store_path: Path) -> None:
    with magray.open(store_path, embedder="hash", config={"full_text": False}) as mem:
        mem.add_many(["one thing", "another thing"])
        with pytest.raises(InvalidInputError, match="full-text search is off"):
            mem.search("thing", mode="text")
        with pytest.raises(InvalidInputError, match="full-text search is off"):
            mem.search("thing", mode="hybrid")
        assert len(mem.search("thing", contains="another")) == 1  # checked on the texts
    assert not (store_path / "index" / "text").exists()


def test_the_index_is_rebuilt_when_damaged_or_missing(store_path: Path) -> None:
    with magray.open(store_path, embedder="hash") as mem:
        ids = mem.add_many([f"note {i} about topic{i}" for i in range(50)])
        assert mem.search("topic7", k=1, mode="text")[0].id == ids[7]
    text_dir = store_path / "index" / "text"
    for f in text_dir.iterdir():
        if f.is_file() and not f.name.startswith("."):
            f.write_bytes(b"garbage")
    with magray.open(store_path, embedder="hash") as mem:
        assert mem.search("topic7", k=1, mode="text")[0].id == ids[7]
        assert len(mem.search("note", k=100, mode="text")) == 50
    import shutil

    shutil.rmtree(text_dir)
    with magray.open(store_path, embedder="hash") as mem:
        assert mem.search("topic9", k=1, mode="text")[0].id == ids[9]


def test_a_read_only_view_searches_text(store_path: Path) -> None:
    with magray.open(store_path, embedder="hash") as mem:
        ids = mem.add_many(["red apple", "green pear", "ERR_X42 seen"])
    with magray.open(store_path, embedder="hash", read_only=True) as view:
        assert view.search("err_x42", k=1, mode="text")[0].id == ids[2]


CHILD = r"""
import os, signal, sys
import magray
mem = magray.open(sys.argv[1], embedder="hash")
for i in range(40):
    mem.add_many([f"batch{i} item{j} token{i * 10 + j}" for j in range(10)])
    print(i, flush=True)
"""


def test_sigkill_during_ingest_loses_no_acknowledged_record_from_the_text_index(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 12:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with magray.open(path, embedder="hash") as mem:
        for i in range(acked + 1):
            for j in (0, 9):
                token = f"token{i * 10 + j}"
                hits = mem.search(token, k=1, mode="text")
                assert hits and token in hits[0].record.text, token


def test_a_text_index_held_by_another_writer_is_a_clear_store_error(tmp_path: Path) -> None:
    from magray.errors import StoreError
    from magray.memory.textindex import TextIndex

    first, second = TextIndex(tmp_path / "text"), TextIndex(tmp_path / "text")
    first.put([(1, "one")])  # takes the writer
    with pytest.raises(StoreError, match="being written by another writer"):
        second.put([(2, "two")])
    first.commit(1)
    first.close()
    second.put([(2, "two")])  # free again
    second.commit(2)
    second.close()
    assert TextIndex(tmp_path / "text").count() == 2


def test_a_search_racing_a_write_does_not_skip_it_in_the_text_index(
    filled: tuple[Any, list[str]],
) -> None:
    # A text search catches the index up to the store's sequence. One that runs while a
    # write is under way (its batch built, not yet in the store) must not take the new
    # sequence for done: its oplog entry is not there yet and would be skipped for good.
    mem, _ = filled
    real = mem.store.write
    seen: list[int] = []

    def write_after_a_search(batch: Any, *, durable: bool = True) -> None:
        seen.append(len(mem.search("peer reset", mode="text", k=5)))
        real(batch, durable=durable)

    mem.store.write = write_after_a_search
    try:
        new = mem.add("The quasar emitted a burst of xylophone radiation")
    finally:
        mem.store.write = real
    assert seen and set(seen) == {1}
    assert [h.id for h in mem.search("xylophone quasar", mode="text", k=3)] == [new]
