"""A store's instruments: latency histograms and counters (when a Metrics registry is
attached) and one structured log line per operation.

Every method is a no-op until :meth:`Instruments.attach` is called or INFO logging is
enabled, so that an embedded store pays nothing for what nobody reads.
"""

from __future__ import annotations

import logging
from typing import Any

from magray.memory.store import Store

_LOG = logging.getLogger("magray.memory")


class Instruments:
    """Histograms (seconds), counters and the operation log of one store."""

    def __init__(self) -> None:
        self.metrics: Any = None  # a magray.ops.metrics.Metrics, once attached
        self._timers: dict[str, Any] = {}
        self._counters: dict[str, Any] = {}

    def attach(self, metrics: Any) -> None:
        """Record latencies of add, search, embed and cache lookups, and counts of
        records added, searches, texts embedded and cache hits, in metrics."""
        self._timers = {
            "add": metrics.histogram("add_seconds", "add_many latency (seconds)"),
            "search": metrics.histogram("search_seconds", "search latency (seconds)"),
            "embed": metrics.histogram("embed_seconds", "model inference per batch (seconds)"),
            "cache": metrics.histogram(
                "cache_seconds", "embedding cache lookup per batch (seconds)"
            ),
        }
        self._counters = {
            "added": metrics.counter("records_added", "records stored"),
            "searches": metrics.counter("searches", "searches answered"),
            "embedded": metrics.counter("texts_embedded", "texts run through the model"),
            "cache_hits": metrics.counter("cache_hits", "embeddings served from the cache"),
        }
        self.metrics = metrics  # last: count() reads the counters once this is set

    def observe(self, name: str, seconds: float) -> None:
        """One latency of the histogram name ("add", "search", "embed", "cache")."""
        timer = self._timers.get(name)
        if timer is not None:
            timer.observe(seconds)

    def count(self, name: str, n: int = 1) -> None:
        """Add n to the counter name ("added", "searches", "embedded", "cache_hits")."""
        if self.metrics is not None and n:
            self._counters[name].inc(n)

    @staticmethod
    def log(op: str, seconds: float, ids: Any = (), **fields: Any) -> None:
        """One structured INFO line per operation: duration and ids, never full texts."""
        if _LOG.isEnabledFor(logging.INFO):
            from magray.ops.logging import log_op

            log_op(_LOG, op, duration_s=seconds, ids=ids, **fields)

    def history(self, store: Store) -> dict[str, Any] | None:
        """The metrics persisted in store by earlier processes, merged with this one's;
        None when there are neither."""
        from magray.ops.metrics import Metrics

        merged = Metrics()
        saved = store.meta("metrics")
        if saved is not None:
            try:
                merged.merge(saved)
            except ValueError:  # written by another version: start afresh
                saved = None
        if self.metrics is not None:
            merged.merge(self.metrics.snapshot())
        return merged.snapshot() if saved is not None or self.metrics is not None else None

    def persist(self, store: Store) -> None:
        """Keep this process's metrics in store, merged into the history (on close)."""
        if self.metrics is None:
            return
        snap = self.history(store)
        if snap is None:
            return
        b = store.batch()
        store.put_meta(b, "metrics", snap)
        store.write(b, durable=False)
