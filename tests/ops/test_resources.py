from __future__ import annotations

import threading
import time

import pytest

from magray.ops.resources import CheckReport, Readings, ResourceManager, read_memory

MiB = 1 << 20
GiB = 1 << 30
CALM = Readings(rss_bytes=100 * MiB, available_bytes=8 * GiB, total_bytes=16 * GiB)
RSS_HIGH = Readings(rss_bytes=3 * GiB, available_bytes=8 * GiB, total_bytes=16 * GiB)
LOW_AVAILABLE = Readings(rss_bytes=100 * MiB, available_bytes=1 * GiB, total_bytes=16 * GiB)
BOTH = Readings(rss_bytes=3 * GiB, available_bytes=1 * GiB, total_bytes=16 * GiB)


class FakeReader:
    def __init__(self, readings: Readings = CALM) -> None:
        self.readings = readings
        self.calls = 0
        self.fail = False

    def __call__(self) -> Readings:
        self.calls += 1
        if self.fail:
            raise OSError("cannot read /proc")
        return self.readings


class Applied:
    def __init__(self) -> None:
        self.values: list[int] = []

    def __call__(self, value: int) -> None:
        self.values.append(value)


def manager(reader: FakeReader, **kwargs: object) -> tuple[ResourceManager, Applied, Applied]:
    rm = ResourceManager(reader, rss_limit_bytes=2 * GiB, **kwargs)  # type: ignore[arg-type]
    cache, batch = Applied(), Applied()
    rm.register("l1_cache_bytes", normal=64 * MiB, minimum=4 * MiB, apply=cache)
    rm.register("embed_batch_size", normal=32, minimum=4, apply=batch)
    return rm, cache, batch


# ----------------------------------------------------------------------------- rules


def test_no_pressure_changes_nothing() -> None:
    rm, cache, batch = manager(FakeReader(CALM))
    for _ in range(3):
        report = rm.check()
        assert not report.pressure and report.reason is None
    assert report.readings == CALM
    assert report.knobs == {"l1_cache_bytes": 64 * MiB, "embed_batch_size": 32}
    assert cache.values == [] and batch.values == []


def test_rss_above_limit_halves_every_knob() -> None:
    rm, cache, batch = manager(FakeReader(RSS_HIGH))
    report = rm.check()
    assert report.pressure
    assert report.reason is not None and report.reason.startswith("rss:")
    assert "available" not in report.reason
    assert report.knobs == {"l1_cache_bytes": 32 * MiB, "embed_batch_size": 16}
    assert report.changed == {"l1_cache_bytes": (64 * MiB, 32 * MiB), "embed_batch_size": (32, 16)}
    assert cache.values == [32 * MiB] and batch.values == [16]


def test_low_available_memory_halves_every_knob() -> None:
    rm, cache, batch = manager(FakeReader(LOW_AVAILABLE))  # 1 of 16 GiB < 10 %
    report = rm.check()
    assert report.pressure
    assert report.reason is not None and report.reason.startswith("available:")
    assert cache.values == [32 * MiB] and batch.values == [16]


def test_both_reasons_are_reported() -> None:
    rm, _, _ = manager(FakeReader(BOTH))
    reason = rm.check().reason
    assert reason is not None and "rss:" in reason and "available:" in reason


def test_thresholds_are_exclusive_and_rss_rule_needs_a_limit() -> None:
    edge = Readings(rss_bytes=2 * GiB, available_bytes=1 * GiB, total_bytes=10 * GiB)
    rm, _, _ = manager(FakeReader(edge))
    assert not rm.check().pressure  # exactly at both thresholds is not pressure
    no_limit = ResourceManager(FakeReader(RSS_HIGH))
    assert not no_limit.check().pressure
    strict = ResourceManager(FakeReader(CALM), min_available_fraction=0.6)
    assert strict.check().pressure  # 8 of 16 GiB < 60 %


def test_knobs_never_go_below_their_minimum() -> None:
    rm, cache, batch = manager(FakeReader(RSS_HIGH))
    for _ in range(10):
        rm.check()
    assert rm.value("l1_cache_bytes") == 4 * MiB
    assert rm.value("embed_batch_size") == 4
    # apply was called only for real changes: 64->32->16->8->4 MiB and 32->16->8->4
    assert cache.values == [32 * MiB, 16 * MiB, 8 * MiB, 4 * MiB]
    assert batch.values == [16, 8, 4]


def test_knobs_come_back_after_two_calm_checks_and_not_above_normal() -> None:
    reader = FakeReader(RSS_HIGH)
    rm, _, batch = manager(reader)
    for _ in range(3):
        rm.check()
    assert rm.value("embed_batch_size") == 4
    reader.readings = CALM
    assert rm.check().changed == {}  # first calm check: nothing yet
    report = rm.check()  # second: one doubling step
    assert report.knobs == {"l1_cache_bytes": 16 * MiB, "embed_batch_size": 8}
    values = []
    for _ in range(10):
        values.append(rm.check().knobs["embed_batch_size"])
    assert values == [8, 16, 16, 32, 32, 32, 32, 32, 32, 32]
    assert rm.value("l1_cache_bytes") == 64 * MiB
    assert batch.values == [16, 8, 4, 8, 16, 32]


def test_pressure_resets_the_calm_streak() -> None:
    reader = FakeReader(RSS_HIGH)
    rm, _, _ = manager(reader)
    rm.check()  # 32 -> 16
    reader.readings = CALM
    rm.check()  # calm 1
    reader.readings = RSS_HIGH
    rm.check()  # 16 -> 8, streak reset
    reader.readings = CALM
    assert rm.check().knobs["embed_batch_size"] == 8  # calm 1 again
    assert rm.check().knobs["embed_batch_size"] == 16  # calm 2


def test_odd_values_round_down_then_come_back_exactly() -> None:
    reader = FakeReader(RSS_HIGH)
    rm = ResourceManager(reader, rss_limit_bytes=GiB)
    seen = Applied()
    rm.register("threads", normal=5, minimum=1, apply=seen)
    for _ in range(4):
        rm.check()
    reader.readings = CALM
    for _ in range(8):
        rm.check()
    assert seen.values == [2, 1, 2, 4, 5]


def test_a_failing_apply_keeps_the_old_value_and_does_not_stop_others() -> None:
    reader = FakeReader(RSS_HIGH)
    rm, cache, _ = manager(reader)
    broken_calls: list[int] = []

    def broken(value: int) -> None:
        broken_calls.append(value)
        raise RuntimeError("cannot resize")

    rm.register("hnsw_ef", normal=128, minimum=16, apply=broken)
    report = rm.check()
    assert report.pressure
    assert len(report.errors) == 1 and "hnsw_ef" in report.errors[0]
    assert report.knobs["hnsw_ef"] == 128  # the change did not take effect
    assert report.knobs["l1_cache_bytes"] == 32 * MiB
    assert cache.values == [32 * MiB]
    rm.check()
    assert broken_calls == [64, 64]  # tried again on the next check


def test_a_failing_reader_changes_nothing() -> None:
    reader = FakeReader(RSS_HIGH)
    rm, _, batch = manager(reader)
    rm.check()  # 32 -> 16
    reader.readings = CALM
    rm.check()  # calm 1
    reader.fail = True
    report = rm.check()
    assert isinstance(report, CheckReport)
    assert not report.pressure and report.readings is None
    assert report.errors and "OSError" in report.errors[0]
    assert report.knobs["embed_batch_size"] == 16
    reader.fail = False
    assert rm.check().knobs["embed_batch_size"] == 32  # the calm streak survived the failure
    assert batch.values == [16, 32]


def test_a_reader_returning_garbage_is_an_error_not_a_crash() -> None:
    rm = ResourceManager(lambda: {"rss": 1})  # type: ignore[arg-type,return-value]
    report = rm.check()
    assert report.readings is None and "Readings" in report.errors[0]


def test_register_validates() -> None:
    rm = ResourceManager(FakeReader())
    rm.register("a", normal=8, minimum=2, apply=Applied())
    with pytest.raises(ValueError):
        rm.register("a", normal=8, minimum=2, apply=Applied())
    with pytest.raises(ValueError):
        rm.register("b", normal=2, minimum=8, apply=Applied())
    with pytest.raises(ValueError):
        rm.register("c", normal=8, minimum=0, apply=Applied())
    with pytest.raises(ValueError):
        ResourceManager(FakeReader(), interval=0)
    with pytest.raises(ValueError):
        ResourceManager(FakeReader(), min_available_fraction=1.5)
    rm.unregister("a")
    with pytest.raises(KeyError):
        rm.value("a")


def test_limits_describe_the_state() -> None:
    clock_value = [100.0]
    reader = FakeReader(LOW_AVAILABLE)
    rm, _, _ = manager(reader, clock=lambda: clock_value[0], interval=2.5)
    before = rm.limits()
    assert before["readings"] is None and before["pressure"] is False
    report = rm.check()
    assert report.at == 100.0
    reader.readings = CALM
    clock_value[0] = 105.0
    rm.check()
    lim = rm.limits()
    assert lim["knobs"]["embed_batch_size"] == {"current": 16, "normal": 32, "minimum": 4}
    assert lim["thresholds"] == {
        "rss_limit_bytes": 2 * GiB,
        "min_available_fraction": 0.10,
        "min_available_bytes": int(0.10 * 16 * GiB),
        "interval_s": 2.5,
    }
    assert lim["readings"] == CALM.as_dict()
    assert lim["pressure"] is False and lim["reason"] is None
    assert lim["last_pressure_reason"] == report.reason
    assert lim["last_pressure_at"] == 100.0 and lim["last_check_at"] == 105.0
    assert lim["running"] is False


# ----------------------------------------------------------------------------- thread


def wait_for(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.005)
    return False


def test_thread_checks_on_its_interval_and_stops_promptly() -> None:
    reader = FakeReader(RSS_HIGH)
    rm, _, _ = manager(reader, interval=0.01)

    def ours() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "magray-resources"}

    before = ours()  # other stores in this process may run managers of their own
    rm.start()
    rm.start()  # no second thread
    try:
        assert rm.running
        assert wait_for(lambda: reader.calls >= 5)
        assert wait_for(lambda: rm.value("embed_batch_size") == 4)
        assert len(ours() - before) == 1
    finally:
        rm.stop()
    assert not rm.running
    calls = reader.calls
    time.sleep(0.05)
    assert reader.calls == calls


def test_stop_does_not_wait_for_a_long_interval() -> None:
    reader = FakeReader(CALM)
    rm = ResourceManager(reader, interval=60.0)
    rm.start()
    assert wait_for(lambda: reader.calls == 1)  # the first check runs at once
    t0 = time.monotonic()
    rm.stop()
    assert time.monotonic() - t0 < 1.0
    assert not rm.running
    rm.start()  # restartable
    assert wait_for(lambda: reader.calls == 2)
    rm.stop()


def test_thread_survives_failing_reader_and_failing_apply() -> None:
    reader = FakeReader(RSS_HIGH)
    calls = {"n": 0}

    def flaky() -> Readings:
        calls["n"] += 1
        if calls["n"] % 2:
            raise OSError("flaky reader")
        return reader()

    def broken(value: int) -> None:
        raise RuntimeError("broken apply")

    rm = ResourceManager(flaky, interval=0.005, rss_limit_bytes=GiB)
    rm.register("broken", normal=64, minimum=1, apply=broken)
    good = Applied()
    rm.register("good", normal=64, minimum=1, apply=good)
    with rm:
        assert wait_for(lambda: calls["n"] >= 20)
        assert rm.running
    assert not rm.running
    assert good.values[:6] == [32, 16, 8, 4, 2, 1]
    assert rm.value("broken") == 64


def test_default_reader_reads_this_process() -> None:
    r = read_memory()
    assert r.rss_bytes > 1 * MiB
    assert 0 < r.available_bytes <= r.total_bytes
    rm = ResourceManager(interval=1.0)
    assert rm.check().readings is not None
