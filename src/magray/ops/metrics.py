"""Counters and latency histograms, with Prometheus output and persistable snapshots.

A :class:`Metrics` registry hands out named :class:`Counter` and :class:`Histogram` objects.
Asking twice for the same name returns the same object, so call sites may simply ask for their
metric where they need it. Every operation is thread-safe.

Histograms
----------
A histogram counts observations (seconds, for latencies) into fixed buckets. Bucket ``i``
holds the observations ``v`` with ``bounds[i - 1] < v <= bounds[i]``; a final overflow bucket
holds everything above the last bound (Prometheus' ``+Inf`` bucket). It also keeps the sum and
the number of observations, and the smallest and largest value seen.

:data:`DEFAULT_LATENCY_BUCKETS` runs from 50 µs to 10 s in 1-2.5-5 steps, fine enough to tell
apart the sub-millisecond operations of an in-process engine and still catch slow outliers.

Percentile estimation
---------------------
``Histogram.percentile(q)`` estimates the ``q``-th percentile (``0 <= q <= 100``) from the
bucket counts alone, the way Prometheus' ``histogram_quantile`` does:

1. The target rank is ``r = q / 100 * count``.
2. Walking the buckets in order with a running cumulative count, the first bucket whose
   cumulative count reaches ``r`` holds the percentile.
3. Inside that bucket the observations are assumed to be spread evenly between its lower
   and upper edge, and the estimate is interpolated linearly::

       estimate = lower + (upper - lower) * (r - count_below) / count_in_bucket

The edges are the bucket's bounds narrowed to the observed range: the lower edge is
``max(previous bound, min seen)`` (the first bucket has no previous bound and uses the minimum)
and the upper edge is ``min(bound, max seen)`` (the overflow bucket uses the maximum). So an
estimate is never outside the values actually observed, ``percentile(0)`` is the minimum,
``percentile(100)`` the maximum, and the error is at most the width of one bucket.

Persistence
-----------
:meth:`Metrics.snapshot` returns plain JSON-able data (dicts, lists, numbers, strings). A
snapshot saved by one process can be added into the registry of the next one with
:meth:`Metrics.merge` (or loaded into a fresh one with :meth:`Metrics.from_snapshot`):
counter values, bucket counts, sums and counts are added, minimum and maximum combined.
Histograms are only merged when their bucket bounds are identical; otherwise
:class:`BucketMismatchError` is raised and nothing at all is merged.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = [
    "DEFAULT_LATENCY_BUCKETS",
    "PROMETHEUS_CONTENT_TYPE",
    "BucketMismatchError",
    "Counter",
    "Histogram",
    "Metrics",
    "SnapshotError",
]

#: Upper bounds, in seconds, of the default latency buckets (the ``+Inf`` bucket is implicit).
DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: The HTTP ``Content-Type`` of :meth:`Metrics.render_prometheus` output.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PREFIX = "magray_"
SNAPSHOT_VERSION = 1

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class SnapshotError(ValueError):
    """A snapshot is malformed or of an unknown version; nothing was merged."""


class BucketMismatchError(SnapshotError):
    """A histogram in a snapshot has other bucket bounds than the registry's; nothing merged."""


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid metric name {name!r}: use letters, digits, '_' and ':', "
            "not starting with a digit"
        )
    return name


def _normalise_buckets(buckets: Iterable[float]) -> tuple[float, ...]:
    bounds = [float(b) for b in buckets]
    if bounds and math.isinf(bounds[-1]) and bounds[-1] > 0:
        bounds.pop()  # the +Inf bucket is always there
    if not bounds:
        raise ValueError("a histogram needs at least one finite bucket bound")
    for b in bounds:
        if not math.isfinite(b):
            raise ValueError(f"bucket bounds must be finite numbers, got {b!r}")
    for lo, hi in zip(bounds, bounds[1:]):
        if not lo < hi:
            raise ValueError(f"bucket bounds must be strictly increasing, got {lo!r} then {hi!r}")
    return tuple(bounds)


class Counter:
    """A monotonically increasing count (of operations, items, errors...)."""

    kind = "counter"

    def __init__(self, name: str, help: str) -> None:
        self.name = name
        self.help = help
        self._lock = threading.Lock()
        self._value = 0

    def inc(self, n: int = 1) -> None:
        """Add ``n`` (a non-negative integer) to the counter."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"counter increments are integers, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"a counter only goes up; cannot add {n}")
        with self._lock:
            self._value += n

    @property
    def value(self) -> int:
        """The current count."""
        with self._lock:
            return self._value

    def _add_state(self, value: int) -> None:
        with self._lock:
            self._value += value

    def __repr__(self) -> str:
        return f"Counter({self.name!r}, value={self.value})"


class Histogram:
    """A distribution of observed values (seconds, for latencies) over fixed buckets.

    See the module documentation for the bucket layout and how percentiles are estimated.
    """

    kind = "histogram"

    def __init__(
        self, name: str, help: str, buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS
    ) -> None:
        self.name = name
        self.help = help
        self.buckets: tuple[float, ...] = _normalise_buckets(buckets)
        self._lock = threading.Lock()
        # Non-cumulative counts; the last entry is the +Inf (overflow) bucket.
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0
        self._count = 0
        self._min: float | None = None
        self._max: float | None = None

    def _index(self, value: float) -> int:
        # Linear scan: bucket lists are short, and most latencies fall in the first few.
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                return i
        return len(self.buckets)

    def observe(self, value: float) -> None:
        """Record one observation (for latencies: a duration in seconds)."""
        v = float(value)
        if math.isnan(v):
            raise ValueError("cannot observe NaN")
        i = self._index(v)
        with self._lock:
            self._counts[i] += 1
            self._sum += v
            self._count += 1
            if self._min is None or v < self._min:
                self._min = v
            if self._max is None or v > self._max:
                self._max = v

    @contextmanager
    def time(self) -> Iterator[None]:
        """Observe the wall-clock duration of a ``with`` block, also when it raises."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - start)

    @property
    def count(self) -> int:
        """The number of observations."""
        with self._lock:
            return self._count

    @property
    def sum(self) -> float:
        """The sum of all observations."""
        with self._lock:
            return self._sum

    @property
    def min(self) -> float | None:
        """The smallest observation, or None before the first one."""
        with self._lock:
            return self._min

    @property
    def max(self) -> float | None:
        """The largest observation, or None before the first one."""
        with self._lock:
            return self._max

    @property
    def mean(self) -> float | None:
        """The mean of the observations, or None before the first one."""
        with self._lock:
            return self._sum / self._count if self._count else None

    def bucket_counts(self) -> list[int]:
        """Per-bucket (non-cumulative) counts, the ``+Inf`` bucket last."""
        with self._lock:
            return list(self._counts)

    def percentile(self, q: float) -> float | None:
        """Estimate the ``q``-th percentile (``0 <= q <= 100``); None when nothing observed.

        Linear interpolation inside the bucket that holds the target rank, with the bucket
        edges narrowed to the observed minimum and maximum (see the module documentation).
        """
        q = float(q)
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"a percentile is between 0 and 100, got {q!r}")
        with self._lock:
            counts = list(self._counts)
            total = self._count
            lo_seen = self._min
            hi_seen = self._max
        if total == 0 or lo_seen is None or hi_seen is None:
            return None
        if q == 0.0:
            return lo_seen
        rank = q / 100.0 * total
        below = 0
        for i, c in enumerate(counts):
            if c == 0:
                continue
            if below + c >= rank:
                lower = self.buckets[i - 1] if i > 0 else lo_seen
                upper = self.buckets[i] if i < len(self.buckets) else hi_seen
                lower = max(lower, lo_seen)
                upper = min(upper, hi_seen)
                if upper <= lower:
                    return lower
                return lower + (upper - lower) * (rank - below) / c
            below += c
        return hi_seen  # only reached through float rounding of the rank

    def _state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "help": self.help,
                "buckets": list(self.buckets),
                "counts": list(self._counts),
                "sum": self._sum,
                "count": self._count,
                "min": self._min,
                "max": self._max,
            }

    def _add_state(
        self, counts: Sequence[int], total: float, count: int, lo: float | None, hi: float | None
    ) -> None:
        with self._lock:
            for i, c in enumerate(counts):
                self._counts[i] += c
            self._sum += total
            self._count += count
            if lo is not None and (self._min is None or lo < self._min):
                self._min = lo
            if hi is not None and (self._max is None or hi > self._max):
                self._max = hi

    def __repr__(self) -> str:
        return f"Histogram({self.name!r}, count={self.count})"


# --------------------------------------------------------------------------- formatting


def _format_value(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    inner = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in pairs)
    return "{" + inner + "}"


def _exported_name(name: str) -> str:
    return name if name.startswith(PREFIX) else PREFIX + name


# --------------------------------------------------------------------------- snapshots


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise SnapshotError(f"malformed metrics snapshot: {message}")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return (isinstance(x, (int, float))) and not isinstance(x, bool)


def _validate_snapshot(snapshot: Mapping[str, Any]) -> None:
    _require(isinstance(snapshot, Mapping), "not a mapping")
    version = snapshot.get("version")
    _require(version == SNAPSHOT_VERSION, f"unknown version {version!r}")
    counters = snapshot.get("counters", {})
    histograms = snapshot.get("histograms", {})
    _require(isinstance(counters, Mapping), "'counters' is not a mapping")
    _require(isinstance(histograms, Mapping), "'histograms' is not a mapping")
    for name, state in counters.items():
        _require(isinstance(name, str) and bool(_NAME_RE.match(name)), f"bad name {name!r}")
        _require(isinstance(state, Mapping), f"counter {name!r} is not a mapping")
        value = state.get("value")
        _require(_is_int(value) and value >= 0, f"counter {name!r} has bad value {value!r}")
        _require(isinstance(state.get("help", ""), str), f"counter {name!r} has a bad help")
    for name, state in histograms.items():
        _require(isinstance(name, str) and bool(_NAME_RE.match(name)), f"bad name {name!r}")
        _require(name not in counters, f"{name!r} is both a counter and a histogram")
        _require(isinstance(state, Mapping), f"histogram {name!r} is not a mapping")
        _require(isinstance(state.get("help", ""), str), f"histogram {name!r} has a bad help")
        buckets = state.get("buckets")
        counts = state.get("counts")
        _require(
            isinstance(buckets, list) and all(_is_number(b) for b in buckets),
            f"histogram {name!r} has bad buckets",
        )
        try:
            _normalise_buckets(buckets)
        except ValueError as exc:
            raise SnapshotError(f"malformed metrics snapshot: histogram {name!r}: {exc}") from None
        _require(
            isinstance(counts, list)
            and len(counts) == len(buckets) + 1
            and all(_is_int(c) and c >= 0 for c in counts),
            f"histogram {name!r} needs {len(buckets) + 1} non-negative integer counts",
        )
        count = state.get("count")
        _require(
            _is_int(count) and count == sum(counts),
            f"histogram {name!r}: count {count!r} is not the sum of its bucket counts",
        )
        _require(_is_number(state.get("sum")), f"histogram {name!r} has a bad sum")
        for key in ("min", "max"):
            v = state.get(key)
            _require(v is None or _is_number(v), f"histogram {name!r} has a bad {key}")


class Metrics:
    """A thread-safe registry of counters and histograms.

    Names are given without the ``magray_`` prefix, which :meth:`render_prometheus` adds. A
    name belongs to one metric only: asking for a counter under a histogram's name (or for a
    histogram with other buckets than the one registered) raises ValueError.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}

    # ---------------------------------------------------------------- registration

    def counter(self, name: str, help: str = "") -> Counter:
        """The counter called ``name``, created on first use."""
        _check_name(name)
        with self._lock:
            existing = self._counters.get(name)
            if existing is not None:
                return existing
            if name in self._histograms:
                raise ValueError(f"{name!r} is already registered as a histogram")
            c = Counter(name, help)
            self._counters[name] = c
            return c

    def histogram(
        self, name: str, help: str = "", buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS
    ) -> Histogram:
        """The histogram called ``name``, created on first use with ``buckets``."""
        _check_name(name)
        bounds = _normalise_buckets(buckets)
        with self._lock:
            existing = self._histograms.get(name)
            if existing is not None:
                if existing.buckets != bounds:
                    raise ValueError(
                        f"histogram {name!r} is already registered with buckets "
                        f"{list(existing.buckets)}, not {list(bounds)}"
                    )
                return existing
            if name in self._counters:
                raise ValueError(f"{name!r} is already registered as a counter")
            h = Histogram(name, help, bounds)
            self._histograms[name] = h
            return h

    def _sorted(self) -> tuple[list[Counter], list[Histogram]]:
        with self._lock:
            counters = [self._counters[k] for k in sorted(self._counters)]
            histograms = [self._histograms[k] for k in sorted(self._histograms)]
        return counters, histograms

    # ---------------------------------------------------------------- output

    def render_prometheus(self, labels: Mapping[str, str] | None = None) -> str:
        """All metrics in the Prometheus text exposition format, version 0.0.4.

        Counters appear as ``magray_<name>_total``; histograms as cumulative
        ``magray_<name>_bucket{le="..."}`` series ending with ``le="+Inf"``, then ``_sum`` and
        ``_count``. ``labels`` are constant labels added to every sample (their values are
        escaped as the format requires). Serve it with :data:`PROMETHEUS_CONTENT_TYPE`.
        """
        const: list[tuple[str, str]] = []
        for key, value in (labels or {}).items():
            if not _LABEL_RE.match(key) or key.startswith("__") or key == "le":
                raise ValueError(f"invalid or reserved label name {key!r}")
            const.append((key, str(value)))
        counters, histograms = self._sorted()
        lines: list[str] = []
        for c in counters:
            base = _exported_name(c.name)
            if not base.endswith("_total"):
                base += "_total"
            lines.append(f"# HELP {base} {_escape_help(c.help)}")
            lines.append(f"# TYPE {base} counter")
            lines.append(f"{base}{_labels(const)} {c.value}")
        for h in histograms:
            base = _exported_name(h.name)
            state = h._state()
            lines.append(f"# HELP {base} {_escape_help(h.help)}")
            lines.append(f"# TYPE {base} histogram")
            cumulative = 0
            for bound, n in zip(h.buckets, state["counts"]):
                cumulative += n
                le = _labels([*const, ("le", _format_value(bound))])
                lines.append(f"{base}_bucket{le} {cumulative}")
            le = _labels([*const, ("le", "+Inf")])
            lines.append(f"{base}_bucket{le} {state['count']}")
            lines.append(f"{base}_sum{_labels(const)} {_format_value(float(state['sum']))}")
            lines.append(f"{base}_count{_labels(const)} {state['count']}")
        return "\n".join(lines) + "\n" if lines else ""

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        """Per histogram: p50, p95, p99, min, max, mean (seconds) and count; per counter: value.

        Percentiles and mean are None for a histogram with no observations.
        """
        counters, histograms = self._sorted()
        out: dict[str, dict[str, float | int | None]] = {}
        for c in counters:
            out[c.name] = {"value": c.value}
        for h in histograms:
            out[h.name] = {
                "count": h.count,
                "mean": h.mean,
                "p50": h.percentile(50),
                "p95": h.percentile(95),
                "p99": h.percentile(99),
                "min": h.min,
                "max": h.max,
            }
        return out

    # ---------------------------------------------------------------- persistence

    def snapshot(self) -> dict[str, Any]:
        """The registry's state as JSON-able data, to be stored and merged later."""
        counters, histograms = self._sorted()
        return {
            "version": SNAPSHOT_VERSION,
            "counters": {c.name: {"help": c.help, "value": c.value} for c in counters},
            "histograms": {h.name: h._state() for h in histograms},
        }

    def merge(self, snapshot: Mapping[str, Any]) -> None:
        """Add a :meth:`snapshot` into this registry.

        Counter values, bucket counts, sums and counts are added; minima and maxima combined.
        Metrics the registry does not have yet are created. The whole snapshot is checked
        before anything changes: a malformed one raises :class:`SnapshotError`, a histogram
        whose bucket bounds differ from the registered one :class:`BucketMismatchError`, and
        in both cases the registry is left untouched.
        """
        _validate_snapshot(snapshot)
        counters: Mapping[str, Any] = snapshot.get("counters", {})
        histograms: Mapping[str, Any] = snapshot.get("histograms", {})
        with self._lock:
            for name in counters:
                if name in self._histograms:
                    raise SnapshotError(
                        f"cannot merge counter {name!r}: the name is registered as a histogram"
                    )
            for name, state in histograms.items():
                if name in self._counters:
                    raise SnapshotError(
                        f"cannot merge histogram {name!r}: the name is registered as a counter"
                    )
                existing = self._histograms.get(name)
                theirs = _normalise_buckets(state["buckets"])
                if existing is not None and existing.buckets != theirs:
                    raise BucketMismatchError(
                        f"cannot merge histogram {name!r}: its buckets {list(theirs)} differ "
                        f"from the registered buckets {list(existing.buckets)}; nothing merged"
                    )
            # Everything checked: apply.
            for name, state in counters.items():
                self.counter(name, state.get("help", ""))._add_state(state["value"])
            for name, state in histograms.items():
                h = self.histogram(name, state.get("help", ""), state["buckets"])
                h._add_state(
                    state["counts"],
                    float(state["sum"]),
                    state["count"],
                    None if state.get("min") is None else float(state["min"]),
                    None if state.get("max") is None else float(state["max"]),
                )

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any]) -> Metrics:
        """A new registry holding the state of ``snapshot``."""
        m = cls()
        m.merge(snapshot)
        return m
