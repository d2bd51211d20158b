"""Optional OpenTelemetry spans around the engine's steps (the ``magray[otel]`` extra).

Off by default: :func:`span` then returns one shared no-op context manager, so the hot
path pays a global read and a call. :func:`enable` (the server does, with ``--otlp``)
makes it open real spans from a tracer of the given provider, children of whatever span
is current (an RPC's, on the server):

- ``magray.embed``: a model call for texts the cache did not have (attribute ``texts``);
- ``magray.index.search``: the layer indexes answering a query (``k``, ``layers``);
- ``magray.store.read`` / ``magray.store.write``: RocksDB reads of hits, and batches.
"""

from __future__ import annotations

import contextlib
from typing import Any

_NULL = contextlib.nullcontext()
_tracer: Any = None


def enable(tracer_provider: Any = None) -> None:
    """Open spans from now on, with a tracer of tracer_provider (None: the global one)."""
    global _tracer
    from opentelemetry import trace

    _tracer = trace.get_tracer("magray", tracer_provider=tracer_provider)


def disable() -> None:
    global _tracer
    _tracer = None


def span(name: str, **attributes: Any) -> Any:
    """A context manager for a span named name (a no-op unless tracing is enabled)."""
    if _tracer is None:
        return _NULL
    return _tracer.start_as_current_span(name, attributes=attributes)
