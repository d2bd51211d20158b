"""make_record and make_hit: the fast constructors search uses must build exactly the
objects the dataclass constructors build."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from magray.memory.record import Hit, Layer, Record, make_hit, make_record

_fields = st.tuples(
    st.text(min_size=1, max_size=26),
    st.text(max_size=50),
    st.sampled_from(list(Layer)),
    st.text(max_size=10),
    st.lists(st.text(max_size=8), max_size=4).map(tuple),
    st.none() | st.text(max_size=10),
    st.none() | st.text(max_size=10),
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    st.floats(allow_nan=False),
    st.floats(allow_nan=False),
    st.floats(allow_nan=False),
    st.integers(min_value=0, max_value=2**63),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.floats(allow_nan=False),
)


@given(_fields)
def test_make_record_builds_the_record_the_constructor_builds(args: tuple[Any, ...]) -> None:
    fast, slow = make_record(*args), Record(*args)
    assert type(fast) is Record
    assert fast == slow and repr(fast) == repr(slow)
    assert dataclasses.astuple(fast) == dataclasses.astuple(slow)
    assert fast.to_dict() == slow.to_dict()


def test_a_fast_record_is_an_ordinary_frozen_record() -> None:
    args = ("01ID", "text", Layer.ASSETS, "note", ("a",), "p", None, {"k": 1}, 1.0, 2.0, 3.0, 4,
            0.5, "fp", 5.0)  # fmt: skip
    r = make_record(*args)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.text = "changed"  # type: ignore[misc]
    assert dataclasses.replace(r, text="other") == Record(*args[:1], "other", *args[2:])
    assert pickle.loads(pickle.dumps(r)) == r
    assert copy.deepcopy(r) == r
    assert dataclasses.asdict(r)["metadata"] == {"k": 1}

    h = make_hit(r.id, 0.25, r.layer, r, {"vector": 0.25})
    assert type(h) is Hit and h == Hit(r.id, 0.25, r.layer, r, {"vector": 0.25})
    with pytest.raises(dataclasses.FrozenInstanceError):
        h.score = 1.0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(h)) == h
