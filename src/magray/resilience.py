"""A circuit breaker, for work that can fail for a while and recover.

Why a circuit breaker
---------------------
Some work has a fast path that may stop working and a slow path that always works: inference
on a GPU that can hang, run out of memory or vanish, with the CPU as the fallback; a shared
cache on a Redis server that may be down. Trying the broken path on every request costs a
timeout each time. A :class:`CircuitBreaker` remembers that the path is failing, refuses it at
once for a cool-down (the caller takes the fallback immediately), then lets a single trial
call through to find out whether the path works again.

State machine
-------------
::

    CLOSED ──failure_threshold consecutive failures──▶ OPEN
      ▲                                                │ ▲
      │                                  reset_timeout │ │ the trial fails
      │                                       passes   ▼ │ (the cool-down restarts)
      └────────────── the trial succeeds ─────────── HALF_OPEN

* CLOSED: every call goes through; a success resets the count of consecutive failures.
* OPEN: every call is refused (:class:`CircuitOpenError`, or ``allow()`` returns False) until
  ``reset_timeout`` seconds have passed since the circuit opened. The change to HALF_OPEN
  happens lazily, when the state is next looked at; no timer thread is involved.
* HALF_OPEN: exactly one trial call at a time goes through; others are refused until the trial
  reports. A success closes the circuit, a failure opens it again.

A call that raises counts as a failure. So does a call that returns but takes longer than
``call_timeout``: a device that answers slowly is treated as failing, because a running call
cannot be interrupted safely. ``reset()`` closes the circuit by hand.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from magray.errors import InvalidInputError, MagrayError

__all__ = ["CircuitBreaker", "CircuitOpenError", "CircuitState"]

P = ParamSpec("P")
R = TypeVar("R")

_log = logging.getLogger("magray")


class CircuitState(str, enum.Enum):
    """The state of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(MagrayError):
    """A call was refused because its circuit is open (or a half-open trial is running).

    ``breaker_name`` names the circuit; ``retry_after`` is the number of seconds until a trial
    call will be allowed (0 while a half-open trial is in progress).
    """

    def __init__(self, message: str, breaker_name: str, retry_after: float) -> None:
        super().__init__(message)
        self.breaker_name = breaker_name
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:  # keep the attributes across pickling
        return (type(self), (str(self), self.breaker_name, self.retry_after))


_Transition = tuple[CircuitState, CircuitState]


class CircuitBreaker:
    """A thread-safe circuit breaker (see the module documentation for the state machine).

    ``clock`` returns seconds and must not go backwards; ``on_state_change(old, new)`` is called
    once per transition, after the change, outside the breaker's lock (so it may read the
    breaker). An exception it raises is logged and otherwise ignored. When several threads
    change the state at once, their notifications may arrive in any order.

    Use either :meth:`call`, or :meth:`allow` followed by exactly one :meth:`record_success`
    or :meth:`record_failure` for every True it returned: a half-open trial that never reports
    keeps the circuit refusing calls until it does, or until :meth:`reset`.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 3,
        reset_timeout: float = 60.0,
        call_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: Callable[[CircuitState, CircuitState], None] | None = None,
    ) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int):
            raise InvalidInputError(
                f"failure_threshold must be an integer >= 1, got {failure_threshold!r}"
            )
        if failure_threshold < 1:
            raise InvalidInputError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if not reset_timeout >= 0:  # also refuses NaN
            raise InvalidInputError(f"reset_timeout must be >= 0 seconds, got {reset_timeout}")
        if call_timeout is not None and not call_timeout > 0:
            raise InvalidInputError(
                f"call_timeout must be > 0 seconds or None (no limit), got {call_timeout}"
            )
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = float(reset_timeout)
        self.call_timeout = None if call_timeout is None else float(call_timeout)
        self._clock = clock
        self._on_state_change = on_state_change
        self._lock = threading.Lock()
        # Everything below is guarded by _lock.
        self._state = CircuitState.CLOSED
        self._trial_in_flight = False
        self._opened_at = 0.0
        self._consecutive_failures = 0
        self._failures = 0
        self._successes = 0
        self._rejected = 0
        self._opened = 0
        self._last_error: str | None = None
        self._last_failure_at: float | None = None
        self._last_change_at = clock()

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.value!r})"

    # -- state, all with the lock held ------------------------------------------------------

    def _set_state(self, new: CircuitState, at: float, changes: list[_Transition]) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        self._last_change_at = at
        self._trial_in_flight = False
        if new is CircuitState.OPEN:
            self._opened_at = at
            self._opened += 1
        changes.append((old, new))

    def _advance(self, now: float, changes: list[_Transition]) -> None:
        """Turn OPEN into HALF_OPEN once the cool-down has passed."""
        if self._state is CircuitState.OPEN:
            ready_at = self._opened_at + self.reset_timeout
            if now >= ready_at:
                self._set_state(CircuitState.HALF_OPEN, ready_at, changes)

    def _retry_after(self, now: float) -> float:
        if self._state is not CircuitState.OPEN:
            return 0.0
        return min(self.reset_timeout, max(0.0, self._opened_at + self.reset_timeout - now))

    def _notify(self, changes: list[_Transition]) -> None:
        """Report transitions; called without the lock."""
        callback = self._on_state_change
        if callback is None:
            return
        for old, new in changes:
            try:
                callback(old, new)
            except Exception:
                _log.exception(
                    "on_state_change of circuit %r failed (%s -> %s)", self.name, old, new
                )

    # -- public -----------------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state; OPEN reads as HALF_OPEN once ``reset_timeout`` has passed."""
        now = self._clock()
        changes: list[_Transition] = []
        with self._lock:
            self._advance(now, changes)
            state = self._state
        self._notify(changes)
        return state

    def _admit(self) -> tuple[bool, CircuitState, float, str | None]:
        now = self._clock()
        changes: list[_Transition] = []
        with self._lock:
            self._advance(now, changes)
            state = self._state
            if state is CircuitState.CLOSED:
                allowed = True
            elif state is CircuitState.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                allowed = True
            else:
                self._rejected += 1
                allowed = False
            retry_after = self._retry_after(now)
            last_error = self._last_error
        self._notify(changes)
        return allowed, state, retry_after, last_error

    def allow(self) -> bool:
        """May a call go through now?

        CLOSED: yes. OPEN: no. HALF_OPEN: yes for one trial call at a time; other callers get
        False until that trial reports with :meth:`record_success` or :meth:`record_failure`.
        Every False is counted in ``stats()["rejected"]``.
        """
        return self._admit()[0]

    def record_success(self) -> None:
        """Report a successful call: resets the consecutive failures; HALF_OPEN -> CLOSED.

        A success reported while OPEN (from a call let through before the circuit opened)
        is counted but changes nothing.
        """
        now = self._clock()
        changes: list[_Transition] = []
        with self._lock:
            self._advance(now, changes)
            self._successes += 1
            if self._state is not CircuitState.OPEN:
                self._consecutive_failures = 0
                self._set_state(CircuitState.CLOSED, now, changes)
        self._notify(changes)

    def record_failure(self, exc: BaseException | str) -> None:
        """Report a failed call, with its exception or a description.

        CLOSED -> OPEN at ``failure_threshold`` consecutive failures; HALF_OPEN -> OPEN at
        once, with a fresh cool-down. A failure reported while OPEN (from a call let through
        before the circuit opened) is counted but does not extend the cool-down.
        """
        if isinstance(exc, BaseException):
            text = str(exc)
            error = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        else:
            error = str(exc)
        now = self._clock()
        changes: list[_Transition] = []
        with self._lock:
            self._advance(now, changes)
            self._failures += 1
            self._consecutive_failures += 1
            self._last_error = error
            self._last_failure_at = now
            if self._state is CircuitState.HALF_OPEN or (
                self._state is CircuitState.CLOSED
                and self._consecutive_failures >= self.failure_threshold
            ):
                self._set_state(CircuitState.OPEN, now, changes)
        self._notify(changes)

    def _release_trial(self) -> None:
        """Give back a half-open trial permit without a verdict (the call was interrupted)."""
        with self._lock:
            self._trial_in_flight = False

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` through the breaker and return its result.

        Raises :class:`CircuitOpenError` without calling ``fn`` when :meth:`allow` says no.
        An exception from ``fn`` is recorded as a failure and re-raised. A call that returns
        but took longer than ``call_timeout`` (by the breaker's clock) is recorded as a
        failure, and its result is still returned. A KeyboardInterrupt or SystemExit is
        re-raised without a verdict.
        """
        allowed, state, retry_after, last_error = self._admit()
        if not allowed:
            if state is CircuitState.OPEN:
                message = (
                    f"circuit {self.name!r} is open after repeated failures"
                    f" (last: {last_error or 'unknown'}); retry in {retry_after:.3g} s,"
                    " use the fallback, or reset() it once the cause is fixed"
                )
            else:
                message = (
                    f"circuit {self.name!r} is half-open and its trial call is still running;"
                    " retry when it has finished, or use the fallback"
                )
            raise CircuitOpenError(message, self.name, retry_after)
        start = self._clock()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self.record_failure(exc)
            raise
        except BaseException:
            self._release_trial()
            raise
        elapsed = self._clock() - start
        if self.call_timeout is not None and elapsed > self.call_timeout:
            self.record_failure(
                f"call took {elapsed:.3g} s, over call_timeout {self.call_timeout:.3g} s"
            )
        else:
            self.record_success()
        return result

    def reset(self) -> None:
        """Close the circuit by hand and forget the consecutive failures.

        The lifetime counters in :meth:`stats` are kept.
        """
        now = self._clock()
        changes: list[_Transition] = []
        with self._lock:
            self._consecutive_failures = 0
            self._set_state(CircuitState.CLOSED, now, changes)  # also frees a trial permit
        self._notify(changes)

    def stats(self) -> dict[str, Any]:
        """A snapshot of the breaker.

        Keys: ``name``; ``state`` (its value, e.g. ``"open"``); ``consecutive_failures``;
        ``failures`` and ``successes`` (all reported); ``rejected`` (calls refused while open
        or while a half-open trial was running); ``opened`` (times the circuit opened);
        ``last_error`` (text or None); ``last_failure_at`` and ``last_change_at`` (clock
        values, the former None before any failure); ``retry_after`` (seconds until a trial is
        allowed; 0 unless open).
        """
        now = self._clock()
        changes: list[_Transition] = []
        with self._lock:
            self._advance(now, changes)
            snapshot: dict[str, Any] = {
                "name": self.name,
                "state": self._state.value,
                "consecutive_failures": self._consecutive_failures,
                "failures": self._failures,
                "successes": self._successes,
                "rejected": self._rejected,
                "opened": self._opened,
                "last_error": self._last_error,
                "last_failure_at": self._last_failure_at,
                "last_change_at": self._last_change_at,
                "retry_after": self._retry_after(now),
            }
        self._notify(changes)
        return snapshot
