from __future__ import annotations

import random

import numpy as np
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from magray.kernels import hash128, hash128_many

SEEDS = [0, 1, 0x9E3779B185EBCA87, 2**64 - 1, 2**32, 12345678901234567]


def oracle(data: bytes, seed: int = 0) -> bytes:
    return xxhash.xxh3_128_digest(data, seed=seed)


def test_every_short_and_mid_length(isa: str) -> None:
    rng = random.Random(7)
    blob = bytes(rng.getrandbits(8) for _ in range(2200))
    for seed in SEEDS:
        for n in range(0, 2200):
            assert hash128(blob[:n], seed=seed) == oracle(blob[:n], seed), (n, seed)


def test_long_inputs_across_stripes_and_blocks(isa: str) -> None:
    rng = np.random.default_rng(3)
    blob = rng.integers(0, 256, size=3 * 1024 * 1024 + 77, dtype=np.uint8).tobytes()
    # Block size is 1024 bytes with the default secret; stripes are 64 bytes.
    lengths = [4095, 4096, 4097, 16 * 1024 - 1, 16 * 1024 + 64, 65536 + 13, 1_000_003, len(blob)]
    for seed in (0, 7, 2**64 - 1):
        for n in lengths:
            assert hash128(blob[:n], seed=seed) == oracle(blob[:n], seed), (n, seed)


@given(data=st.binary(max_size=5000), seed=st.integers(min_value=0, max_value=2**64 - 1))
def test_matches_xxhash_property(isa: str, data: bytes, seed: int) -> None:
    assert hash128(data, seed=seed) == oracle(data, seed)


@given(text=st.text(max_size=400), seed=st.integers(min_value=0, max_value=2**64 - 1))
def test_str_is_hashed_as_utf8(isa: str, text: str, seed: int) -> None:
    assert hash128(text, seed=seed) == oracle(text.encode("utf-8"), seed)


@given(items=st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300)), max_size=50))
def test_many_rows_equal_single(isa: str, items: list[str | bytes]) -> None:
    out = hash128_many(items, seed=5)
    assert out.dtype == np.uint8
    assert out.shape == (len(items), 16)
    for i, item in enumerate(items):
        assert out[i].tobytes() == hash128(item, seed=5)


def test_many_large_batch_releases_gil_path() -> None:
    items = [("x" * (i % 300)) + str(i) for i in range(20_000)]
    out = hash128_many(items)
    for i in (0, 1, 777, 19_999):
        assert out[i].tobytes() == oracle(items[i].encode())


def test_bytes_like_inputs() -> None:
    data = b"hello world" * 100
    assert hash128(bytearray(data)) == oracle(data)
    assert hash128(memoryview(data)) == oracle(data)


def test_rejects_ambiguous_inputs() -> None:
    with pytest.raises(TypeError, match="pass str"):
        hash128(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"items\[1\] is int"):
        hash128_many(["a", 5])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="use hash128"):
        hash128_many("abc")
    with pytest.raises(ValueError, match="seed"):
        hash128(b"x", seed=-1)
    with pytest.raises(ValueError, match="seed"):
        hash128(b"x", seed=2**64)
    with pytest.raises(UnicodeEncodeError):
        hash128("\ud800")


def test_empty_batch() -> None:
    out = hash128_many([])
    assert out.shape == (0, 16)


@pytest.mark.parametrize("wide", ["é", "Ω", "漢", "😀", "\x80", "\uffff", "\U0010ffff"])
def test_every_string_storage_width_and_ascii_run(wide: str) -> None:
    # CPython stores str as latin-1, UCS-2 or UCS-4; ASCII runs of every length around the
    # encoder's 8-byte steps must come out as the same UTF-8 as str.encode().
    items = []
    for run in range(0, 40):
        items += ["a" * run + wide, wide + "b" * run, "c" * run + wide + "d" * (run % 9)]
    out = hash128_many(items)
    for i, s in enumerate(items):
        expected = oracle(s.encode("utf-8"))
        assert out[i].tobytes() == expected, repr(s)
        assert hash128(s) == expected


def test_lone_surrogate_is_refused_like_str_encode() -> None:
    with pytest.raises(UnicodeEncodeError):
        hash128_many(["fine", "bad \ud800 here"])
    with pytest.raises(UnicodeEncodeError):
        hash128("x" * 100_000 + "\udfff")


ALPHABET = "abc xyz" + "éÿ\x80" + "Ωж漢→\uffff" + "😀\U0010ffff"


def test_many_mixed_widths_every_tail_length(isa: str) -> None:
    # Every length 0..80 (all tail sizes of the 16-unit vector step) in each storage width.
    rng = random.Random(11)
    items = []
    for width_chars in ("ab", "abé", "abΩ", "ab😀", ALPHABET):
        for n in range(0, 81):
            items.append("".join(rng.choice(width_chars) for _ in range(n)))
    out = hash128_many(items)
    for i, s in enumerate(items):
        assert out[i].tobytes() == oracle(s.encode("utf-8")), repr(s)


@pytest.mark.parametrize("where", [0, 1, 15, 16, 17, 31, 40])
def test_lone_surrogate_found_at_every_lane(isa: str, where: int) -> None:
    for filler in ("a", "Ω", "😀"):
        s = filler * where + "\udc00" + filler * 5
        with pytest.raises(UnicodeEncodeError):
            hash128_many(["ok", s])
        with pytest.raises(UnicodeEncodeError):
            hash128(s)


def test_tuple_batch_hashed_without_the_gil_still_names_a_bad_item() -> None:
    items = tuple(f"item {i} é" if i % 3 else f"item {i}" for i in range(1000))
    out = hash128_many(items)
    for i in (0, 1, 2, 499, 999):
        assert out[i].tobytes() == oracle(items[i].encode())
    with pytest.raises(TypeError, match=r"items\[700\] is int"):
        hash128_many(items[:700] + (5,) + items[700:])  # type: ignore[operator]
    with pytest.raises(UnicodeEncodeError):
        hash128_many(items[:900] + ("x\ud800",) + items[900:])


def test_str_and_bytes_subclasses_hash_like_their_values() -> None:
    # Instances of subclasses are stored differently from plain str (not "compact"), so the
    # batch reader must follow their data pointer.
    class Name(str):
        pass

    class Blob(bytes):
        pass

    items = [Name("plain"), Name("naïve Ωmega 😀" * 20), Blob(b"\x00\x01" * 200), "x"]
    out = hash128_many(tuple(items * 100))
    for i, item in enumerate(items * 100):
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        assert out[i].tobytes() == oracle(data)
        assert hash128(item) == oracle(data)
