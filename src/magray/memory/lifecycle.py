"""Lifecycle rules: what moves to a more lasting layer and what expires.

Pure functions of the records, the MemoryConfig thresholds and ``now`` (the store's
clock or a time passed in, so the rules are tested in milliseconds); the engine applies
what they return.

- interact -> insights when ``access_count >= promote_access_count`` or
  ``importance >= promote_importance``; checked before anything expires.
- insights -> assets when (``access_count >= assets_access_count`` and the record is at
  least ``assets_min_age`` old) or ``importance >= assets_importance``. A record that
  qualifies for both steps makes both in one run.
- A record expires when its layer's TTL has passed since it was last used or entered the
  layer, whichever is later: interact 24 h, insights 90 days, assets never.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from magray.config import MemoryConfig
from magray.memory.codec import StoredRecord
from magray.memory.record import Layer

RecordsOf = Callable[[Layer], Iterable[StoredRecord]]  # the records of one layer


def _to_assets(c: MemoryConfig, rec: StoredRecord, now: float) -> str | None:
    if rec.importance >= c.assets_importance:
        return f"importance {rec.importance:g} >= {c.assets_importance:g}"
    if rec.access_count >= c.assets_access_count and now - rec.created_at >= c.assets_min_age:
        return (
            f"used {rec.access_count} times (>= {c.assets_access_count}) and "
            f"{(now - rec.created_at) / 86400:.1f} days old"
        )
    return None


def _to_insights(c: MemoryConfig, rec: StoredRecord) -> str | None:
    if rec.access_count >= c.promote_access_count:
        return f"used {rec.access_count} times (>= {c.promote_access_count})"
    if rec.importance >= c.promote_importance:
        return f"importance {rec.importance:g} >= {c.promote_importance:g}"
    return None


def ttl(config: MemoryConfig, layer: Layer) -> float:
    """Seconds a record of layer lives unused (infinite for assets)."""
    if layer is Layer.INTERACT:
        return config.ttl_interact
    if layer is Layer.INSIGHTS:
        return config.ttl_insights
    return math.inf


def promotions(
    records_of: RecordsOf, config: MemoryConfig, now: float
) -> list[tuple[StoredRecord, Layer, str]]:
    """(record, target layer, reason) for every record that should move up."""
    planned = []
    for rec in records_of(Layer.INTERACT):
        why = _to_insights(config, rec)
        if why is None:
            continue
        further = _to_assets(config, rec, now)
        if further is not None:
            planned.append((rec, Layer.ASSETS, f"{why}; then {further}"))
        else:
            planned.append((rec, Layer.INSIGHTS, why))
    for rec in records_of(Layer.INSIGHTS):
        why = _to_assets(config, rec, now)
        if why is not None:
            planned.append((rec, Layer.ASSETS, why))
    return planned


def expirations(
    records_of: RecordsOf, config: MemoryConfig, now: float
) -> list[tuple[StoredRecord, str]]:
    """(record, reason) for every record whose layer TTL has run out."""
    out = []
    for layer in (Layer.INTERACT, Layer.INSIGHTS):
        limit = ttl(config, layer)
        for rec in records_of(layer):
            if now - max(rec.layer_since, rec.last_access) > limit:
                out.append((rec, f"unused for more than {limit / 86400:g} days"))
    return out
