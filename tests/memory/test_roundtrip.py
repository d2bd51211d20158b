"""Export then import into an empty store gives back every record, equal in every field,
whatever sequence of add, update, delete and promote made the store."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import magray

from .conftest import FakeClock

LAYERS = ["interact", "insights", "assets"]


def _dump(mem: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for layer in LAYERS:
        for rec in mem.recent(layer=layer, limit=10_000):
            out[rec.id] = rec.to_dict()
    return out


def _vectors(mem: Any, ids: list[str]) -> dict[str, bytes]:
    from magray.memory import ids as idcodec

    raws = mem.store.multi_get("vectors", [idcodec.decode(i) for i in ids])
    return dict(zip(ids, raws))


def _roundtrip(src: Any, tmp: Path, clock: FakeClock, vectors: bool) -> None:
    src.export_jsonl(tmp / "out.jsonl", vectors=vectors)
    before = _dump(src)
    with magray.open(tmp / f"copy-{vectors}", embedder="hash", clock=clock) as dst:
        report = dst.import_jsonl(tmp / "out.jsonl")
        assert (report.added, report.skipped, report.errors) == (len(before), 0, [])
        assert _dump(dst) == before
        if vectors:
            assert _vectors(dst, list(before)) == _vectors(src, list(before))


def test_update_to_a_text_the_layer_holds_keeps_both_through_export(
    tmp_path: Path, clock: FakeClock
) -> None:
    with magray.open(tmp_path / "s", embedder="hash", clock=clock) as mem:
        a = mem.add("standup is at 9:30")
        b = mem.add("standup is at 10:00")
        mem.update(b, text="standup is at 9:30")
        assert mem.add("standup is at 9:30") == a  # add still returns the first holder
        _roundtrip(mem, tmp_path, clock, vectors=False)
        mem.delete(a)  # the next holder takes over the text
        assert mem.add("standup is at 9:30") == b


def test_update_into_a_layer_that_holds_the_text_keeps_both(
    tmp_path: Path, clock: FakeClock
) -> None:
    with magray.open(tmp_path / "s", embedder="hash", clock=clock) as mem:
        a = mem.add("the deploy key is in the vault", layer="insights")
        b = mem.add("the deploy key is in the vault")
        mem.update(b, layer="insights")
        _roundtrip(mem, tmp_path, clock, vectors=True)
        assert mem.add("the deploy key is in the vault", layer="insights") == a


def test_metadata_keys_json_cannot_keep_are_refused(tmp_path: Path) -> None:
    with magray.open(tmp_path / "s", embedder="hash") as mem:
        for bad in ({1: "one"}, {"a": {2.5: "x"}}, {"a": [{None: 1}]}, {(1, 2): "t"}):
            with pytest.raises(magray.InvalidInputError, match="keys must be str"):
                mem.add("metadata with a bad key", metadata=bad)
        rid = mem.add("fine", metadata={"1": "one"})
        with pytest.raises(magray.InvalidInputError, match="keys must be str"):
            mem.update(rid, metadata={True: 1})
        assert mem.get(rid).metadata == {"1": "one"}  # type: ignore[union-attr]
        assert mem.stats()["records"] == 1


def test_metadata_that_looks_like_the_export_wrappers_round_trips(
    tmp_path: Path, clock: FakeClock
) -> None:
    meta = {
        "raw": b"\x00\xff",
        "fake": {"$bytes": "AAE="},
        "nested": {"$dict": {"$bytes": "x"}},
        "list": [{"$bytes": "not base64!"}, b"b"],
        "float": 0.1,
        "big": 2**62,
    }
    with magray.open(tmp_path / "s", embedder="hash", clock=clock) as mem:
        mem.add("wrapped metadata", metadata=meta)
        _roundtrip(mem, tmp_path, clock, vectors=False)


TEXTS = ["alpha beta", "Alpha beta!", "gamma delta", "epsilon", "zeta eta theta"]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(TEXTS), st.sampled_from(LAYERS)),
        st.tuples(st.just("text"), st.integers(0, 50), st.sampled_from(TEXTS)),
        st.tuples(st.just("layer"), st.integers(0, 50), st.sampled_from(LAYERS)),
        st.tuples(
            st.just("fields"),
            st.integers(0, 50),
            st.sampled_from([0.0, 0.85, 0.97]),
            st.sampled_from([{}, {"k": [1, "v"]}, {"b": b"\x01"}]),
        ),
        st.tuples(st.just("delete"), st.integers(0, 50)),
        st.tuples(st.just("promote"), st.integers(0, 3)),
    ),
    max_size=25,
)


@settings(max_examples=25)
@given(ops)
def test_export_import_round_trips_any_history(history: list[tuple[Any, ...]]) -> None:
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        with magray.open(tmp / "s", embedder="hash", clock=clock) as mem:
            ids: list[str] = []
            for op in history:
                clock.advance(61.0)
                live = [i for i in ids if mem.get(i) is not None]
                kind = op[0]
                if kind == "add":
                    ids.append(mem.add(op[1], layer=op[2]))
                elif kind == "promote":
                    clock.advance(op[1] * 86400.0 * 4)
                    mem.promote()
                elif not live:
                    continue
                elif kind == "text":
                    mem.update(live[op[1] % len(live)], text=op[2])
                elif kind == "layer":
                    mem.update(live[op[1] % len(live)], layer=op[2])
                elif kind == "fields":
                    mem.update(live[op[1] % len(live)], importance=op[2], metadata=op[3])
                elif kind == "delete":
                    mem.delete(live[op[1] % len(live)])
            for i in ids[::2]:
                if mem.get(i) is not None:
                    mem.search(vector=np.ones(mem.dim, np.float32), k=3)
            _roundtrip(mem, tmp, clock, vectors=False)
            _roundtrip(mem, tmp, clock, vectors=True)
