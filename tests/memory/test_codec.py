"""StoredRecord -> Record: every field lands under its own name."""

from __future__ import annotations

import dataclasses

from magray.memory import ids
from magray.memory.codec import (
    StoredRecord,
    layer_time_key,
    lifecycle_summary,
    record_of,
    with_access,
)
from magray.memory.record import Layer, Record


def test_to_record_maps_every_field_by_name() -> None:
    raw = ids.new_id()
    fields = {
        "layer": Layer.INSIGHTS,
        "kind": "fact",
        "tags": ["a", "b"],
        "project": "proj",
        "session": "sess",
        "metadata": {"k": 1},
        "importance": 0.25,
    }
    stored = StoredRecord.create(
        raw, "the text", fields, created=10.0, updated=20.0, last_access=30.0,
        access_count=4, fingerprint="fp", label=7, layer_since=15.0,
    )  # fmt: skip
    rec = stored.to_record(extra_access=2, last_access=40.0)
    assert dataclasses.asdict(rec) == dataclasses.asdict(
        Record(
            id=ids.encode(raw), text="the text", layer=Layer.INSIGHTS, kind="fact",
            tags=("a", "b"), project="proj", session="sess", metadata={"k": 1},
            created_at=10.0, updated_at=20.0, last_access=40.0, access_count=6,
            importance=0.25, fingerprint="fp", layer_since=15.0,
        )
    )  # fmt: skip
    # Every field distinct, so a swapped pair could not pass.
    values = [repr(v) for v in dataclasses.astuple(rec)]
    assert len(set(values)) == len(values)
    assert stored.to_record().last_access == 30.0


def test_record_of_a_stored_value_is_to_record() -> None:
    raw = ids.new_id()
    fields = {
        "layer": Layer.ASSETS, "kind": "doc", "tags": ["t"], "project": None,
        "session": "s", "metadata": {"a": [1, 2]}, "importance": 0.9,
    }  # fmt: skip
    stored = StoredRecord.create(
        raw, "text", fields, created=1.5, updated=2.5, last_access=3.5, access_count=1,
        fingerprint="fp", label=3, layer_since=2.0,
    )  # fmt: skip
    value = stored.encode()
    assert record_of(raw, value) == stored.to_record()
    assert record_of(raw, value, 3, 9.0) == stored.to_record(3, 9.0)
    assert record_of(raw, value, 1, 1.0).last_access == 3.5  # never moves back


def test_with_access_is_decode_add_encode() -> None:
    raw = ids.new_id()
    fields = {
        "layer": Layer.INSIGHTS, "kind": "note", "tags": ["x"], "project": "p",
        "session": None, "metadata": {}, "importance": 0.4,
    }  # fmt: skip
    stored = StoredRecord.create(
        raw, "t", fields, created=1_700_000_000.123, last_access=1_700_000_050.0,
        access_count=2, layer_since=1_700_000_010.0,
    )  # fmt: skip
    for count, last in ((3, 1_700_000_100.0), (1, 1_600_000_000.0)):  # later, and earlier
        value, key, summary = with_access(raw, stored.encode(), count, last)
        expect = StoredRecord.decode(raw, stored.encode())
        expect.access_count += count
        expect.last_access = max(expect.last_access, last)
        assert value == expect.encode()
        assert key == layer_time_key(expect.layer, expect.created_at, raw)
        assert summary == lifecycle_summary(expect)
