"""Logging set-up for magray: compact text lines or JSON lines, with structured fields.

:func:`configure` installs one handler set on the ``magray`` logger (every magray module logs
to a child of it). Calling it again replaces those handlers rather than adding more, and it
never touches the root logger's handlers. The ``magray`` logger stops propagating to the root
logger once configured, so that no line is written twice.

Two formats:

* ``text``: ``2024-05-01T12:00:00.123Z INFO magray.memory: search duration_ms=0.412 k=5``
  (time in UTC, level, logger, message, then ``key=value`` fields; values with spaces, quotes
  or ``=`` are JSON-quoted).
* ``json``: one JSON object per line with ``ts`` (ISO 8601, UTC), ``level``, ``logger``,
  ``msg``, every structured field, and ``exc`` when an exception is attached. A field whose
  name clashes with one of these keys gets a trailing underscore (``msg_``).

Structured fields are passed with ``extra={"fields": {...}}`` or, more simply, with the
keyword helpers :func:`log_event`, :func:`log_op` and :func:`timed`.

Privacy rule
------------
magray stores people's notes and conversations, and logs must not leak them. A structured
field named ``text``, ``texts`` or ``query`` is never written; it is replaced by its length:

* ``text="..."``   becomes ``text_len=<characters>``
* ``query="..."``  becomes ``query_len=<characters>``
* ``texts=[...]``  becomes ``texts_len=<number of texts>`` and ``texts_chars=<characters in all>``

A value that has no length is replaced by ``<name>_len=None``. The rule is applied by the
helpers and again by both formatters, so it also holds for fields passed through ``extra``.
Log messages themselves are not inspected: pass texts as fields, never inside the message.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sized
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Literal, TextIO

__all__ = [
    "LOGGER_NAME",
    "MAX_LOGGED_IDS",
    "JsonFormatter",
    "TextFormatter",
    "configure",
    "log_event",
    "log_op",
    "redact",
    "timed",
]

#: The logger every magray module logs under.
LOGGER_NAME = "magray"
#: log_op writes at most this many ids, then only their count.
MAX_LOGGED_IDS = 20

PRIVATE_FIELDS = frozenset({"text", "texts", "query"})
_RESERVED = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})
_MARK = "_magray_ops_handler"
_configure_lock = threading.Lock()

# Frames between the caller of log_op / a timed block and the logger call in _emit.
_STACKLEVEL = 3


def _length(value: object) -> int | None:
    return len(value) if isinstance(value, Sized) else None


def redact(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with ``text``, ``texts`` and ``query`` replaced by their lengths.

    See the privacy rule in the module documentation. Other fields are kept unchanged.
    """
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in PRIVATE_FIELDS:
            out[key] = value
        elif key == "texts" and not isinstance(value, (str, bytes)):
            items = list(value) if isinstance(value, Iterable) else None
            if items is None:
                out["texts_len"] = None
            else:
                out["texts_len"] = len(items)
                lengths = [_length(t) for t in items]
                out["texts_chars"] = (
                    sum(n for n in lengths if n is not None)
                    if all(n is not None for n in lengths)
                    else None
                )
        else:
            out[f"{key}_len"] = _length(value)
    return out


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = record.__dict__.get("fields")
    if not isinstance(fields, Mapping):
        return {}
    return redact(fields)


def _iso_utc(created: float) -> str:
    stamp = datetime.fromtimestamp(created, tz=timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        if value and not any(c.isspace() or c in '"=' for c in value):
            return value
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return repr(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and infinities are not JSON
    return value


class TextFormatter(logging.Formatter):
    """``<UTC time> <LEVEL> <logger>: <message> key=value ...``"""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{_iso_utc(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        ]
        for key, value in _record_fields(record).items():
            parts.append(f"{key}={_text_value(value)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``msg`` and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _record_fields(record).items():
            name = key
            while name in obj or name in _RESERVED:
                name += "_"
            obj[name] = _json_safe(value)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        return json.dumps(obj, ensure_ascii=False, default=str)


def _parse_level(level: int | str) -> int:
    if isinstance(level, bool):
        raise ValueError(f"invalid log level {level!r}")
    if isinstance(level, int):
        return level
    value = logging.getLevelName(str(level).upper())
    if not isinstance(value, int):
        raise ValueError(
            f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    return value


def configure(
    *,
    fmt: Literal["text", "json"] = "text",
    level: int | str = "WARNING",
    file: str | os.PathLike[str] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Set up the ``magray`` logger.

    ``fmt`` chooses compact text or JSON lines; ``level`` the lowest level written. Lines go
    to ``file`` (appended, UTF-8) and/or ``stream``; with neither, to standard error. Calling
    again replaces the handlers a previous call installed, closing its file; handlers added
    by others to the ``magray`` logger and every handler of the root logger are left alone.
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}; use 'text' or 'json'")
    lvl = _parse_level(level)
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    handlers: list[logging.Handler] = []
    if file is not None:
        path = os.path.expanduser(os.fspath(file))
        handlers.append(logging.FileHandler(path, mode="a", encoding="utf-8"))
    if stream is not None or file is None:
        handlers.append(logging.StreamHandler(stream if stream is not None else sys.stderr))
    for h in handlers:
        h.setFormatter(formatter)
        setattr(h, _MARK, True)
    logger = logging.getLogger(LOGGER_NAME)
    with _configure_lock:
        for old in list(logger.handlers):
            if getattr(old, _MARK, False):
                logger.removeHandler(old)
                old.close()
        for h in handlers:
            logger.addHandler(h)
        logger.setLevel(lvl)
        logger.propagate = False


def _emit(logger: logging.Logger, level: int, msg: str, fields: Mapping[str, Any]) -> None:
    logger.log(level, msg, extra={"fields": dict(fields)}, stacklevel=_STACKLEVEL)


def log_event(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """Log ``msg`` at ``level`` with structured ``fields`` (the privacy rule applies)."""
    if logger.isEnabledFor(level):
        _emit(logger, level, msg, redact(fields))


def _id_value(x: object) -> object:
    return x if isinstance(x, (str, int)) and not isinstance(x, bool) else str(x)


def _op_fields(
    op: str, duration_s: float, ids: Iterable[object], fields: Mapping[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {"op": op, "duration_ms": round(duration_s * 1000.0, 3)}
    id_list = list(ids)
    if id_list:
        out["ids"] = [_id_value(x) for x in id_list[:MAX_LOGGED_IDS]]
        out["ids_count"] = len(id_list)
    for key, value in redact(fields).items():
        out.setdefault(key, value)
    return out


def log_op(
    logger: logging.Logger,
    op: str,
    *,
    duration_s: float,
    ids: Iterable[object] = (),
    **fields: Any,
) -> None:
    """Log one operation at INFO: its name, duration in ms, the ids it touched, and fields.

    Fields written: ``op``, ``duration_ms`` (rounded to the microsecond), ``ids`` (the first
    :data:`MAX_LOGGED_IDS` ids) and ``ids_count`` (how many there were in all) when ids are
    given, then ``fields`` with the privacy rule applied: ``text``, ``texts`` and ``query``
    become their lengths, never their content.
    """
    if logger.isEnabledFor(logging.INFO):
        _emit(logger, logging.INFO, op, _op_fields(op, duration_s, ids, fields))


class timed:  # lower-case: used like a function, ``with timed(log, "search"):``
    """Context manager: time the block, then :func:`log_op` it.

    The object it yields lets the block add what it learns: assign ``ids`` (for example the
    ids a search returned) or put entries into ``fields``. When the block raises, the line
    also carries ``error`` (the exception's type name), and the exception propagates.
    """

    def __init__(self, logger: logging.Logger, op: str, **fields: Any) -> None:
        self.logger = logger
        self.op = op
        self.fields: dict[str, Any] = dict(fields)
        self.ids: Iterable[object] = ()
        self.duration_s: float | None = None
        self._start = 0.0

    def __enter__(self) -> timed:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.duration_s = time.perf_counter() - self._start
        if not self.logger.isEnabledFor(logging.INFO):
            return
        fields = dict(self.fields)
        if exc_type is not None:
            fields["error"] = exc_type.__name__
        _emit(
            self.logger,
            logging.INFO,
            self.op,
            _op_fields(self.op, self.duration_s, self.ids, fields),
        )
