"""The duplicate-text index: which records of a layer hold a given text.

Key ``layer(1) hash128(text)(16)`` in the ``texthash`` family; the value is the 16-byte
ids of every record of that layer with that text, first holder first (a store written
before holders were listed keeps one id per key, which reads as a list of one).

``add`` of a text that a layer already holds returns the first holder instead of storing
it again. ``update``, promotion and import never merge records, so a layer may hold a
text more than once; listing every holder keeps the rule exact when the first one is
deleted, changed or moved: the next holder takes its place.
"""

from __future__ import annotations

from typing import Any

from magray.memory.store import Store

ID_BYTES = 16


def first_holder(value: bytes | None) -> bytes | None:
    """The first id of a texthash value (None for no value)."""
    return None if not value else bytes(value[:ID_BYTES])


def _split(value: bytes | None) -> list[bytes]:
    if not value:
        return []
    return [bytes(value[i : i + ID_BYTES]) for i in range(0, len(value), ID_BYTES)]


class TextHolders:
    """Changes to texthash keys gathered for one WriteBatch.

    Several records of one batch may share a key (two duplicates deleted or moved
    together), so every change reads the key's holders once and works on that list;
    :meth:`write` puts the final lists into the batch.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lists: dict[bytes, list[bytes]] = {}
        self._dirty: set[bytes] = set()

    def load(self, keys: list[bytes]) -> None:
        """Read the holders of many keys in one multi_get (optional; speeds up bulk work)."""
        todo = [k for k in dict.fromkeys(keys) if k not in self._lists]
        for key, value in zip(todo, self._store.multi_get("texthash", todo)):
            self._lists[key] = _split(value)

    def _holders(self, key: bytes) -> list[bytes]:
        found = self._lists.get(key)
        if found is None:
            found = self._lists[key] = _split(self._store.get("texthash", key))
        return found

    def first(self, key: bytes) -> bytes | None:
        """The record that add() treats as the text's existing copy, or None."""
        holders = self._holders(key)
        return holders[0] if holders else None

    def add(self, key: bytes, rid: bytes) -> None:
        holders = self._holders(key)
        if rid not in holders:
            holders.append(rid)
            self._dirty.add(key)

    def remove(self, key: bytes, rid: bytes) -> None:
        holders = self._holders(key)
        if rid in holders:
            holders.remove(rid)
            self._dirty.add(key)

    def write(self, batch: Any) -> None:
        handle = self._store.handle["texthash"]
        for key in self._dirty:
            holders = self._lists[key]
            if holders:
                batch.put(key, b"".join(holders), handle)
            else:
                batch.delete(key, handle)
