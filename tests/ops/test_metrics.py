from __future__ import annotations

import json
import math
import re
import threading

import pytest

from magray.ops.metrics import (
    DEFAULT_LATENCY_BUCKETS,
    BucketMismatchError,
    Metrics,
    SnapshotError,
)

# ----------------------------------------------------------------------------- helpers


def true_percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of the raw data."""
    s = sorted(values)
    k = max(0, math.ceil(q / 100 * len(s)) - 1)
    return s[k]


def bucket_width(buckets: tuple[float, ...], value: float) -> float:
    lower = 0.0
    for b in buckets:
        if value <= b:
            return b - lower
        lower = b
    return math.inf


# A small parser of the Prometheus text exposition format 0.0.4.
METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
LABEL_PAIR = rf"{LABEL_NAME}={LABEL_VALUE}"
VALUE = r"(?:[+-]?Inf|NaN|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
SAMPLE_RE = re.compile(
    rf"^(?P<name>{METRIC_NAME})(?:\{{(?P<labels>{LABEL_PAIR}(?:,{LABEL_PAIR})*)?\}})?"
    rf" (?P<value>{VALUE})$"
)
HELP_RE = re.compile(rf"^# HELP (?P<name>{METRIC_NAME}) (?P<doc>(?:[^\\\n]|\\[\\n])*)$")
TYPE_RE = re.compile(
    rf"^# TYPE (?P<name>{METRIC_NAME}) (?P<type>counter|gauge|histogram|summary|untyped)$"
)
PAIR_RE = re.compile(rf"({LABEL_NAME})=({LABEL_VALUE})")


def unescape(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            nxt = text[i + 1]
            out.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_prometheus(text: str) -> dict[str, dict[str, object]]:
    """Check every line against the format rules; return families with help, type, samples."""
    assert text.endswith("\n"), "the exposition must end with a line feed"
    families: dict[str, dict[str, object]] = {}
    current: str | None = None
    for line in text[:-1].split("\n"):
        assert line, "no blank lines expected"
        if line.startswith("#"):
            if m := HELP_RE.match(line):
                name = m["name"]
                assert name not in families, f"HELP for {name} given twice"
                families[name] = {"help": unescape(m["doc"]), "type": None, "samples": []}
                current = name
                continue
            m = TYPE_RE.match(line)
            assert m, f"bad comment line {line!r}"
            assert current is not None and m["name"] == current, "TYPE must follow its HELP"
            assert families[current]["type"] is None, "TYPE given twice"
            assert not families[current]["samples"], "TYPE must precede the samples"
            families[current]["type"] = m["type"]
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"bad sample line {line!r}"
        assert current is not None
        name = m["name"]
        kind = families[current]["type"]
        if kind == "counter":
            assert name == current
        elif kind == "histogram":
            assert name in (f"{current}_bucket", f"{current}_sum", f"{current}_count"), name
        labels = {k: unescape(v[1:-1]) for k, v in PAIR_RE.findall(m["labels"] or "")}
        assert len(labels) == len(PAIR_RE.findall(m["labels"] or "")), "duplicate label"
        samples = families[current]["samples"]
        assert isinstance(samples, list)
        samples.append((name, labels, float(m["value"])))
    return families


def check_histogram_family(name: str, family: dict[str, object]) -> list[tuple[float, float]]:
    samples = family["samples"]
    assert isinstance(samples, list)
    buckets = [(s[1]["le"], s[2]) for s in samples if s[0] == f"{name}_bucket"]
    assert buckets[-1][0] == "+Inf"
    les = [float(le) for le, _ in buckets]
    assert les == sorted(les) and len(set(les)) == len(les), "le must increase"
    counts = [c for _, c in buckets]
    assert counts == sorted(counts), "bucket counts must be cumulative"
    assert samples[-2][0] == f"{name}_sum"
    assert samples[-1][0] == f"{name}_count"
    assert samples[-1][2] == counts[-1], "+Inf bucket equals _count"
    return list(zip(les, counts))


# ----------------------------------------------------------------------------- counters


def test_counter_counts_and_is_idempotent_by_name() -> None:
    m = Metrics()
    c = m.counter("adds", "Memories added")
    c.inc()
    c.inc(4)
    assert m.counter("adds") is c
    assert c.value == 5
    with pytest.raises(ValueError):
        c.inc(-1)
    with pytest.raises(ValueError):
        m.histogram("adds", "clash")
    with pytest.raises(ValueError):
        m.counter("bad name")


def test_counter_is_thread_safe() -> None:
    m = Metrics()

    def work() -> None:
        for _ in range(5000):
            m.counter("hits", "h").inc()
            m.histogram("lat", "l").observe(0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.counter("hits").value == 20000
    assert m.histogram("lat").count == 20000


# ----------------------------------------------------------------------------- histograms


def test_default_buckets_cover_sub_millisecond_to_seconds() -> None:
    assert DEFAULT_LATENCY_BUCKETS[0] <= 0.00005
    assert DEFAULT_LATENCY_BUCKETS[-1] >= 10.0
    assert sum(1 for b in DEFAULT_LATENCY_BUCKETS if b <= 0.001) >= 4


def test_histogram_buckets_sum_count_min_max() -> None:
    h = Metrics().histogram("h", "x", buckets=(1.0, 2.0, 5.0))
    for v in (0.5, 1.0, 1.5, 2.0, 4.0, 7.0):
        h.observe(v)
    # le is inclusive: 1.0 is in the first bucket, 2.0 in the second.
    assert h.bucket_counts() == [2, 2, 1, 1]
    assert h.count == 6
    assert h.sum == pytest.approx(16.0)
    assert h.min == 0.5 and h.max == 7.0
    assert h.mean == pytest.approx(16.0 / 6)


def test_histogram_reregistration_with_other_buckets_is_refused() -> None:
    m = Metrics()
    h = m.histogram("h", "x", buckets=(1.0, 2.0))
    assert m.histogram("h", buckets=(1.0, 2.0)) is h
    with pytest.raises(ValueError, match="buckets"):
        m.histogram("h", buckets=(1.0, 3.0))
    with pytest.raises(ValueError):
        m.histogram("g", buckets=(2.0, 1.0))


@pytest.mark.parametrize("q", [50, 90, 95, 99])
def test_percentiles_of_uniform_latencies_within_bucket_resolution(q: float) -> None:
    h = Metrics().histogram("search", "s")
    values = [i * 1e-6 for i in range(1, 20001)]  # 1 µs .. 20 ms, evenly spaced
    for v in values:
        h.observe(v)
    expected = true_percentile(values, q)
    estimate = h.percentile(q)
    assert estimate is not None
    assert abs(estimate - expected) <= bucket_width(DEFAULT_LATENCY_BUCKETS, expected)


def test_percentiles_of_log_uniform_latencies_within_bucket_resolution() -> None:
    h = Metrics().histogram("get", "g")
    # 100 µs to 1 s, log-uniform: every decade holds the same number of observations.
    values = [10 ** (-4 + 4 * i / 9999) for i in range(10000)]
    for v in values:
        h.observe(v)
    for q in (10, 25, 50, 75, 95, 99):
        expected = true_percentile(values, q)
        estimate = h.percentile(q)
        assert estimate is not None
        assert abs(estimate - expected) <= bucket_width(DEFAULT_LATENCY_BUCKETS, expected), q


def test_percentile_interpolates_linearly_inside_a_bucket() -> None:
    h = Metrics().histogram("h", "x", buckets=(1.0, 2.0, 3.0))
    # 1000 values spread evenly over (1, 2]: one bucket, so the estimate is pure interpolation.
    for i in range(1, 1001):
        h.observe(1.0 + i / 1000)
    p50 = h.percentile(50)
    p90 = h.percentile(90)
    assert p50 is not None and p90 is not None
    # Edges narrowed to the observed range (1.001 .. 2.0).
    assert p50 == pytest.approx(1.001 + 0.999 * 0.5, abs=1e-9)
    assert p90 == pytest.approx(1.001 + 0.999 * 0.9, abs=1e-9)


def test_percentile_edges_and_overflow_bucket() -> None:
    h = Metrics().histogram("h", "x", buckets=(1.0,))
    assert h.percentile(50) is None
    for v in (0.2, 0.4, 3.0, 5.0):
        h.observe(v)
    assert h.percentile(0) == 0.2
    assert h.percentile(100) == 5.0
    p75 = h.percentile(75)  # rank 3 of 4: halfway through the overflow bucket (1, 5]
    assert p75 is not None and p75 == pytest.approx(3.0)
    for q in (1, 10, 30, 60, 99):
        est = h.percentile(q)
        assert est is not None and 0.2 <= est <= 5.0
    with pytest.raises(ValueError):
        h.percentile(101)
    with pytest.raises(ValueError):
        h.percentile(-1)


def test_time_context_manager_observes_even_on_error() -> None:
    h = Metrics().histogram("h", "x")
    with h.time():
        pass
    with pytest.raises(RuntimeError), h.time():
        raise RuntimeError("boom")
    assert h.count == 2
    assert h.min is not None and 0 <= h.min < 1.0


# ----------------------------------------------------------------------------- prometheus


def test_prometheus_output_follows_the_text_format() -> None:
    m = Metrics()
    m.counter("adds", "Memories added").inc(3)
    m.counter("errors", 'Errors, with "quotes" and a \\ backslash\nand a newline').inc()
    h = m.histogram("search_seconds", "Search latency", buckets=(0.001, 0.01, 0.1))
    for v in (0.0005, 0.002, 0.003, 0.05, 0.5):
        h.observe(v)
    text = m.render_prometheus()
    families = parse_prometheus(text)

    assert set(families) == {"magray_adds_total", "magray_errors_total", "magray_search_seconds"}
    assert families["magray_adds_total"]["type"] == "counter"
    assert families["magray_adds_total"]["samples"] == [("magray_adds_total", {}, 3.0)]
    assert families["magray_errors_total"]["help"] == (
        'Errors, with "quotes" and a \\ backslash\nand a newline'
    )
    fam = families["magray_search_seconds"]
    assert fam["type"] == "histogram"
    assert check_histogram_family("magray_search_seconds", fam) == [
        (0.001, 1.0),
        (0.01, 3.0),
        (0.1, 4.0),
        (math.inf, 5.0),
    ]
    samples = fam["samples"]
    assert isinstance(samples, list)
    assert samples[-2][2] == pytest.approx(0.5555)


def test_prometheus_label_values_are_escaped() -> None:
    m = Metrics()
    m.counter("adds", "a").inc()
    m.histogram("lat", "l", buckets=(0.5,)).observe(0.1)
    tricky = 'C:\\store "main"\nline2'
    families = parse_prometheus(m.render_prometheus(labels={"store": tricky}))
    for fam in families.values():
        samples = fam["samples"]
        assert isinstance(samples, list)
        for _, labels, _ in samples:
            assert labels["store"] == tricky
    with pytest.raises(ValueError):
        m.render_prometheus(labels={"le": "x"})
    with pytest.raises(ValueError):
        m.render_prometheus(labels={"bad-name": "x"})


def test_prometheus_default_buckets_and_empty_registry() -> None:
    assert Metrics().render_prometheus() == ""
    m = Metrics()
    m.histogram("lat", "l").observe(0.00003)
    fam = parse_prometheus(m.render_prometheus())["magray_lat"]
    pairs = check_histogram_family("magray_lat", fam)
    assert [le for le, _ in pairs[:-1]] == list(DEFAULT_LATENCY_BUCKETS)
    assert all(c == 1.0 for _, c in pairs)


# ----------------------------------------------------------------------------- snapshots


def _populated() -> Metrics:
    m = Metrics()
    m.counter("adds", "Memories added").inc(7)
    h = m.histogram("search", "Search latency")
    for v in (0.0001, 0.0003, 0.002, 0.02):
        h.observe(v)
    return m


def test_snapshot_is_json_and_round_trips() -> None:
    m = _populated()
    snap = json.loads(json.dumps(m.snapshot()))
    again = Metrics.from_snapshot(snap)
    assert again.snapshot() == m.snapshot()
    assert again.summary() == m.summary()


def test_merge_adds_counts_across_invocations() -> None:
    first = _populated()
    stored = json.dumps(first.snapshot())

    second = Metrics()  # a later process
    second.counter("adds", "Memories added").inc(2)
    second.counter("deletes", "Memories deleted").inc(1)
    h = second.histogram("search", "Search latency")
    h.observe(0.00002)
    h.observe(3.0)
    second.merge(json.loads(stored))

    assert second.counter("adds").value == 9
    assert second.counter("deletes").value == 1
    assert h.count == 6
    assert h.sum == pytest.approx(0.0001 + 0.0003 + 0.002 + 0.02 + 0.00002 + 3.0)
    assert h.min == 0.00002 and h.max == 3.0
    expected = first.histogram("search").bucket_counts()
    expected[0] += 1  # 20 µs
    expected[DEFAULT_LATENCY_BUCKETS.index(5.0)] += 1  # 3 s
    assert h.bucket_counts() == expected

    # Merging the same snapshot again adds it again.
    second.merge(json.loads(stored))
    assert second.counter("adds").value == 16
    assert h.count == 10


def test_merge_refuses_histograms_with_other_buckets_and_changes_nothing() -> None:
    other = Metrics()
    other.counter("adds", "a").inc(5)
    other.histogram("search", "s", buckets=(0.001, 0.01)).observe(0.002)
    snap = other.snapshot()

    m = _populated()
    before = m.snapshot()
    with pytest.raises(BucketMismatchError, match="search"):
        m.merge(snap)
    assert m.snapshot() == before  # the counter in the same snapshot was not added either


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.update(version=99),
        lambda s: s["counters"]["adds"].update(value=-1),
        lambda s: s["histograms"]["search"]["counts"].pop(),
        lambda s: s["histograms"]["search"].update(count=1),
        lambda s: s["histograms"]["search"].update(buckets=[0.1, 0.01] + [1.0] * 15),
    ],
)
def test_merge_refuses_malformed_snapshots(mutate: object) -> None:
    snap = json.loads(json.dumps(_populated().snapshot()))
    mutate(snap)  # type: ignore[operator]
    m = Metrics()
    with pytest.raises(SnapshotError):
        m.merge(snap)
    assert m.snapshot()["counters"] == {} and m.snapshot()["histograms"] == {}


def test_summary_reports_percentiles_and_counters() -> None:
    m = Metrics()
    m.counter("adds", "a").inc(2)
    m.histogram("empty", "e")
    h = m.histogram("lat", "l", buckets=(0.001, 0.002, 0.004))
    for i in range(1, 101):
        h.observe(i * 0.00004)  # 40 µs .. 4 ms
    s = m.summary()
    assert s["adds"] == {"value": 2}
    assert s["empty"]["count"] == 0 and s["empty"]["p50"] is None and s["empty"]["mean"] is None
    lat = s["lat"]
    assert lat["count"] == 100
    assert lat["mean"] == pytest.approx(0.00202)
    for key, true in (("p50", 0.002), ("p95", 0.0038), ("p99", 0.00396)):
        value = lat[key]
        assert isinstance(value, float)
        assert abs(value - true) <= 0.002, key
    p50, p95, p99 = lat["p50"], lat["p95"], lat["p99"]
    assert isinstance(p50, float) and isinstance(p95, float) and isinstance(p99, float)
    assert p50 <= p95 <= p99
    json.dumps(s)
