from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from typing import Any

import pytest

from magray.errors import MagrayError
from magray.resilience import CircuitBreaker, CircuitOpenError, CircuitState

from .fakes import FakeClock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class FakeSleep:
    """Records the delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Boom(RuntimeError):
    pass


def make(
    clock: FakeClock, changes: list[tuple[CircuitState, CircuitState]] | None = None, **kw: Any
) -> CircuitBreaker:
    kw.setdefault("failure_threshold", 3)
    kw.setdefault("reset_timeout", 10.0)
    record = None if changes is None else (lambda old, new: changes.append((old, new)))
    return CircuitBreaker("gpu", clock=clock, on_state_change=record, **kw)


def fail(_: Any = None) -> None:
    raise Boom("device lost")


def trip(cb: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            cb.call(fail)


def run_in_thread(target: Callable[[], None], timeout: float = 5.0) -> None:
    """Run target in a thread; a deadlock fails the test instead of hanging the suite."""
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "deadlock: the breaker called back with its lock held"
    if errors:
        raise errors[0]


# -- circuit breaker: transitions ------------------------------------------------------------


def test_starts_closed_and_passes_calls_and_arguments() -> None:
    cb = make(FakeClock(1000.0))
    assert cb.state is CLOSED
    assert cb.allow() is True
    assert cb.call(lambda a, b=0: a + b, 2, b=3) == 5
    assert cb.stats()["successes"] == 1


def test_opens_after_threshold_consecutive_failures() -> None:
    cb = make(FakeClock(1000.0), failure_threshold=3)
    trip(cb, 2)
    assert cb.state is CLOSED
    assert cb.stats()["consecutive_failures"] == 2
    trip(cb, 1)
    assert cb.state is OPEN
    assert cb.allow() is False


def test_threshold_one_opens_on_first_failure() -> None:
    cb = make(FakeClock(1000.0), failure_threshold=1)
    cb.record_failure("x")
    assert cb.state is OPEN


def test_success_in_between_resets_the_count() -> None:
    cb = make(FakeClock(1000.0), failure_threshold=3)
    trip(cb, 2)
    assert cb.call(lambda: "ok") == "ok"
    assert cb.stats()["consecutive_failures"] == 0
    trip(cb, 2)
    assert cb.state is CLOSED
    trip(cb, 1)
    assert cb.state is OPEN


def test_record_success_resets_the_count_too() -> None:
    cb = make(FakeClock(1000.0), failure_threshold=2)
    cb.record_failure(Boom("a"))
    cb.record_success()
    cb.record_failure(Boom("b"))
    assert cb.state is CLOSED
    cb.record_failure(Boom("c"))
    assert cb.state is OPEN


def test_open_rejects_without_calling_and_reports_retry_after() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock, reset_timeout=10.0)
    trip(cb, 3)
    clock.advance(4.0)
    calls: list[int] = []
    with pytest.raises(CircuitOpenError) as info:
        cb.call(lambda: calls.append(1))
    assert calls == []
    err = info.value
    assert isinstance(err, MagrayError)
    assert err.breaker_name == "gpu"
    assert err.retry_after == pytest.approx(6.0)
    message = str(err)
    assert "'gpu'" in message and "open" in message
    assert "Boom: device lost" in message and "reset()" in message
    assert cb.stats()["rejected"] == 1


def test_circuit_open_error_survives_pickling() -> None:
    err = CircuitOpenError("circuit 'gpu' is open", "gpu", 2.5)
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.breaker_name, back.retry_after) == (str(err), "gpu", 2.5)


def test_half_open_after_cool_down_exactly() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock, reset_timeout=10.0)
    trip(cb, 3)
    clock.advance(9.999)
    assert cb.state is OPEN
    assert cb.allow() is False
    clock.advance(0.001)
    assert cb.state is HALF_OPEN
    assert cb.stats()["retry_after"] == 0


def test_half_open_allows_exactly_one_trial() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock)
    trip(cb, 3)
    clock.advance(10.0)
    assert cb.allow() is True
    assert cb.allow() is False
    assert cb.allow() is False
    assert cb.state is HALF_OPEN
    assert cb.stats()["rejected"] == 2


def test_half_open_call_rejected_while_trial_runs() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock)
    trip(cb, 3)
    clock.advance(10.0)
    assert cb.allow() is True  # someone else holds the trial
    with pytest.raises(CircuitOpenError) as info:
        cb.call(lambda: None)
    assert info.value.retry_after == 0
    assert "trial" in str(info.value)


def test_trial_success_closes() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock)
    trip(cb, 3)
    clock.advance(10.0)
    assert cb.call(lambda: 42) == 42
    assert cb.state is CLOSED
    assert cb.stats()["consecutive_failures"] == 0
    assert cb.allow() and cb.allow()  # no trial limit once closed


def test_trial_via_allow_and_record_success_closes() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock)
    trip(cb, 3)
    clock.advance(10.0)
    assert cb.allow()
    cb.record_success()
    assert cb.state is CLOSED


def test_trial_failure_reopens_with_fresh_cool_down() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock, reset_timeout=10.0)
    trip(cb, 3)
    clock.advance(25.0)  # long past the first cool-down
    with pytest.raises(Boom):
        cb.call(fail)  # the trial
    assert cb.state is OPEN
    assert cb.stats()["retry_after"] == pytest.approx(10.0)
    assert cb.stats()["opened"] == 2
    clock.advance(9.0)
    assert cb.allow() is False
    clock.advance(1.0)
    assert cb.state is HALF_OPEN
    assert cb.allow() is True


def test_half_open_single_trial_with_real_threads() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock)
    trip(cb, 3)
    clock.advance(10.0)
    n = 8
    barrier = threading.Barrier(n)
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        ok = cb.allow()
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(results) == n
    assert results.count(True) == 1
    assert cb.stats()["rejected"] == n - 1


def test_half_open_call_with_real_threads_runs_one_trial() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock)
    trip(cb, 3)
    clock.advance(10.0)
    started = threading.Event()
    release = threading.Event()
    ran: list[str] = []

    def slow_trial() -> str:
        ran.append("trial")
        started.set()
        assert release.wait(5)
        return "recovered"

    out: list[str] = []
    trial = threading.Thread(target=lambda: out.append(cb.call(slow_trial)))
    trial.start()
    assert started.wait(5)
    rejected: list[CircuitOpenError] = []

    def other() -> None:
        try:
            cb.call(lambda: ran.append("other"))
        except CircuitOpenError as exc:
            rejected.append(exc)

    others = [threading.Thread(target=other) for _ in range(4)]
    for t in others:
        t.start()
    for t in others:
        t.join(5)
    assert len(rejected) == 4 and ran == ["trial"]
    release.set()
    trial.join(5)
    assert out == ["recovered"]
    assert cb.state is CLOSED


def test_interrupted_trial_gives_the_permit_back() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock)
    trip(cb, 3)
    clock.advance(10.0)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cb.call(interrupted)
    assert cb.state is HALF_OPEN  # no verdict
    assert cb.stats()["failures"] == 3
    assert cb.allow() is True  # a new trial may run


def test_failure_while_open_does_not_extend_cool_down() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock, reset_timeout=10.0)
    trip(cb, 3)
    clock.advance(5.0)
    cb.record_failure("late report from a call let through before opening")
    cb.record_success()  # a late success does not close it either
    assert cb.state is OPEN
    assert cb.stats()["retry_after"] == pytest.approx(5.0)
    assert cb.stats()["opened"] == 1


def test_zero_reset_timeout_goes_half_open_at_once() -> None:
    cb = make(FakeClock(1000.0), failure_threshold=1, reset_timeout=0.0)
    cb.record_failure("x")
    assert cb.state is HALF_OPEN
    assert cb.allow() is True
    assert cb.allow() is False


# -- call_timeout ----------------------------------------------------------------------------


def test_slow_call_returns_value_but_counts_as_failure() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock, failure_threshold=2, call_timeout=1.0)

    def slow() -> str:
        clock.advance(1.5)
        return "late"

    assert cb.call(slow) == "late"
    stats = cb.stats()
    assert stats["failures"] == 1 and stats["successes"] == 0
    assert stats["consecutive_failures"] == 1
    assert "call_timeout" in stats["last_error"]
    assert stats["last_failure_at"] == clock.now
    assert cb.call(slow) == "late"
    assert cb.state is OPEN


def test_call_within_timeout_is_a_success() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock, failure_threshold=1, call_timeout=1.0)

    def quick() -> int:
        clock.advance(1.0)  # exactly the limit is not over it
        return 7

    assert cb.call(quick) == 7
    assert cb.state is CLOSED
    assert cb.stats()["successes"] == 1


def test_slow_trial_reopens() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock, call_timeout=1.0)
    trip(cb, 3)
    clock.advance(10.0)

    def slow() -> int:
        clock.advance(2.0)
        return 1

    assert cb.call(slow) == 1
    assert cb.state is OPEN


def test_no_call_timeout_never_counts_slowness() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock, failure_threshold=1)

    def very_slow() -> None:
        clock.advance(1e6)

    cb.call(very_slow)
    assert cb.state is CLOSED


# -- callbacks -------------------------------------------------------------------------------


def test_on_state_change_gets_each_transition_once() -> None:
    clock = FakeClock(1000.0)
    changes: list[tuple[CircuitState, CircuitState]] = []
    cb = make(clock, changes)
    trip(cb, 3)
    assert changes == [(CLOSED, OPEN)]
    cb.allow()  # still open: nothing new
    clock.advance(10.0)
    assert cb.state is HALF_OPEN
    assert cb.state is HALF_OPEN  # observed twice, reported once
    cb.stats()
    with pytest.raises(Boom):
        cb.call(fail)
    clock.advance(10.0)
    cb.call(lambda: None)
    cb.call(lambda: None)
    assert changes == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


def test_callback_and_fn_run_without_the_lock() -> None:
    clock = FakeClock(1000.0)
    seen: list[str] = []
    cb: CircuitBreaker

    def on_change(old: CircuitState, new: CircuitState) -> None:
        seen.append(cb.stats()["state"])  # would deadlock if called under the lock

    cb = CircuitBreaker(
        "gpu", failure_threshold=1, reset_timeout=5.0, clock=clock, on_state_change=on_change
    )

    def scenario() -> None:
        with pytest.raises(Boom):
            cb.call(fail)
        clock.advance(5.0)
        assert cb.call(lambda: cb.stats()["state"]) == "half_open"

    run_in_thread(scenario)
    assert seen == ["open", "half_open", "closed"]


def test_failing_callback_does_not_break_the_breaker(caplog: pytest.LogCaptureFixture) -> None:
    def bad(old: CircuitState, new: CircuitState) -> None:
        raise ValueError("observer bug")

    cb = CircuitBreaker("gpu", failure_threshold=1, clock=FakeClock(1000.0), on_state_change=bad)
    with pytest.raises(Boom):
        cb.call(fail)  # the caller sees its own error, not the observer's
    assert cb.state is OPEN
    assert "on_state_change" in caplog.text


# -- stats and reset -------------------------------------------------------------------------


def test_stats_contents() -> None:
    clock = FakeClock(100.0)
    cb = make(clock, reset_timeout=10.0)
    assert cb.stats() == {
        "name": "gpu",
        "state": "closed",
        "consecutive_failures": 0,
        "failures": 0,
        "successes": 0,
        "rejected": 0,
        "opened": 0,
        "last_error": None,
        "last_failure_at": None,
        "last_change_at": 100.0,
        "retry_after": 0.0,
    }
    cb.call(lambda: None)
    clock.advance(1.0)
    cb.record_failure(Boom("one"))
    clock.advance(1.0)
    cb.record_failure(OSError())
    clock.advance(1.0)
    cb.record_failure("three")  # opens at 103
    clock.advance(4.0)
    cb.allow()
    cb.allow()
    assert cb.stats() == {
        "name": "gpu",
        "state": "open",
        "consecutive_failures": 3,
        "failures": 3,
        "successes": 1,
        "rejected": 2,
        "opened": 1,
        "last_error": "three",
        "last_failure_at": 103.0,
        "last_change_at": 103.0,
        "retry_after": pytest.approx(6.0),
    }
    clock.advance(8.0)  # looked at 2 s after the cool-down ended
    stats = cb.stats()
    assert stats["state"] == "half_open"
    assert stats["last_change_at"] == 113.0  # when the cool-down ended, not when looked at
    assert stats["retry_after"] == 0


def test_last_error_text_of_exceptions() -> None:
    cb = make(FakeClock(1000.0), failure_threshold=99)
    cb.record_failure(Boom("device lost"))
    assert cb.stats()["last_error"] == "Boom: device lost"
    cb.record_failure(TimeoutError())
    assert cb.stats()["last_error"] == "TimeoutError"


def test_reset_closes_and_keeps_lifetime_counters() -> None:
    clock = FakeClock(1000.0)
    changes: list[tuple[CircuitState, CircuitState]] = []
    cb = make(clock, changes)
    trip(cb, 3)
    cb.allow()
    clock.advance(2.0)
    cb.reset()
    assert cb.state is CLOSED
    stats = cb.stats()
    assert stats["consecutive_failures"] == 0
    assert stats["retry_after"] == 0
    assert stats["last_change_at"] == clock.now
    assert (stats["failures"], stats["opened"], stats["rejected"]) == (3, 1, 1)
    assert changes == [(CLOSED, OPEN), (OPEN, CLOSED)]
    trip(cb, 2)
    assert cb.state is CLOSED  # the count really started over
    cb.reset()  # already closed: no transition reported
    assert changes == [(CLOSED, OPEN), (OPEN, CLOSED)]


def test_reset_during_half_open_trial_frees_the_permit() -> None:
    clock = FakeClock(1000.0)
    cb = make(clock)
    trip(cb, 3)
    clock.advance(10.0)
    assert cb.allow()
    cb.reset()
    assert cb.allow() and cb.allow()


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"failure_threshold": 0}, r"failure_threshold must be >= 1, got 0"),
        ({"failure_threshold": -3}, r"failure_threshold must be >= 1"),
        ({"failure_threshold": 2.5}, r"failure_threshold must be an integer >= 1"),
        ({"reset_timeout": -1.0}, r"reset_timeout must be >= 0"),
        ({"reset_timeout": float("nan")}, r"reset_timeout must be >= 0"),
        ({"call_timeout": 0.0}, r"call_timeout must be > 0 .*or None"),
        ({"call_timeout": -2.0}, r"call_timeout must be > 0"),
    ],
)
def test_breaker_argument_validation(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        CircuitBreaker("x", **kwargs)


def test_breaker_accepts_boundary_arguments() -> None:
    cb = CircuitBreaker("x", failure_threshold=1, reset_timeout=0, call_timeout=1e-9)
    assert cb.state is CLOSED
