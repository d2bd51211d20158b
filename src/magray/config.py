"""Settings of a memory store. Every value has a default and is validated on creation."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from magray.errors import InvalidInputError

DAY = 86_400.0


@dataclass(frozen=True)
class MemoryConfig:
    """Lifecycle rules, index parameters and limits. Times are in seconds."""

    # Lifecycle: time to live without use, per layer (assets never expire).
    ttl_interact: float = 1 * DAY
    ttl_insights: float = 90 * DAY
    # interact -> insights when used this often, or this important (checked before expiry).
    promote_access_count: int = 3
    promote_importance: float = 0.8
    # insights -> assets when used this often and at least this old, or this important.
    assets_access_count: int = 10
    assets_min_age: float = 7 * DAY
    assets_importance: float = 0.95

    # hnswlib, one index per layer, inner product on unit vectors.
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 64  # at least k is always used; recall@10 >= 0.99 measured at 100k
    # Layers with fewer records than this are searched exactly (native top-k): faster there.
    exact_threshold: int = 4096
    # Rebuild an index once more than this share of its elements are deleted.
    rebuild_deleted_fraction: float = 0.2
    # Save an index snapshot after this many changes to it (and always on close).
    index_save_every: int = 20_000
    # Threads hnswlib may use for bulk inserts (0: one per CPU).
    index_threads: int = 0
    # Search the graphs of several layers at the same time (they release the GIL).
    parallel_search: bool = True

    # The embedding cache: L1 in memory, L2 in the store (both bounded in bytes).
    cache_l1_bytes: int = 64 << 20
    cache_l2_bytes: int = 1 << 30

    # Limits and durability.
    max_text_bytes: int = 1 << 20
    sync_writes: bool = True  # fsync the write-ahead log on every write: survives power loss
    access_flush_seconds: float = 1.0  # batched access statistics reach the store this often

    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.type in ("float", "int") and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise InvalidInputError(f"config {f.name}={value!r} must be a number")
        positive = (
            "ttl_interact",
            "ttl_insights",
            "hnsw_m",
            "hnsw_ef_construction",
            "hnsw_ef_search",
            "max_text_bytes",
            "index_save_every",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"config {name}={getattr(self, name)!r} must be > 0")
        for name in ("promote_importance", "assets_importance", "rebuild_deleted_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"config {name}={value!r} must be in [0, 1]")
        for name in (
            "promote_access_count",
            "assets_access_count",
            "exact_threshold",
            "index_threads",
            "assets_min_age",
            "access_flush_seconds",
            "cache_l1_bytes",
            "cache_l2_bytes",
        ):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"config {name}={getattr(self, name)!r} must be >= 0")

    def replace(self, **changes: Any) -> MemoryConfig:
        """A copy with some values changed (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            valid = ", ".join(sorted(f.name for f in dataclasses.fields(self) if f.name != "extra"))
            raise InvalidInputError(f"unknown config key(s) {sorted(unknown)}; valid keys: {valid}")
        return dataclasses.replace(self, **changes)

    @property
    def threads(self) -> int:
        return self.index_threads or (os.cpu_count() or 1)


def coerce_config(config: MemoryConfig | dict[str, Any] | None) -> MemoryConfig:
    if config is None:
        return MemoryConfig()
    if isinstance(config, MemoryConfig):
        return config
    if isinstance(config, dict):
        return MemoryConfig().replace(**config)
    raise InvalidInputError(f"config must be a MemoryConfig or a dict, not {type(config).__name__}")
