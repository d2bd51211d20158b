"""Namespaces: each one is its own store, ``ROOT/<namespace>``, opened on first use.

At most ``max_open`` stores stay open; past that the least recently used one that no
request is using is flushed and closed (reopening it later costs an index load, never
data). A store being opened or closed is waited for, so one namespace is never open
twice. While a store is open, ``ROOT/<namespace>/serving.json`` tells local commands
(``magray --store ROOT/<namespace> ...``) which server holds it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from magray.errors import InvalidInputError, NotFoundError

_LOG = logging.getLogger("magray.server")
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
SERVING_FILE = "serving.json"


def check_namespace(name: str) -> str:
    """A valid namespace name (it is a directory name under the root); InvalidInputError
    otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidInputError(
            f"namespace {name!r} is not valid: use 1-63 characters of a-z, 0-9, '.', '_' "
            "and '-', starting with a letter or digit"
        )
    return name


class _Entry:
    __slots__ = ("mem", "users")

    def __init__(self, mem: Any) -> None:
        self.mem = mem
        self.users = 0


class Tenants:
    """The open stores of a server, by namespace. Thread-safe."""

    def __init__(
        self,
        root: Path,
        open_store: Callable[[Path], Any],
        *,
        max_open: int = 16,
        serving: dict[str, Any] | None = None,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        if max_open < 1:
            raise InvalidInputError(f"max_open must be at least 1, got {max_open}")
        self.root = root
        self._open_store = open_store
        self._max_open = max_open
        self._serving = serving
        self._on_change = on_change
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Entry] = OrderedDict()
        self._busy: dict[str, threading.Event] = {}  # namespaces being opened or closed
        self._closed = False

    def exists(self, namespace: str) -> bool:
        return (self.root / namespace / "db").is_dir()

    @contextlib.contextmanager
    def use(self, namespace: str, *, create: bool) -> Iterator[Any]:
        """The namespace's Memory for the length of one request. A namespace with no
        store yet is created by a write (create=True); a read raises NotFoundError."""
        check_namespace(namespace)
        mem = self._acquire(namespace, create)
        try:
            yield mem
        finally:
            self._release(namespace)

    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def open_memories(self) -> list[Any]:
        """The memories open now (a snapshot; for metrics)."""
        with self._lock:
            return [entry.mem for entry in self._open.values()]

    def _acquire(self, ns: str, create: bool) -> Any:
        while True:
            with self._lock:
                if self._closed:
                    raise InvalidInputError("the server is shutting down; retry on another")
                entry = self._open.get(ns)
                if entry is not None:
                    entry.users += 1
                    self._open.move_to_end(ns)
                    return entry.mem
                busy = self._busy.get(ns)
                if busy is None:
                    busy = self._busy[ns] = threading.Event()
                    break
            busy.wait()
        try:
            if not create and not self.exists(ns):
                raise NotFoundError(
                    f"namespace {ns!r} has no store yet; write to it first (add creates it)"
                )
            mem = self._open_store(self.root / ns)
            self._mark_serving(ns)
        except BaseException:
            with self._lock:
                del self._busy[ns]
            busy.set()
            raise
        with self._lock:
            entry = self._open[ns] = _Entry(mem)
            entry.users = 1
            del self._busy[ns]
            victims = self._victims()
            count = len(self._open)
        busy.set()
        self._close(victims)
        if self._on_change is not None:
            self._on_change(count)
        return mem

    def _release(self, ns: str) -> None:
        with self._lock:
            entry = self._open.get(ns)
            if entry is not None:
                entry.users -= 1
            victims = self._victims()
        self._close(victims)

    def _victims(self) -> list[tuple[str, _Entry, threading.Event]]:
        """Idle stores past the bound, least recently used first (caller holds the lock);
        each is marked busy until it is closed."""
        out = []
        for ns in list(self._open):
            if len(self._open) <= self._max_open:
                break
            entry = self._open[ns]
            if entry.users == 0:
                del self._open[ns]
                event = self._busy[ns] = threading.Event()
                out.append((ns, entry, event))
        return out

    def _close(self, victims: list[tuple[str, _Entry, threading.Event]]) -> None:
        for ns, entry, event in victims:
            try:
                self._unmark_serving(ns)
                entry.mem.close()
            except Exception:
                _LOG.exception("closing namespace %s failed", ns)
            finally:
                with self._lock:
                    self._busy.pop(ns, None)
                    count = len(self._open)
                event.set()
                if self._on_change is not None:
                    self._on_change(count)

    def close_all(self) -> None:
        """Flush and close every store; new requests are refused from now on. Call it
        once the gRPC server has drained its requests (graceful shutdown)."""
        with self._lock:
            self._closed = True
            entries = list(self._open.items())
            self._open.clear()
        for ns, entry in entries:
            try:
                self._unmark_serving(ns)
                entry.mem.close()
            except Exception:
                _LOG.exception("closing namespace %s failed", ns)
        if self._on_change is not None:
            self._on_change(0)

    def _mark_serving(self, ns: str) -> None:
        if self._serving is None:
            return
        path = self.root / ns / SERVING_FILE
        tmp = path.with_name(f".{SERVING_FILE}.tmp")
        tmp.write_text(json.dumps({**self._serving, "namespace": ns, "pid": os.getpid()}))
        os.replace(tmp, path)

    def _unmark_serving(self, ns: str) -> None:
        if self._serving is not None:
            (self.root / ns / SERVING_FILE).unlink(missing_ok=True)
