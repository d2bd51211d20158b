from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from magray.ops.logging import MAX_LOGGED_IDS, configure, log_event, log_op, redact, timed

SECRET = "my bank password is hunter2"


@pytest.fixture(autouse=True)
def restore_magray_logger() -> Iterator[None]:
    logger = logging.getLogger("magray")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    for h in list(logger.handlers):
        if h not in handlers:
            logger.removeHandler(h)
            h.close()
    logger.setLevel(level)
    logger.propagate = propagate


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def parse_ts(ts: str) -> datetime:
    assert ts.endswith("Z")
    return datetime.fromisoformat(ts[:-1] + "+00:00")


# ----------------------------------------------------------------------------- formats


def test_json_lines_parse_and_carry_fields() -> None:
    out = io.StringIO()
    configure(fmt="json", level="INFO", stream=out)
    log = logging.getLogger("magray.memory")
    log.info("stored %d memories", 3, extra={"fields": {"layer": "l2", "n": 3, "msg": "clash"}})
    log.debug("not written")
    log_event(log, logging.WARNING, "slow", took_ms=12.5, ok=False)
    lines = json_lines(out)
    assert len(lines) == 2
    first, second = lines
    assert first["level"] == "INFO" and first["logger"] == "magray.memory"
    assert first["msg"] == "stored 3 memories"
    assert first["layer"] == "l2" and first["n"] == 3
    assert first["msg_"] == "clash"  # a field may not overwrite a reserved key
    ts = parse_ts(str(first["ts"]))
    assert ts.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - ts) < timedelta(minutes=5)
    assert second == {**second, "level": "WARNING", "msg": "slow", "took_ms": 12.5, "ok": False}


def test_json_includes_exceptions() -> None:
    out = io.StringIO()
    configure(fmt="json", level="ERROR", stream=out)
    try:
        raise KeyError("missing")
    except KeyError:
        logging.getLogger("magray").exception("lookup failed")
    (line,) = json_lines(out)
    assert line["level"] == "ERROR"
    assert "KeyError" in str(line["exc"]) and "Traceback" in str(line["exc"])


def test_text_lines_are_compact_and_carry_fields() -> None:
    out = io.StringIO()
    configure(fmt="text", level="INFO", stream=out)
    logging.getLogger("magray.embed").info(
        "batch done", extra={"fields": {"n": 32, "model": "all-MiniLM", "note": "two words"}}
    )
    (line,) = out.getvalue().splitlines()
    m = re.fullmatch(
        r"(\S+Z) INFO magray\.embed: batch done n=32 model=all-MiniLM note=\"two words\"", line
    )
    assert m, line
    parse_ts(m[1])


def test_level_filters_and_default_is_warning() -> None:
    out = io.StringIO()
    configure(stream=out)
    log = logging.getLogger("magray.x")
    log.info("quiet")
    log.warning("loud")
    assert "quiet" not in out.getvalue() and "loud" in out.getvalue()


def test_bad_format_or_level_is_refused() -> None:
    with pytest.raises(ValueError):
        configure(fmt="xml", stream=io.StringIO())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        configure(level="LOUD", stream=io.StringIO())


# ----------------------------------------------------------------------------- handlers


def test_reconfiguring_replaces_handlers_and_leaves_root_alone() -> None:
    root = logging.getLogger()
    root_handlers = list(root.handlers)
    magray = logging.getLogger("magray")
    foreign = Capture()
    magray.addHandler(foreign)

    first, second = io.StringIO(), io.StringIO()
    configure(fmt="text", level="INFO", stream=first)
    configure(fmt="json", level="INFO", stream=second)
    configure(fmt="json", level="INFO", stream=second)
    # Only the handlers configure() installed (other fixtures may attach their own).
    ours = [h for h in magray.handlers if getattr(h, "_magray_ops_handler", False)]
    assert len(ours) == 1
    assert foreign in magray.handlers
    assert root.handlers == root_handlers

    logging.getLogger("magray.t").info("once")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1
    assert len(foreign.records) == 1


def test_file_output_and_reconfigure_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "magray.log"
    configure(fmt="json", level="INFO", file=path)
    logging.getLogger("magray").info("to file", extra={"fields": {"k": 1}})
    file_handlers = [h for h in logging.getLogger("magray").handlers if hasattr(h, "baseFilename")]
    assert len(file_handlers) == 1
    configure(fmt="json", level="INFO", stream=io.StringIO())
    assert file_handlers[0].stream is None  # type: ignore[attr-defined]
    (line,) = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert line["msg"] == "to file" and line["k"] == 1


# ----------------------------------------------------------------------------- log_op / privacy


def test_log_op_writes_duration_and_caps_ids() -> None:
    out = io.StringIO()
    configure(fmt="json", level="INFO", stream=out)
    log = logging.getLogger("magray.memory")
    log_op(log, "search", duration_s=0.0004125, ids=[f"m{i}" for i in range(25)], k=5)
    log_op(log, "get", duration_s=0.002, ids=(7, 8))
    log_op(log, "noop", duration_s=0.0)
    search, get, noop = json_lines(out)
    assert search["level"] == "INFO"
    assert search["msg"] == "search" and search["op"] == "search"
    assert search["duration_ms"] == pytest.approx(0.4125, abs=1e-3)
    assert search["ids"] == [f"m{i}" for i in range(MAX_LOGGED_IDS)]
    assert search["ids_count"] == 25
    assert search["k"] == 5
    assert get["ids"] == [7, 8] and get["ids_count"] == 2
    assert "ids" not in noop and noop["duration_ms"] == 0.0
    assert MAX_LOGGED_IDS == 20


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_texts_and_queries_are_reduced_to_lengths(fmt: str) -> None:
    out = io.StringIO()
    configure(fmt=fmt, level="INFO", stream=out)  # type: ignore[arg-type]
    log = logging.getLogger("magray.memory")
    log_op(log, "add", duration_s=0.001, ids=["a"], text=SECRET)
    log_op(log, "add_batch", duration_s=0.001, texts=[SECRET, "ab", "c"])
    log_op(log, "search", duration_s=0.001, query=SECRET)
    log_event(log, logging.INFO, "event", text=SECRET)
    log.info("extra", extra={"fields": {"query": SECRET, "texts": (SECRET,)}})
    with timed(log, "timed_search", query=SECRET) as t:
        t.fields["text"] = SECRET
    written = out.getvalue()
    assert "hunter2" not in written
    n = len(SECRET)
    if fmt == "json":
        add, batch, search, event, extra, tsearch = json_lines(out)
        assert add["text_len"] == n and "text" not in add
        assert batch["texts_len"] == 3 and batch["texts_chars"] == n + 3 and "texts" not in batch
        assert search["query_len"] == n and "query" not in search
        assert event["text_len"] == n
        assert extra["query_len"] == n and extra["texts_len"] == 1
        assert tsearch["query_len"] == n and tsearch["text_len"] == n
    else:
        lines = written.splitlines()
        assert f"text_len={n}" in lines[0]
        assert f"texts_len=3 texts_chars={n + 3}" in lines[1]
        assert f"query_len={n}" in lines[2]


def test_redact_keeps_other_fields_and_handles_odd_values() -> None:
    assert redact({"text": "abc", "k": 1}) == {"text_len": 3, "k": 1}
    assert redact({"query": None}) == {"query_len": None}
    assert redact({"texts": "one string"}) == {"texts_len": 10}
    assert redact({"texts": iter(["ab", "cde"])}) == {"texts_len": 2, "texts_chars": 5}


def test_timed_measures_and_logs_errors() -> None:
    out = io.StringIO()
    configure(fmt="json", level="INFO", stream=out)
    log = logging.getLogger("magray.memory")
    with timed(log, "search", k=3) as t:
        sum(range(10000))
        t.ids = ["x", "y"]
    assert t.duration_s is not None and t.duration_s > 0
    with pytest.raises(ZeroDivisionError), timed(log, "broken"):
        1 / 0  # noqa: B018
    ok, broken = json_lines(out)
    assert ok["op"] == "search" and ok["k"] == 3 and ok["ids"] == ["x", "y"]
    assert ok["duration_ms"] == pytest.approx(t.duration_s * 1000, abs=1e-3)
    assert broken["op"] == "broken" and broken["error"] == "ZeroDivisionError"


def test_records_point_at_the_caller() -> None:
    configure(fmt="json", level="INFO", stream=io.StringIO())
    cap = Capture()
    logging.getLogger("magray").addHandler(cap)
    log = logging.getLogger("magray.memory")
    log_op(log, "a", duration_s=0.0)
    with timed(log, "b"):
        pass
    log_event(log, logging.INFO, "c")
    assert [r.funcName for r in cap.records] == ["test_records_point_at_the_caller"] * 3
    assert all(r.pathname == __file__ for r in cap.records)
