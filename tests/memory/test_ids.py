"""Record ids: the native text form against the ULID specification's arithmetic."""

from __future__ import annotations

import os

import pytest

from magray.memory import ids

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def reference(raw: bytes) -> str:
    """ULID's text form, straight from the spec: 26 digits base 32, most significant first."""
    v = int.from_bytes(raw, "big")
    return "".join(CROCKFORD[(v >> (5 * (25 - i))) & 31] for i in range(26))


@pytest.mark.parametrize(
    "raw", [bytes(16), b"\xff" * 16, bytes(range(16)), b"\x80" + bytes(15), bytes(15) + b"\x01"]
)
def test_edges_match_the_spec(raw: bytes) -> None:
    assert ids.encode(raw) == reference(raw)
    assert ids.decode(ids.encode(raw)) == raw


def test_random_ids_match_the_spec_and_round_trip() -> None:
    for _ in range(2000):
        raw = os.urandom(16)
        assert ids.encode(raw) == reference(raw)
        assert ids.decode(ids.encode(raw)) == raw


def test_text_order_is_creation_order() -> None:
    made = [ids.new_id(now_ms=1_700_000_000_000 + i // 3) for i in range(50)]
    assert sorted(ids.encode(r) for r in made) == [ids.encode(r) for r in made]


@pytest.mark.parametrize("raw", [b"", b"short", bytes(17)])
def test_wrong_length_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        ids.encode(raw)
