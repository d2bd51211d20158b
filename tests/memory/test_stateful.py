"""The engine, model-checked: random sequences of operations against a plain dict.

A hypothesis RuleBasedStateMachine drives one store through add, add_many, update
(text, layer, fields), delete, promote, expire (with an injected clock), search,
close/reopen, a simulated crash (no close; the index snapshot deleted or truncated),
export/import and backup/restore. After every step:

- ``get`` and ``stats`` agree with the model;
- a search by each live record's own vector finds it first;
- a text search for each word finds exactly the live records holding it, and
  ``contains=`` exactly those holding the substring (the full-text index agrees);
- no deleted or expired record ever comes back, from ``get`` or from a search.

CI runs a bounded number of examples; ``MAGRAY_STATEFUL_EXAMPLES=500`` asks for more.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import magray

from ..fakes import FakeClock

DIM = 16
DAY = 86400.0
LAYERS = ["interact", "insights", "assets"]
TEXTS = ["alpha", "beta gamma", "delta", "epsilon zeta", "eta"]
# Only importance promotes (access counts depend on which searches hit what), and the
# graph index takes over from 12 records so that both index kinds are exercised.
CONFIG = {
    "promote_access_count": 10**9,
    "assets_access_count": 10**9,
    "exact_threshold": 12,
    "index_save_every": 7,
    "access_flush_seconds": 0.05,
}


class Engine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="magray-stateful-"))
        self.path = self.dir / "store"
        self.clock = FakeClock()
        self.mem: Any = self._open()
        self.model: dict[str, dict[str, Any]] = {}
        self.holders: dict[tuple[str, str], list[str]] = {}  # (layer, text) -> ids
        self.gone: set[str] = set()
        self.vectors: dict[str, np.ndarray] = {}
        self.seq = 0

    def _open(self) -> Any:
        return magray.open(self.path, embedder=None, config=CONFIG, clock=self.clock)

    def teardown(self) -> None:
        if self.mem is not None:
            self.mem.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ------------------------------------------------------------------------

    def _vector(self, seed: int) -> np.ndarray:
        self.seq += 1
        v = np.random.default_rng([seed, self.seq]).standard_normal(DIM).astype(np.float32)
        return v / np.linalg.norm(v)

    def _hold(self, layer: str, text: str, rid: str) -> None:
        self.holders.setdefault((layer, text), []).append(rid)

    def _unhold(self, layer: str, text: str, rid: str) -> None:
        self.holders[(layer, text)].remove(rid)

    def _first(self, layer: str, text: str) -> str | None:
        found = self.holders.get((layer, text))
        return found[0] if found else None

    def _forget(self, rid: str) -> None:
        rec = self.model.pop(rid)
        self._unhold(rec["layer"], rec["text"], rid)
        self.gone.add(rid)

    def _live(self, pick: int) -> str:
        ids = sorted(self.model)
        return ids[pick % len(ids)]

    # -- rules ------------------------------------------------------------------------------

    @rule(text=st.sampled_from(TEXTS), layer=st.sampled_from(LAYERS), seed=st.integers(0, 99))
    def add(self, text: str, layer: str, seed: int) -> None:
        self.clock.advance(1)
        v = self._vector(seed)
        rid = self.mem.add(text, layer=layer, vector=v, tags=[text.split()[0]])
        existing = self._first(layer, text)
        if existing is not None:
            assert rid == existing
            return
        assert rid not in self.model and rid not in self.gone
        self.model[rid] = {
            "text": text,
            "layer": layer,
            "importance": 0.0,
            "tags": (text.split()[0],),
        }
        self._hold(layer, text, rid)
        self.vectors[rid] = v

    @rule(
        texts=st.lists(st.sampled_from(TEXTS), min_size=1, max_size=6),
        layer=st.sampled_from(LAYERS),
        seed=st.integers(0, 99),
    )
    def add_many(self, texts: list[str], layer: str, seed: int) -> None:
        self.clock.advance(1)
        vecs = np.stack([self._vector(seed) for _ in texts])
        ids = self.mem.add_many(texts, vectors=vecs, layer=layer)
        for text, rid, v in zip(texts, ids, vecs):
            existing = self._first(layer, text)
            if existing is not None:
                assert rid == existing
                continue
            self.model[rid] = {"text": text, "layer": layer, "importance": 0.0, "tags": ()}
            self._hold(layer, text, rid)
            self.vectors[rid] = v

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 10**6), text=st.sampled_from(TEXTS), seed=st.integers(0, 99))
    def update_text(self, pick: int, text: str, seed: int) -> None:
        rid = self._live(pick)
        rec = self.model[rid]
        v = self._vector(seed)
        self.mem.update(rid, text=text, vector=v)
        if text != rec["text"]:
            self._unhold(rec["layer"], rec["text"], rid)
            self._hold(rec["layer"], text, rid)
            rec["text"] = text
        self.vectors[rid] = v

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 10**6), layer=st.sampled_from(LAYERS))
    def update_layer(self, pick: int, layer: str) -> None:
        rid = self._live(pick)
        rec = self.model[rid]
        self.mem.update(rid, layer=layer)
        if layer != rec["layer"]:
            self._unhold(rec["layer"], rec["text"], rid)
            self._hold(layer, rec["text"], rid)
            rec["layer"] = layer

    @precondition(lambda self: self.model)
    @rule(
        pick=st.integers(0, 10**6),
        importance=st.sampled_from([0.0, 0.5, 0.85, 0.97]),
        tags=st.lists(st.sampled_from(["x", "y", "z"]), max_size=2, unique=True),
    )
    def update_fields(self, pick: int, importance: float, tags: list[str]) -> None:
        rid = self._live(pick)
        self.mem.update(rid, importance=importance, tags=tags)
        self.model[rid]["importance"] = importance
        self.model[rid]["tags"] = tuple(tags)

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 10**6))
    def delete(self, pick: int) -> None:
        rid = self._live(pick)
        assert self.mem.delete(rid) == 1
        self._forget(rid)

    @rule()
    def promote(self) -> None:
        self.clock.advance(1)
        self.mem.promote()
        self._promote_model()

    def _promote_model(self) -> None:
        for rid, rec in sorted(self.model.items()):
            to = None
            if rec["layer"] == "interact" and rec["importance"] >= 0.8:
                to = "assets" if rec["importance"] >= 0.95 else "insights"
            elif rec["layer"] == "insights" and rec["importance"] >= 0.95:
                to = "assets"
            if to is not None:
                self._unhold(rec["layer"], rec["text"], rid)
                self._hold(to, rec["text"], rid)
                rec["layer"] = to

    @rule()
    def expire(self) -> None:
        # Past the interact TTL: whatever stays in interact after promotion expires.
        self.clock.advance(2 * DAY)
        self.mem.expire()
        self._promote_model()
        for rid in [r for r, rec in self.model.items() if rec["layer"] == "interact"]:
            self._forget(rid)

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 10**6), k=st.integers(1, 5), tag=st.sampled_from(["x", "alpha"]))
    def search_filtered(self, pick: int, k: int, tag: str) -> None:
        rid = self._live(pick)
        hits = self.mem.search(vector=self.vectors[rid], k=k, tags=[tag])
        want = {r for r, rec in self.model.items() if tag in rec["tags"]}
        assert {h.id for h in hits} <= want
        assert len(hits) == min(k, len(want))

    @rule()
    def reopen(self) -> None:
        self.mem.close()
        self.mem = self._open()

    @rule(damage=st.sampled_from(["none", "delete", "truncate", "text-delete", "text-truncate"]))
    def crash(self, damage: str) -> None:
        """The process dies: no close, no final snapshot; then a snapshot, or a file of
        the full-text index, may be lost or torn. Access statistics not yet flushed are
        lost (they are best-effort)."""
        m = self.mem
        m._stop.set()
        if m._worker is not None:
            m._worker.join()
        m._wait_builds()
        m._closed = True
        m.store.close()
        m._release()
        if m._container is not None:
            m._container.close()
        snaps = sorted((self.path / "index").glob("*/snap-*/*"))
        text_files = sorted(p for p in (self.path / "index" / "text").glob("*") if p.is_file())
        if text_files and damage == "text-delete":
            for p in text_files:
                if p.name.endswith(".json"):
                    p.unlink()
        elif text_files and damage == "text-truncate":
            victim = max(text_files, key=lambda p: p.stat().st_size)
            with open(victim, "r+b") as f:
                f.truncate(victim.stat().st_size // 2)
        elif snaps and damage == "delete":
            for pointer in (self.path / "index").glob("*/current"):
                pointer.unlink()
        elif snaps and damage == "truncate":
            victim = max(snaps, key=lambda p: p.stat().st_size)
            with open(victim, "r+b") as f:
                f.truncate(victim.stat().st_size // 2)
        self.mem = self._open()

    @rule(vectors=st.booleans())
    def export_import(self, vectors: bool) -> None:
        out = self.dir / "export.jsonl"
        assert self.mem.export_jsonl(out, vectors=vectors) == len(self.model)
        copy = self.dir / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        with magray.open(copy, embedder=None, config=CONFIG, clock=self.clock) as other:
            if not vectors and self.model:
                report = other.import_jsonl(out)  # no vectors and no embedder: refused
                assert report.added == 0 and len(report.errors) == len(self.model)
                return
            report = other.import_jsonl(out)
            assert (report.added, report.skipped, report.errors) == (len(self.model), 0, [])
            for rid in self.model:
                assert other.get(rid).to_dict() == self.mem.get(rid).to_dict()

    @rule()
    def backup_restore(self) -> None:
        dest = self.dir / f"backup-{self.seq}"
        self.seq += 1
        self.mem.backup(dest)
        target = self.dir / "restored"
        shutil.rmtree(target, ignore_errors=True)
        magray.restore(dest, target)
        with magray.open(target, embedder=None, config=CONFIG, clock=self.clock) as other:
            assert other.stats()["records"] == len(self.model)
            for rid, rec in self.model.items():
                got = other.get(rid)
                assert (
                    got is not None and got.text == rec["text"] and got.layer.value == rec["layer"]
                )
        shutil.rmtree(dest, ignore_errors=True)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def get_and_stats_agree_with_the_model(self) -> None:
        assert self.mem.stats()["records"] == len(self.model)
        for rid, rec in self.model.items():
            got = self.mem.get(rid)
            assert got is not None, rid
            assert (got.text, got.layer.value) == (rec["text"], rec["layer"])
            assert (got.importance, got.tags) == (rec["importance"], rec["tags"])
        for rid in self.gone:
            assert self.mem.get(rid) is None

    @invariant()
    def the_layer_time_summaries_match_their_records(self) -> None:
        # Lifecycle planning trusts the summary beside each layer_time key: every write of
        # a record (add, update, move, access flush) must rewrite it.
        from magray.memory.codec import StoredRecord, lifecycle_summary, read_summaries

        self.mem._flush_access()
        store = self.mem.store
        entries = [(bytes(k), bytes(v)) for k, v in store.scan("layer_time", b"")]
        seen = set()
        for key, value in entries:
            rid = key[9:]
            raw = store.get("records", rid)
            assert raw is not None, rid
            rec = StoredRecord.decode(rid, raw)
            assert key[0] == rec.layer.code and value == lifecycle_summary(rec)
            seen.add(rid)
        if entries:
            columns = read_summaries([k for k, _ in entries], [v for _, v in entries])
            assert columns.known.all()
            for i, (key, _) in enumerate(entries):
                rec = StoredRecord.decode(key[9:], store.get("records", key[9:]) or b"")
                assert (columns.importance[i], columns.access_count[i]) == (
                    rec.importance,
                    rec.access_count,
                )
                assert (columns.last_access[i], columns.layer_since[i]) == (
                    rec.last_access,
                    rec.layer_since,
                )
                assert 0 <= rec.created_at - columns.created_at[i] < 0.001
        assert len(seen) == len(self.model)
        # ... and the promotable keys name exactly the records a promotion rule may move.
        from magray.memory.lifecycle import promotable

        keyed = {bytes(k) for k, _ in store.scan("promotable", b"")}
        expected = set()
        for key, _ in entries:
            rec = StoredRecord.decode(key[9:], store.get("records", key[9:]) or b"")
            if promotable(self.mem.config, rec.layer, rec):
                expected.add(bytes((rec.layer.code,)) + rec.raw_id)
        assert keyed == expected

    @invariant()
    def every_live_record_is_found_by_its_own_vector(self) -> None:
        for rid in self.model:
            hits = self.mem.search(vector=self.vectors[rid], k=3)
            assert hits and hits[0].id == rid, (rid, [h.id for h in hits])
            assert not {h.id for h in hits} & self.gone

    @invariant()
    def text_search_agrees_with_the_model(self) -> None:
        words = {w for t in TEXTS for w in t.split()}
        for word in sorted(words):
            hits = self.mem.search(word, k=100, mode="text")
            want = {r for r, rec in self.model.items() if word in rec["text"].split()}
            assert {h.id for h in hits} == want, word
        hits = self.mem.search("alpha", vector=np.ones(DIM), k=100, mode="hybrid", contains="ta")
        want = {r for r, rec in self.model.items() if "ta" in rec["text"]}
        assert {h.id for h in hits} == want


Engine.TestCase.settings = settings(
    max_examples=int(os.environ.get("MAGRAY_STATEFUL_EXAMPLES", "25")),
    stateful_step_count=30,
    deadline=None,
)
test_engine_against_a_model = Engine.TestCase
