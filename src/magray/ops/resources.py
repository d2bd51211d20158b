"""Memory-pressure management: shrink tunable knobs when memory runs short, restore them later.

The application registers *knobs*, integer settings that trade memory for speed, each with
its normal value, a minimum, and a function that applies a new value::

    rm = ResourceManager(rss_limit_bytes=2 << 30)
    rm.register("l1_cache_bytes", normal=64 << 20, minimum=4 << 20, apply=cache.resize)
    rm.register("embed_batch_size", normal=32, minimum=4, apply=embedder.set_batch_size)
    rm.start()          # check every `interval` seconds on a daemon thread
    ...
    rm.stop()

Rules
-----
Each :meth:`ResourceManager.check` takes one :class:`Readings` (process RSS, memory available
on the system, total memory) from the reader and decides:

* **Pressure** is either of

  - ``rss``: the process's resident set size is above ``rss_limit_bytes`` (only when a
    limit is set), or
  - ``available``: the memory available on the system is below ``min_available_fraction``
    of the total memory.

  Both can hold at once; the report's ``reason`` then names both, separated by ``"; "``.
* **Under pressure**, every knob is halved (integer division), but never below its minimum,
  and ``apply`` is called with the new value. This repeats on every check while the pressure
  lasts, so a knob reaches its minimum after a few checks. Any calm streak is reset.
* **Without pressure**, the check counts as calm. On every second consecutive calm check
  (the 2nd, 4th, 6th... since the last pressure) every knob below its normal value is
  doubled, but never above its normal value, and ``apply`` is called. The streak then starts
  again, so that memory is given back gradually and a single calm reading right after a
  shrink does not undo it.
* ``apply`` is called only when a knob's value actually changes. When ``apply`` raises, the
  error is logged and reported, the knob keeps its previous value (the change did not take
  effect), and the next check tries again. The other knobs are unaffected.
* When the reader raises (or returns something other than :class:`Readings`), the error is
  logged and reported, and nothing changes: no knob moves and the calm streak is kept.

:meth:`ResourceManager.start` runs the checks on a daemon thread, one at once and then one
every ``interval`` seconds; :meth:`ResourceManager.stop` wakes that thread and joins it. No
exception ends the thread: anything a check raises is logged and the next check runs.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CALM_CHECKS_TO_RESTORE",
    "CheckReport",
    "Knob",
    "Readings",
    "ResourceManager",
    "read_memory",
]

#: Consecutive checks without pressure that give back one doubling step.
CALM_CHECKS_TO_RESTORE = 2

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readings:
    """One measurement of memory, in bytes."""

    rss_bytes: int
    available_bytes: int
    total_bytes: int

    def as_dict(self) -> dict[str, int]:
        return {
            "rss_bytes": self.rss_bytes,
            "available_bytes": self.available_bytes,
            "total_bytes": self.total_bytes,
        }


# Available system memory below this share of the total counts as pressure.
MIN_AVAILABLE_FRACTION = 0.10

_process_cache: dict[int, Any] = {}


def read_memory() -> Readings:
    """This process's RSS and the system's available and total memory, through psutil."""
    psutil = importlib.import_module("psutil")
    pid = os.getpid()
    proc = _process_cache.get(pid)
    if proc is None:
        _process_cache.clear()  # a forked child must not read its parent's numbers
        proc = psutil.Process(pid)
        _process_cache[pid] = proc
    vm = psutil.virtual_memory()
    return Readings(
        rss_bytes=int(proc.memory_info().rss),
        available_bytes=int(vm.available),
        total_bytes=int(vm.total),
    )


@dataclass
class Knob:
    """A registered setting: its current, normal and minimum values and how to apply one."""

    name: str
    normal: int
    minimum: int
    current: int
    apply: Callable[[int], None] = field(repr=False)


@dataclass(frozen=True)
class CheckReport:
    """What one :meth:`ResourceManager.check` saw and did."""

    #: Whether memory was under pressure (False also when the reader failed).
    pressure: bool
    #: Why, when under pressure: ``"rss: ..."``, ``"available: ..."``, or both.
    reason: str | None
    #: The readings taken; None when the reader failed.
    readings: Readings | None
    #: Every knob's value after the check.
    knobs: dict[str, int]
    #: The knobs that changed, as name -> (old value, new value).
    changed: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Errors from the reader or from ``apply`` functions.
    errors: tuple[str, ...] = ()
    #: The manager's clock at the check.
    at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "pressure": self.pressure,
            "reason": self.reason,
            "readings": None if self.readings is None else self.readings.as_dict(),
            "knobs": dict(self.knobs),
            "changed": {k: list(v) for k, v in self.changed.items()},
            "errors": list(self.errors),
            "at": self.at,
        }


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    return value


class ResourceManager:
    """Watches memory and shrinks or restores registered knobs (see the module rules).

    ``reader`` returns a :class:`Readings` (default :func:`read_memory`); ``interval`` is the
    time between checks on the background thread, in seconds; ``rss_limit_bytes`` the RSS
    above which the process is under pressure (None: no RSS rule);
    ``min_available_fraction`` the share of total memory below which available memory means
    pressure; ``clock`` timestamps the checks.
    """

    def __init__(
        self,
        reader: Callable[[], Readings] | None = None,
        *,
        interval: float = 5.0,
        rss_limit_bytes: int | None = None,
        min_available_fraction: float = MIN_AVAILABLE_FRACTION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        if rss_limit_bytes is not None and _check_int("rss_limit_bytes", rss_limit_bytes) <= 0:
            raise ValueError(f"rss_limit_bytes must be positive, got {rss_limit_bytes!r}")
        if not 0.0 <= min_available_fraction < 1.0:
            raise ValueError(
                f"min_available_fraction must be in [0, 1), got {min_available_fraction!r}"
            )
        self._reader: Callable[[], Readings] = reader if reader is not None else read_memory
        self.interval = float(interval)
        self.rss_limit_bytes = rss_limit_bytes
        self.min_available_fraction = float(min_available_fraction)
        self._clock = clock
        self._lock = threading.RLock()
        self._knobs: dict[str, Knob] = {}
        self._calm = 0
        self._last: CheckReport | None = None
        self._last_pressure_reason: str | None = None
        self._last_pressure_at: float | None = None
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()

    # ---------------------------------------------------------------- knobs

    def register(
        self, name: str, *, normal: int, minimum: int, apply: Callable[[int], None]
    ) -> None:
        """Register a knob. It starts at ``normal``; ``apply`` is not called until it changes.

        ``1 <= minimum <= normal`` is required, and each name may be registered once.
        """
        _check_int("normal", normal)
        _check_int("minimum", minimum)
        if not 1 <= minimum <= normal:
            raise ValueError(
                f"knob {name!r}: need 1 <= minimum <= normal, got minimum={minimum}, "
                f"normal={normal}"
            )
        if not callable(apply):
            raise TypeError(f"knob {name!r}: apply must be callable")
        with self._lock:
            if name in self._knobs:
                raise ValueError(f"knob {name!r} is already registered")
            self._knobs[name] = Knob(name, normal, minimum, normal, apply)

    def unregister(self, name: str) -> None:
        """Forget a knob (its value is left as it is)."""
        with self._lock:
            if self._knobs.pop(name, None) is None:
                raise KeyError(f"no knob named {name!r}")

    def value(self, name: str) -> int:
        """The current value of a knob."""
        with self._lock:
            knob = self._knobs.get(name)
            if knob is None:
                raise KeyError(f"no knob named {name!r}")
            return knob.current

    # ---------------------------------------------------------------- checks

    def _pressure_reason(self, r: Readings) -> str | None:
        reasons: list[str] = []
        if self.rss_limit_bytes is not None and r.rss_bytes > self.rss_limit_bytes:
            reasons.append(
                f"rss: {_fmt_bytes(r.rss_bytes)} is above the limit of "
                f"{_fmt_bytes(self.rss_limit_bytes)}"
            )
        if r.total_bytes > 0 and r.available_bytes < self.min_available_fraction * r.total_bytes:
            reasons.append(
                f"available: {_fmt_bytes(r.available_bytes)} "
                f"({100.0 * r.available_bytes / r.total_bytes:.1f}% of "
                f"{_fmt_bytes(r.total_bytes)}) is below {100.0 * self.min_available_fraction:g}%"
            )
        return "; ".join(reasons) if reasons else None

    def _set(
        self, knob: Knob, new: int, changed: dict[str, tuple[int, int]], errors: list[str]
    ) -> None:
        old = knob.current
        if new == old:
            return
        try:
            knob.apply(new)
        except Exception as exc:
            msg = f"apply {knob.name}={new} failed: {type(exc).__name__}: {exc}"
            errors.append(msg)
            _log.exception(
                "resource knob could not be applied",
                extra={"fields": {"knob": knob.name, "value": new, "kept": old}},
            )
            return
        knob.current = new
        changed[knob.name] = (old, new)

    def check(self) -> CheckReport:
        """Take one reading, shrink or restore the knobs by the rules, and report."""
        with self._lock:
            now = self._clock()
            changed: dict[str, tuple[int, int]] = {}
            errors: list[str] = []
            try:
                readings = self._reader()
                if not isinstance(readings, Readings):
                    raise TypeError(f"the reader returned {type(readings).__name__}, not Readings")
            except Exception as exc:
                errors.append(f"reading memory failed: {type(exc).__name__}: {exc}")
                _log.exception("reading memory failed; knobs left as they are")
                report = CheckReport(
                    pressure=False,
                    reason=None,
                    readings=None,
                    knobs=self._values(),
                    errors=tuple(errors),
                    at=now,
                )
                self._last = report
                return report

            reason = self._pressure_reason(readings)
            if reason is not None:
                self._calm = 0
                self._last_pressure_reason = reason
                self._last_pressure_at = now
                for knob in self._knobs.values():
                    self._set(knob, max(knob.minimum, knob.current // 2), changed, errors)
                if changed:
                    _log.warning(
                        "memory pressure, shrinking knobs: %s",
                        reason,
                        extra={"fields": {k: v[1] for k, v in changed.items()}},
                    )
            else:
                self._calm += 1
                if self._calm >= CALM_CHECKS_TO_RESTORE:
                    self._calm = 0
                    for knob in self._knobs.values():
                        self._set(knob, min(knob.normal, knob.current * 2), changed, errors)
                    if changed:
                        _log.info(
                            "memory pressure gone, restoring knobs",
                            extra={"fields": {k: v[1] for k, v in changed.items()}},
                        )
            report = CheckReport(
                pressure=reason is not None,
                reason=reason,
                readings=readings,
                knobs=self._values(),
                changed=changed,
                errors=tuple(errors),
                at=now,
            )
            self._last = report
            return report

    def _values(self) -> dict[str, int]:
        return {name: knob.current for name, knob in self._knobs.items()}

    def limits(self) -> dict[str, Any]:
        """The state for a status screen: knobs, thresholds, last readings and pressure."""
        with self._lock:
            last = self._last
            readings = None if last is None else last.readings
            min_available = (
                None
                if readings is None
                else int(self.min_available_fraction * readings.total_bytes)
            )
            return {
                "knobs": {
                    name: {"current": k.current, "normal": k.normal, "minimum": k.minimum}
                    for name, k in self._knobs.items()
                },
                "thresholds": {
                    "rss_limit_bytes": self.rss_limit_bytes,
                    "min_available_fraction": self.min_available_fraction,
                    "min_available_bytes": min_available,
                    "interval_s": self.interval,
                },
                "readings": None if readings is None else readings.as_dict(),
                "pressure": False if last is None else last.pressure,
                "reason": None if last is None else last.reason,
                "last_pressure_reason": self._last_pressure_reason,
                "last_pressure_at": self._last_pressure_at,
                "last_check_at": None if last is None else last.at,
                "last_errors": [] if last is None else list(last.errors),
                "calm_checks": self._calm,
                "running": self.running,
            }

    # ---------------------------------------------------------------- background thread

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        t = self._thread
        return t is not None and t.is_alive()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.check()
            except Exception:  # check() handles its own errors; this is the last guard
                _log.exception("memory check failed")
            if stop.wait(self.interval):
                break

    def start(self) -> None:
        """Run :meth:`check` now and then every ``interval`` seconds on a daemon thread.

        Does nothing when the thread is already running.
        """
        with self._lock:
            if self.running:
                return
            self._stop_event = threading.Event()
            self._thread = threading.Thread(
                target=self._run,
                args=(self._stop_event,),
                name="magray-resources",
                daemon=True,
            )
            self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the background thread and wait (up to ``timeout`` seconds) for it to end.

        The thread waits on an event between checks, so it ends at once unless a check is
        in progress. Safe to call when not running, and from the thread itself.
        """
        with self._lock:
            thread = self._thread
            self._stop_event.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> ResourceManager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
