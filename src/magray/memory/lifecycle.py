"""Lifecycle rules: what moves to a more lasting layer, what expires, and re-embedding.

All thresholds come from MemoryConfig; time comes from the store's clock or the ``now``
passed in, so the rules are tested in milliseconds.

- interact -> insights when ``access_count >= promote_access_count`` or
  ``importance >= promote_importance``; checked before anything expires.
- insights -> assets when (``access_count >= assets_access_count`` and the record is at
  least ``assets_min_age`` old) or ``importance >= assets_importance``. A record that
  qualifies for both steps makes both in one run.
- A record expires when its layer's TTL has passed since it was last used or entered the
  layer, whichever is later: interact 24 h, insights 90 days, assets never.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING

from magray.memory.codec import StoredRecord, vector_bytes
from magray.memory.record import Layer

if TYPE_CHECKING:
    from magray.memory.engine import Memory


def _to_assets(mem: Memory, rec: StoredRecord, now: float) -> str | None:
    c = mem.config
    if rec.importance >= c.assets_importance:
        return f"importance {rec.importance:g} >= {c.assets_importance:g}"
    if rec.access_count >= c.assets_access_count and now - rec.created_at >= c.assets_min_age:
        return (
            f"used {rec.access_count} times (>= {c.assets_access_count}) and "
            f"{(now - rec.created_at) / 86400:.1f} days old"
        )
    return None


def _to_insights(mem: Memory, rec: StoredRecord) -> str | None:
    c = mem.config
    if rec.access_count >= c.promote_access_count:
        return f"used {rec.access_count} times (>= {c.promote_access_count})"
    if rec.importance >= c.promote_importance:
        return f"importance {rec.importance:g} >= {c.promote_importance:g}"
    return None


def promotions(mem: Memory, now: float) -> list[tuple[StoredRecord, Layer, str]]:
    """(record, target layer, reason) for every record that should move up."""
    planned = []
    for rec in mem._records_of(Layer.INTERACT):
        why = _to_insights(mem, rec)
        if why is None:
            continue
        further = _to_assets(mem, rec, now)
        if further is not None:
            planned.append((rec, Layer.ASSETS, f"{why}; then {further}"))
        else:
            planned.append((rec, Layer.INSIGHTS, why))
    for rec in mem._records_of(Layer.INSIGHTS):
        why = _to_assets(mem, rec, now)
        if why is not None:
            planned.append((rec, Layer.ASSETS, why))
    return planned


def expirations(mem: Memory, now: float) -> list[tuple[StoredRecord, str]]:
    """(record, reason) for every record whose layer TTL has run out."""
    out = []
    for layer in (Layer.INTERACT, Layer.INSIGHTS):
        ttl = mem._ttl(layer)
        for rec in mem._records_of(layer):
            if now - max(rec.layer_since, rec.last_access) > ttl:
                out.append((rec, f"unused for more than {ttl / 86400:g} days"))
    return out


def reembed_all(mem: Memory, progress: Callable[[int, int], None] | None, batch_size: int) -> int:
    """Give every record a vector from mem's embedder. Each batch is durable and records
    already converted are skipped, so an interrupted run resumes where it stopped."""
    e = mem._embedder
    if e is None:
        from magray.errors import InvalidInputError

        raise InvalidInputError("reembed needs an embedder; open the store with one")
    target = e.fingerprint
    if target == mem.fingerprint and mem._reembed_target in (None, target):
        return 0
    s = mem.store
    with mem._wlock:
        b = s.batch()
        s.put_meta(b, "reembed_target", target)
        s.write(b)
        mem._reembed_target = target
    total = sum(1 for layer in Layer for _ in s.scan("layer_time", bytes((layer.code,))))
    done = converted = 0
    for layer in Layer:
        todo: list[StoredRecord] = []

        def flush() -> None:
            nonlocal converted
            if not todo:
                return
            vecs = e.embed([r.text for r in todo])
            with mem._wlock:
                b = s.batch()
                for rec, v in zip(todo, vecs):
                    rec.fingerprint = target
                    b.put(rec.raw_id, rec.encode(), s.handle["records"])
                    b.put(rec.raw_id, vector_bytes(v), s.handle["vectors"])
                s.write(b)
            converted += len(todo)
            todo.clear()

        for rec in mem._records_of(layer):
            done += 1
            if rec.fingerprint != target:
                todo.append(rec)
                if len(todo) >= batch_size:
                    flush()
            if progress is not None:
                progress(done, total)
        flush()
    with mem._wlock:
        b = s.batch()
        s.put_meta(b, "dim", e.dim)
        s.put_meta(b, "fingerprint", target)
        s.put_meta(b, "embedder", e.name)
        b.delete(b"reembed_target", s.handle["meta"])
        s.write(b)
        mem.dim = e.dim
        mem.fingerprint = target
        mem._reembed_target = None
        # Every index is derived from the old vectors: rebuild them from the store.
        shutil.rmtree(mem.path / "index", ignore_errors=True)
        mem._layers = {}
        mem._open_indexes()
    return converted
