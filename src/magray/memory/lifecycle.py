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
from typing import Any

import numpy as np

from magray.config import MemoryConfig
from magray.memory.codec import StoredRecord, Summaries
from magray.memory.record import Layer

# The records of one layer whose summary the mask function accepts (the engine reads only
# those records); the rules are then applied to the records themselves.
RecordsOf = Callable[[Layer, Callable[[Summaries], np.ndarray]], Iterable[StoredRecord]]

# Each rule is one expression over the fields it reads, so the same definition runs on a
# record (Python scalars: a bool) and on Summaries columns (arrays: a boolean mask).


def _insights_due(c: MemoryConfig, r: Any) -> Any:
    return (r.access_count >= c.promote_access_count) | (r.importance >= c.promote_importance)


def _assets_due(c: MemoryConfig, r: Any, now: float) -> Any:
    return (r.importance >= c.assets_importance) | (
        (r.access_count >= c.assets_access_count) & (now - r.created_at >= c.assets_min_age)
    )


def promotable(c: MemoryConfig, layer: Layer, r: Any) -> Any:
    """Whether a record of layer may be promoted now or once it is old enough: the
    promotion rules without their age condition (r: a record, or Summaries columns).

    The store keeps a ``promotable`` key for exactly the records of which this holds, so
    planning a promotion reads those records alone instead of scanning the layer."""
    if layer is Layer.INTERACT:
        return _insights_due(c, r)
    if layer is Layer.INSIGHTS:
        return _assets_due(c, r, math.inf)  # as if far in the future: every age passes
    return False  # assets is the last layer


def promotable_rule(c: MemoryConfig) -> list[float]:
    """The thresholds :func:`promotable` reads; the store's ``promotable`` keys were made
    under the rule it records, and are remade when a store opens under another."""
    return [
        c.promote_access_count,
        c.promote_importance,
        c.assets_access_count,
        c.assets_importance,
    ]


def _stale(r: Any, now: float, limit: float) -> Any:
    return now - np.maximum(r.layer_since, r.last_access) > limit


def _to_assets(c: MemoryConfig, rec: StoredRecord, now: float) -> str | None:
    if not _assets_due(c, rec, now):
        return None
    if rec.importance >= c.assets_importance:
        return f"importance {rec.importance:g} >= {c.assets_importance:g}"
    return (
        f"used {rec.access_count} times (>= {c.assets_access_count}) and "
        f"{(now - rec.created_at) / 86400:.1f} days old"
    )


def _to_insights(c: MemoryConfig, rec: StoredRecord) -> str | None:
    if not _insights_due(c, rec):
        return None
    if rec.access_count >= c.promote_access_count:
        return f"used {rec.access_count} times (>= {c.promote_access_count})"
    return f"importance {rec.importance:g} >= {c.promote_importance:g}"


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
    for rec in records_of(Layer.INTERACT, lambda s: _insights_due(config, s)):
        why = _to_insights(config, rec)
        if why is None:
            continue
        further = _to_assets(config, rec, now)
        if further is not None:
            planned.append((rec, Layer.ASSETS, f"{why}; then {further}"))
        else:
            planned.append((rec, Layer.INSIGHTS, why))
    for rec in records_of(Layer.INSIGHTS, lambda s: _assets_due(config, s, now)):
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
        for rec in records_of(layer, lambda s, limit=limit: _stale(s, now, limit)):  # type: ignore[misc]
            if _stale(rec, now, limit):
                out.append((rec, f"unused for more than {limit / 86400:g} days"))
    return out
