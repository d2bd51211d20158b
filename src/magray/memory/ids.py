"""Time-sortable 128-bit record ids.

Layout (as ULID): 48 bits of Unix time in milliseconds, then 80 random bits, written as
26 characters of Crockford base32. Ids made in the same millisecond by one process are
strictly increasing (the random part is incremented), so sorting ids sorts by creation.
"""

from __future__ import annotations

import os
import threading
import time

from magray import _native

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_DECODE.update({c.lower(): i for c, i in list(_DECODE.items())})
_DECODE.update({"I": 1, "i": 1, "L": 1, "l": 1, "O": 0, "o": 0})

_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def new_id(now_ms: int | None = None) -> bytes:
    """A fresh 16-byte id; monotonic within this process."""
    global _last_ms, _last_rand
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            _last_rand = (_last_rand + 1) & ((1 << 80) - 1)
            if _last_rand == 0:  # 2**80 ids in one millisecond: borrow the next one
                ms += 1
        else:
            _last_rand = int.from_bytes(os.urandom(10), "big")
        _last_ms = ms
        value = (ms << 80) | _last_rand
    return value.to_bytes(16, "big")


_VALID = frozenset(_DECODE)


def encode(raw: bytes) -> str:
    """The 26-character text form of a 16-byte id (native: it runs once per search
    hit). Raises ValueError if raw is not 16 bytes."""
    return _native.ulid_encode(raw)


def decode(text: str) -> bytes:
    """The 16 bytes of an id's text form; raises ValueError if it is not one."""
    if not isinstance(text, str) or len(text) != 26:
        raise ValueError(f"{text!r} is not a magray id (26 characters of Crockford base32)")
    if not _VALID.issuperset(text):
        bad = next(ch for ch in text if ch not in _VALID)
        raise ValueError(f"{text!r} is not a magray id: {bad!r} is not base32")
    value = 0
    for ch in text:
        value = (value << 5) | _DECODE[ch]
    if value >> 128:
        raise ValueError(f"{text!r} is not a magray id: it overflows 128 bits")
    return value.to_bytes(16, "big")
