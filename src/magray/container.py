"""A small dependency-injection container that wires magray's parts together.

The store, the indexes, the embedder, the embedding cache, the circuit breaker, the metrics and
the resource manager depend on one another. Rather than have the CLI and ``magray.open`` each
build them by hand, both register *factories* with a :class:`Container` and ask it for the
parts they need; the container builds each part on first use, in dependency order, and tears
everything down again in reverse order.

::

    c = Container()
    c.singleton(Config, lambda r: Config.load())
    c.singleton(Store, lambda r: Store(r.resolve(Config)))
    c.singleton(Embedder, make_embedder)          # a class, an ABC or a Protocol
    c.scoped("request_id", lambda r: uuid4().hex)  # a string key also works
    with c:
        store = c.resolve(Store)                  # typed as Store
    # leaving the block closed the embedder, then the store

Keys and factories
------------------
A key is a class (abstract classes and ``typing.Protocol`` classes included) or a non-empty
string. ``resolve(SomeClass)`` is typed as ``SomeClass``; a string key resolves to ``Any``.
A factory is called with a :class:`Resolver` (the container, or the scope the service lives in)
and resolves its own dependencies from it, so nothing is built before it is first needed. A
factory may be a plain function or an ``async def`` coroutine function (any factory whose
result is awaitable is treated as async).

Lifetimes
---------
* ``"singleton"`` (the default): built once per container and shared. Several threads (or
  asyncio tasks) resolving it at the same time wait for a single construction. A factory that
  fails leaves nothing cached, so the next resolve tries again; callers that were waiting on
  that very attempt receive its failure.
* ``"transient"``: built anew on every resolve. The caller owns the instance; the container
  never disposes it.
* ``"scoped"``: built once per scope (``with c.scope() as s: s.resolve(K)`` or
  ``async with c.ascope() as s: await s.aresolve(K)``) and disposed when the scope ends.
  Resolving a scoped service outside a scope, including from a singleton's factory (which
  always receives the container, so that a singleton cannot capture a short-lived object),
  raises :class:`ContainerError`.

``instance(key, value)`` registers an object that already exists as a singleton. The container
does not own it and only disposes it when a ``dispose`` callable is given.

Errors
------
Every problem raises :class:`ContainerError`: an unknown key (the message lists what is
registered), a dependency cycle (the message shows the path, e.g. ``dependency cycle: Store ->
Index -> Embedder -> Store``), a factory that raised (the message names the service and the
path that led to it; the factory's exception is the ``__cause__``), and any use of a closed
container or scope. The resolution path is kept in a context variable, so it is private to each
thread and to each asyncio task: concurrent resolutions are never mistaken for a cycle.

Disposal
--------
``close()`` / ``await aclose()`` (also ``with`` / ``async with`` on the container) dispose
every singleton the container built, in reverse order of creation; a scope does the same for
its scoped instances when it ends. A service's disposer is the ``dispose`` callable given at
registration, sync or async. Without one, the container calls the instance's ``close()`` or
``aclose()``: an instance built asynchronously (by ``aresolve`` or an async factory) gets
``aclose()`` when it has one, any other gets ``close()`` when it has one, and either falls back
to the other method. An awaitable returned by a disposer is awaited.

A failing disposer does not stop the others. Once all have run, the failures are raised
together as one :class:`ContainerError` whose ``errors`` attribute holds every original
exception (the first is also its ``__cause__``). When a ``with`` block is already leaving on
an exception, disposal failures are logged instead, so they never hide that exception. After
``close()`` every resolve raises; closing again does nothing.

Async rules
-----------
* ``await resolver.aresolve(K)`` works from any running event loop, for sync and async
  factories alike, and an async factory may itself ``await r.aresolve(...)``.
* ``resolver.resolve(K)`` of a service with a *sync* factory works everywhere, including inside
  a running event loop (for example from an ``async def`` function).
* ``resolver.resolve(K)`` of a service with an *async* factory never starts an event loop inside
  a running one. With no loop running in the current thread, the factory runs to completion
  with ``asyncio.run`` in that thread (so whatever it ties to that loop, such as an open
  connection, outlives the loop: build such services with ``aresolve`` on the loop that will
  use them). With a loop running, it raises :class:`ContainerError` telling the caller to use
  ``aresolve``, unless the shared instance already exists, which is simply returned. Running
  the coroutine on a helper thread with its own loop was rejected on purpose: it would hide the
  dead-loop problem above inside a running program, and a factory that waits for something
  owned by the blocked caller's loop would deadlock.
* The same holds for sync ``close()`` of async disposers: outside a loop each one runs with
  ``asyncio.run``; inside a running loop it is reported as a failure that says to use
  ``aclose()``.
* A sync ``resolve`` that would have to wait for an instance that an asyncio task on the same
  loop is still building raises :class:`ContainerError` instead of blocking that loop forever.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, Union, overload

from magray.errors import MagrayError

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "Container",
    "ContainerError",
    "Lifetime",
    "Resolver",
    "Scope",
    "ServiceStats",
]

_T = TypeVar("_T")

_log = logging.getLogger("magray")

Lifetime = Literal["singleton", "transient", "scoped"]
_LIFETIMES: tuple[str, ...] = ("singleton", "transient", "scoped")


class ContainerError(MagrayError):
    """A service could not be registered, resolved or disposed.

    When disposers failed, ``errors`` holds their original exceptions; otherwise it is empty and
    the original exception, if any, is the ``__cause__``.
    """

    def __init__(self, message: str, errors: Sequence[BaseException] = ()) -> None:
        super().__init__(message)
        self.errors: tuple[BaseException, ...] = tuple(errors)


class ServiceStats(TypedDict):
    """What :meth:`Container.stats` reports for one service."""

    lifetime: Lifetime
    created: int  # instances the container built
    resolves: int  # resolve/aresolve calls that found the service
    failures: int  # factory calls that raised
    total_seconds: float  # construction time, all instances together
    last_seconds: float | None  # construction time of the latest instance (None: never built)
    alive: bool | None  # a singleton currently held (None for other lifetimes)


# --------------------------------------------------------------------------------------------
# Internal state


class _Build:
    """One construction in progress, which other callers can wait for."""

    __slots__ = ("done", "error", "loop", "thread", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop  # the loop of an async builder; None for a sync one
        self.thread = threading.get_ident()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def add_waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """Called with the slot's lock held, before finish()."""
        future: asyncio.Future[None] = loop.create_future()
        self.waiters.append((loop, future))
        return future

    def finish(self, error: BaseException | None) -> None:
        """Called with the slot's lock held."""
        self.error = error
        self.done.set()
        for loop, future in self.waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # that loop is closed; nobody is left to wake
                pass
        self.waiters.clear()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # a waiter that was cancelled has a finished future
        future.set_result(None)


class _Slot:
    """Where one shared instance lives: a singleton's, or a scoped service's in one scope."""

    __slots__ = ("build", "lock", "ready", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready = False
        self.value: Any = None
        self.build: _Build | None = None


class _Registration:
    __slots__ = (
        "created",
        "dispose",
        "factory",
        "failures",
        "is_async",
        "key",
        "last",
        "lifetime",
        "name",
        "resolves",
        "slot",
        "stats_lock",
        "total",
    )

    def __init__(
        self,
        key: type[Any] | str,
        factory: Callable[[Resolver], Any],
        lifetime: Lifetime,
        dispose: Callable[[Any], object] | None,
    ) -> None:
        self.key = key
        self.name = _key_name(key)
        self.factory = factory
        self.lifetime: Lifetime = lifetime
        self.dispose = dispose
        self.is_async = inspect.iscoroutinefunction(factory)
        self.slot = _Slot()  # used by singletons only
        self.stats_lock = threading.Lock()
        self.created = 0
        self.resolves = 0
        self.failures = 0
        self.total = 0.0
        self.last: float | None = None

    def count_resolve(self) -> None:
        with self.stats_lock:
            self.resolves += 1

    def count_failure(self) -> None:
        with self.stats_lock:
            self.failures += 1

    def count_created(self, seconds: float) -> None:
        with self.stats_lock:
            self.created += 1
            self.total += seconds
            self.last = seconds


class _Created:
    """An instance the container (or a scope) must dispose."""

    __slots__ = ("built_async", "reg", "value")

    def __init__(self, reg: _Registration, value: Any, built_async: bool) -> None:
        self.reg = reg
        self.value = value
        self.built_async = built_async


# The registrations being built by the current thread or asyncio task, outermost first.
_PATH: ContextVar[tuple[_Registration, ...]] = ContextVar("magray_container_path", default=())


def _key_name(key: object) -> str:
    if isinstance(key, str):
        return key
    return str(getattr(key, "__qualname__", None) or getattr(key, "__name__", None) or key)


def _render_path(path: Sequence[_Registration]) -> str:
    return " -> ".join(reg.name for reg in path)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    # No event loop runs without asyncio imported, and importing it costs a fresh process
    # tens of milliseconds, so a sync-only program never pays for it.
    aio = sys.modules.get("asyncio")
    if aio is None:
        return None
    try:
        loop: asyncio.AbstractEventLoop = aio.get_running_loop()
        return loop
    except RuntimeError:
        return None


def _run(awaitable: Awaitable[_T]) -> _T:
    """Runs an awaitable to completion on a new event loop in this thread."""
    import asyncio

    return asyncio.run(_await(awaitable))


async def _await(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


def _discard(awaitable: object) -> None:
    """Drop an awaitable that will never be awaited, without a 'never awaited' warning."""
    close = getattr(awaitable, "close", None)
    if inspect.iscoroutine(awaitable) and callable(close):
        close()


def _async_in_loop(reg: _Registration) -> ContainerError:
    return ContainerError(
        f"{reg.name} has an async factory, and an event loop is running in this thread, so the "
        f"sync resolve() cannot build it; use `await resolver.aresolve({reg.name})` instead "
        f"(a factory that needs it must be `async def`)"
    )


def _joined_failure(reg: _Registration, error: BaseException) -> ContainerError:
    return ContainerError(
        f"{reg.name} could not be built: the construction this call was waiting for failed "
        f"({type(error).__name__}: {error})"
    )


def _start_dispose(rec: _Created) -> object:
    """Call the disposer and return its result (an awaitable when the disposer is async)."""
    if rec.reg.dispose is not None:
        return rec.reg.dispose(rec.value)
    names = ("aclose", "close") if rec.built_async else ("close", "aclose")
    for name in names:
        method = getattr(rec.value, name, None)
        if callable(method):
            return method()
    return None


def _dispose_sync(records: Sequence[_Created]) -> list[tuple[str, Exception]]:
    errors: list[tuple[str, Exception]] = []
    for rec in reversed(records):
        try:
            result = _start_dispose(rec)
            if inspect.isawaitable(result):
                if _running_loop() is not None:
                    _discard(result)
                    raise ContainerError(
                        f"the disposer of {rec.reg.name} is async and an event loop is running "
                        f"in this thread; use `await aclose()` (or `async with`)"
                    )
                _run(result)
        except Exception as exc:
            errors.append((rec.reg.name, exc))
    return errors


async def _dispose_async(records: Sequence[_Created]) -> list[tuple[str, Exception]]:
    errors: list[tuple[str, Exception]] = []
    for rec in reversed(records):
        try:
            result = _start_dispose(rec)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            errors.append((rec.reg.name, exc))
    return errors


def _disposal_error(what: str, errors: Sequence[tuple[str, Exception]]) -> ContainerError:
    listing = "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in errors)
    error = ContainerError(
        f"{len(errors)} disposer(s) failed while closing {what}: {listing}",
        [exc for _, exc in errors],
    )
    error.__cause__ = errors[0][1]
    return error


def _finish_disposal(
    what: str, errors: Sequence[tuple[str, Exception]], leaving_on: BaseException | None
) -> None:
    if not errors:
        return
    error = _disposal_error(what, errors)
    if leaving_on is None:
        raise error
    _log.error("%s (not raised: the block is leaving on %r)", error, leaving_on)


def _log_late(errors: Sequence[tuple[str, Exception]]) -> None:
    if errors:
        _log.error("%s", _disposal_error("an instance built after closing", errors))


# --------------------------------------------------------------------------------------------
# Public API


class Resolver:
    """Resolves services: the :class:`Container` itself, or one of its :class:`Scope` objects.

    Factories receive a resolver and take their dependencies from it.
    """

    _root: Container
    _scope: Scope | None

    @overload
    def resolve(self, key: type[_T]) -> _T: ...
    @overload
    def resolve(self, key: Callable[..., _T]) -> _T: ...
    @overload
    def resolve(self, key: str) -> Any: ...
    def resolve(self, key: Any) -> Any:
        """Return the service registered under ``key``, building it (and what it needs) first
        if necessary. See the module documentation for async factories."""
        return self._root._resolve_sync(key, self._scope)

    @overload
    async def aresolve(self, key: type[_T]) -> _T: ...
    @overload
    async def aresolve(self, key: Callable[..., _T]) -> _T: ...
    @overload
    async def aresolve(self, key: str) -> Any: ...
    async def aresolve(self, key: Any) -> Any:
        """Like :meth:`resolve`, from a running event loop; awaits async factories."""
        return await self._root._resolve_async(key, self._scope)


# typing.Union, not X | Y: these generic aliases are subscripted, which Python 3.10's
# types.UnionType does not support.
_Factory = Callable[[Resolver], Union[_T, Awaitable[_T]]]  # noqa: UP007
_ClassKey = Union[type[_T], Callable[..., _T]]  # noqa: UP007
_AnyDisposer = Callable[[Any], object]


_D = TypeVar("_D", bound="_Disposing")


class _Disposing:
    """close/aclose and the context-manager protocol, shared by Scope and Container:
    take the created instances, dispose them in reverse order, report failures."""

    _what = "a scope"

    def _take_for_close(self) -> list[_Created] | None:
        raise NotImplementedError

    def close(self) -> None:
        """Dispose the instances in reverse order of creation (sync; see the module's async
        rules). Raises one :class:`ContainerError` listing the disposers that failed."""
        self._close(None)

    async def aclose(self) -> None:
        """Like :meth:`close`, awaiting async disposers."""
        await self._aclose(None)

    def _close(self, leaving_on: BaseException | None) -> None:
        records = self._take_for_close()
        if records:
            _finish_disposal(self._what, _dispose_sync(records), leaving_on)

    async def _aclose(self, leaving_on: BaseException | None) -> None:
        records = self._take_for_close()
        if records:
            _finish_disposal(self._what, await _dispose_async(records), leaving_on)

    def __enter__(self: _D) -> _D:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close(exc)

    async def __aenter__(self: _D) -> _D:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._aclose(exc)


class Scope(_Disposing, Resolver):
    """A unit of work (a request, a CLI command) that holds its own scoped instances.

    Singletons and transients resolve as they do on the container; scoped services are built
    once per scope and disposed, in reverse order of creation, when the scope closes. Use it as
    a context manager (``with`` or ``async with``), or call :meth:`close` / :meth:`aclose`.
    """

    def __init__(self, container: Container) -> None:
        self._root = container
        self._scope = self
        self._lock = threading.Lock()
        self._closed = False
        self._created: list[_Created] = []
        self._slots: dict[_Registration, _Slot] = {}

    def _ensure_open(self) -> None:
        with self._lock:
            if self._closed:
                raise ContainerError("this scope is closed")

    def _slot(self, reg: _Registration) -> _Slot:
        with self._lock:
            if self._closed:
                raise ContainerError("this scope is closed")
            slot = self._slots.get(reg)
            if slot is None:
                slot = self._slots[reg] = _Slot()
            return slot

    def _take_for_close(self) -> list[_Created] | None:
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            records, self._created = self._created, []
            self._slots.clear()
            return records


class Container(_Disposing, Resolver):
    """Registers factories, builds services lazily and disposes them (see the module docs).

    Thread-safe: registrations, resolutions and close may come from any thread.
    """

    _what = "the container"

    def __init__(self) -> None:
        self._root = self
        self._scope = None
        self._lock = threading.Lock()
        self._closed = False
        self._registry: dict[type[Any] | str, _Registration] = {}
        self._created: list[_Created] = []

    # ---- registration ----------------------------------------------------------------------

    @overload
    def register(
        self,
        key: _ClassKey[_T],
        factory: _Factory[_T],
        *,
        lifetime: Lifetime = ...,
        dispose: Callable[[_T], object] | None = ...,
    ) -> None: ...
    @overload
    def register(
        self,
        key: str,
        factory: Callable[[Resolver], object],
        *,
        lifetime: Lifetime = ...,
        dispose: _AnyDisposer | None = ...,
    ) -> None: ...
    def register(
        self,
        key: Any,
        factory: Callable[[Resolver], Any],
        *,
        lifetime: Lifetime = "singleton",
        dispose: _AnyDisposer | None = None,
    ) -> None:
        """Register ``factory`` under ``key``, replacing an earlier registration that has no
        instance yet. ``dispose(instance)`` (sync or async) replaces the default disposal;
        transients are never disposed, so they take no ``dispose``."""
        if lifetime not in _LIFETIMES:
            raise ContainerError(
                f"lifetime must be one of {', '.join(_LIFETIMES)}; got {lifetime!r}"
            )
        if not callable(factory):
            raise ContainerError(f"the factory for {_key_name(key)} is not callable")
        if dispose is not None and not callable(dispose):
            raise ContainerError(f"the disposer for {_key_name(key)} is not callable")
        if dispose is not None and lifetime == "transient":
            raise ContainerError(
                f"{_key_name(key)} is transient: its instances belong to the caller, so it "
                f"takes no dispose"
            )
        self._add(_Registration(self._check_key(key), factory, lifetime, dispose))

    @overload
    def singleton(
        self,
        key: _ClassKey[_T],
        factory: _Factory[_T],
        *,
        dispose: Callable[[_T], object] | None = ...,
    ) -> None: ...
    @overload
    def singleton(
        self,
        key: str,
        factory: Callable[[Resolver], object],
        *,
        dispose: _AnyDisposer | None = ...,
    ) -> None: ...
    def singleton(
        self,
        key: Any,
        factory: Callable[[Resolver], Any],
        *,
        dispose: _AnyDisposer | None = None,
    ) -> None:
        """Register a service built once per container."""
        self.register(key, factory, lifetime="singleton", dispose=dispose)

    @overload
    def transient(self, key: _ClassKey[_T], factory: _Factory[_T]) -> None: ...
    @overload
    def transient(self, key: str, factory: Callable[[Resolver], object]) -> None: ...
    def transient(self, key: Any, factory: Callable[[Resolver], Any]) -> None:
        """Register a service built anew on every resolve."""
        self.register(key, factory, lifetime="transient")

    @overload
    def scoped(
        self,
        key: _ClassKey[_T],
        factory: _Factory[_T],
        *,
        dispose: Callable[[_T], object] | None = ...,
    ) -> None: ...
    @overload
    def scoped(
        self,
        key: str,
        factory: Callable[[Resolver], object],
        *,
        dispose: _AnyDisposer | None = ...,
    ) -> None: ...
    def scoped(
        self,
        key: Any,
        factory: Callable[[Resolver], Any],
        *,
        dispose: _AnyDisposer | None = None,
    ) -> None:
        """Register a service built once per :class:`Scope`."""
        self.register(key, factory, lifetime="scoped", dispose=dispose)

    def instance(
        self,
        key: type[Any] | str,
        value: object,
        *,
        dispose: _AnyDisposer | None = None,
    ) -> None:
        """Register an existing object as a singleton. The container disposes it only when
        ``dispose`` is given."""
        if dispose is not None and not callable(dispose):
            raise ContainerError(f"the disposer for {_key_name(key)} is not callable")

        def factory(resolver: Resolver) -> object:
            return value

        reg = _Registration(self._check_key(key), factory, "singleton", dispose)
        reg.slot.ready = True
        reg.slot.value = value
        self._add(reg, _Created(reg, value, False) if dispose is not None else None)

    def _check_key(self, key: object) -> type[Any] | str:
        if isinstance(key, str) and key:
            return key
        if isinstance(key, type):
            return key
        raise ContainerError(f"a service key must be a class or a non-empty string; got {key!r}")

    def _add(self, reg: _Registration, record: _Created | None = None) -> None:
        with self._lock:
            if self._closed:
                raise ContainerError(f"cannot register {reg.name}: the container is closed")
            old = self._registry.get(reg.key)
            if old is not None:
                with old.slot.lock:
                    in_use = old.slot.ready or old.slot.build is not None
                if in_use:
                    raise ContainerError(
                        f"cannot replace {old.name}: its singleton has already been resolved"
                    )
            self._registry[reg.key] = reg
            if record is not None:
                self._created.append(record)

    # ---- resolution ------------------------------------------------------------------------

    def _lookup(self, key: object) -> _Registration:
        with self._lock:
            if self._closed:
                raise ContainerError(f"cannot resolve {_key_name(key)}: the container is closed")
            reg = self._registry.get(key) if isinstance(key, (type, str)) else None
            if reg is not None:
                return reg
            known = ", ".join(r.name for r in self._registry.values()) or "(nothing)"
        raise ContainerError(
            f"no service is registered for {_key_name(key)!r}; registered: {known}"
        )

    def _check_open(self, scope: Scope | None) -> None:
        with self._lock:
            if self._closed:
                raise ContainerError("the container is closed")
        if scope is not None:
            scope._ensure_open()

    def _prepare(
        self, key: object, scope: Scope | None
    ) -> tuple[_Registration, tuple[_Registration, ...]]:
        reg = self._lookup(key)
        path = _PATH.get()
        if reg in path:
            raise ContainerError(f"dependency cycle: {_render_path((*path, reg))}")
        if scope is not None:
            scope._ensure_open()
        if reg.lifetime == "scoped" and scope is None:
            via = f" (needed by {_render_path(path)})" if path else ""
            raise ContainerError(
                f"{reg.name} is scoped and was resolved outside a scope{via}; resolve it with "
                f"`with container.scope() as s: s.resolve({reg.name})`. A singleton cannot "
                f"depend on a scoped service."
            )
        reg.count_resolve()
        return reg, path

    def _where(self, reg: _Registration, scope: Scope | None) -> tuple[_Slot, Container | Scope]:
        if reg.lifetime == "singleton":
            return reg.slot, self
        assert scope is not None  # _prepare refused scoped services outside a scope
        return scope._slot(reg), scope

    def _store(
        self,
        reg: _Registration,
        slot: _Slot,
        build: _Build,
        holder: Container | Scope,
        value: Any,
        built_async: bool,
    ) -> bool:
        """Publish a built instance; return False when its holder closed meanwhile."""
        with holder._lock:
            keep = not holder._closed
            if keep:
                holder._created.append(_Created(reg, value, built_async))
            with slot.lock:
                if keep:
                    slot.value = value
                    slot.ready = True
                slot.build = None
                build.finish(None if keep else self._closed_during_build(reg))
        return keep

    def _abandon(self, slot: _Slot, build: _Build, error: BaseException) -> None:
        with slot.lock:
            slot.build = None
            build.finish(error)

    def _closed_during_build(self, reg: _Registration) -> ContainerError:
        return ContainerError(f"{reg.name} was built after its container or scope was closed")

    def _resolve_sync(self, key: object, scope: Scope | None) -> Any:
        reg, path = self._prepare(key, scope)
        resolver: Resolver = scope if scope is not None and reg.lifetime != "singleton" else self
        if reg.lifetime == "transient":
            return self._construct_sync(reg, resolver, path)[0]
        slot, holder = self._where(reg, scope)
        loop = _running_loop()
        while True:
            self._check_open(scope)
            with slot.lock:
                if slot.ready:
                    return slot.value
                build = slot.build
                mine = build is None
                if build is None:
                    if reg.is_async and loop is not None:
                        raise _async_in_loop(reg)
                    build = slot.build = _Build(None)
            if mine:
                try:
                    value, built_async = self._construct_sync(reg, resolver, path)
                except BaseException as exc:
                    self._abandon(slot, build, exc)
                    raise
                if not self._store(reg, slot, build, holder, value, built_async):
                    _log_late(_dispose_sync([_Created(reg, value, built_async)]))
                    raise self._closed_during_build(reg)
                return value
            if build.loop is not None and build.loop is loop:
                raise ContainerError(
                    f"{reg.name} is being built by another task on this event loop; waiting for "
                    f"it here would block that loop forever: use `await "
                    f"resolver.aresolve({reg.name})`"
                )
            if build.loop is None and build.thread == threading.get_ident():
                # Only reachable when a factory hid the resolution path (by resolving in a
                # fresh contextvars.Context): waiting for ourselves would never end.
                raise ContainerError(
                    f"dependency cycle: {reg.name} is already being built by this thread"
                )
            build.done.wait()
            if build.error is not None:
                raise _joined_failure(reg, build.error) from build.error

    async def _resolve_async(self, key: object, scope: Scope | None) -> Any:
        reg, path = self._prepare(key, scope)
        resolver: Resolver = scope if scope is not None and reg.lifetime != "singleton" else self
        if reg.lifetime == "transient":
            return (await self._construct_async(reg, resolver, path))[0]
        slot, holder = self._where(reg, scope)
        import asyncio

        loop = asyncio.get_running_loop()
        while True:
            self._check_open(scope)
            waiter: asyncio.Future[None] | None = None
            with slot.lock:
                if slot.ready:
                    return slot.value
                build = slot.build
                mine = build is None
                if build is None:
                    build = slot.build = _Build(loop)
                else:
                    waiter = build.add_waiter(loop)
            if mine:
                try:
                    value, built_async = await self._construct_async(reg, resolver, path)
                except BaseException as exc:
                    self._abandon(slot, build, exc)
                    raise
                if not self._store(reg, slot, build, holder, value, built_async):
                    _log_late(await _dispose_async([_Created(reg, value, built_async)]))
                    raise self._closed_during_build(reg)
                return value
            if waiter is not None:
                await waiter
            if build.error is not None:
                raise _joined_failure(reg, build.error) from build.error

    def _wrap(
        self, reg: _Registration, path: tuple[_Registration, ...], exc: Exception
    ) -> ContainerError:
        reg.count_failure()
        via = f" (resolving {_render_path((*path, reg))})" if path else ""
        return ContainerError(
            f"the factory for {reg.name} failed{via}: {type(exc).__name__}: {exc}"
        )

    def _construct_sync(
        self, reg: _Registration, resolver: Resolver, path: tuple[_Registration, ...]
    ) -> tuple[Any, bool]:
        token = _PATH.set((*path, reg))
        start = time.perf_counter()
        try:
            result = reg.factory(resolver)
            if inspect.isawaitable(result):
                if _running_loop() is not None:
                    _discard(result)
                    raise _async_in_loop(reg)
                value, built_async = _run(result), True
            else:
                value, built_async = result, False
        except ContainerError:
            reg.count_failure()
            raise
        except Exception as exc:
            raise self._wrap(reg, path, exc) from exc
        finally:
            _PATH.reset(token)
        reg.count_created(time.perf_counter() - start)
        return value, built_async

    async def _construct_async(
        self, reg: _Registration, resolver: Resolver, path: tuple[_Registration, ...]
    ) -> tuple[Any, bool]:
        token = _PATH.set((*path, reg))
        start = time.perf_counter()
        try:
            result = reg.factory(resolver)
            value = (await result) if inspect.isawaitable(result) else result
        except ContainerError:
            reg.count_failure()
            raise
        except Exception as exc:
            raise self._wrap(reg, path, exc) from exc
        finally:
            _PATH.reset(token)
        reg.count_created(time.perf_counter() - start)
        return value, True

    # ---- scopes ----------------------------------------------------------------------------

    def scope(self) -> Scope:
        """A new scope, for ``with container.scope() as s:``."""
        self._check_open(None)
        return Scope(self)

    def ascope(self) -> Scope:
        """A new scope, for ``async with container.ascope() as s:`` (disposed with aclose)."""
        return self.scope()

    # ---- disposal --------------------------------------------------------------------------

    def _take_for_close(self) -> list[_Created] | None:
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            records, self._created = self._created, []
            for reg in self._registry.values():
                with reg.slot.lock:
                    reg.slot.ready = False
                    reg.slot.value = None
            return records

    # ---- introspection ---------------------------------------------------------------------

    def stats(self) -> dict[str, ServiceStats]:
        """Counters per service, by name (``module.Name`` where two classes share a name)."""
        with self._lock:
            regs = list(self._registry.values())
        seen: dict[str, int] = {}
        for reg in regs:
            seen[reg.name] = seen.get(reg.name, 0) + 1
        out: dict[str, ServiceStats] = {}
        for reg in regs:
            name = reg.name
            if seen[name] > 1 and isinstance(reg.key, type):
                name = f"{reg.key.__module__}.{reg.key.__qualname__}"
            with reg.slot.lock:
                alive = reg.slot.ready if reg.lifetime == "singleton" else None
            with reg.stats_lock:
                out[name] = ServiceStats(
                    lifetime=reg.lifetime,
                    created=reg.created,
                    resolves=reg.resolves,
                    failures=reg.failures,
                    total_seconds=reg.total,
                    last_seconds=reg.last,
                    alive=alive,
                )
        return out
