from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import pytest

from magray.container import Container, ContainerError, Resolver, Scope
from magray.errors import MagrayError

# Every test that starts threads or tasks bounds its waits, so a deadlock fails instead of hangs.
WAIT = 10.0


class Store:
    def __init__(self, log: list[str] | None = None, name: str = "store") -> None:
        self.log = log
        self.name = name
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        if self.log is not None:
            self.log.append(f"close {self.name}")


class Index:
    def __init__(self, store: Store) -> None:
        self.store = store


class Embedder(Protocol):
    def embed(self, text: str) -> list[float]: ...


class FakeEmbedder:
    def __init__(self, dim: int = 3) -> None:
        self.dim = dim

    def embed(self, text: str) -> list[float]:
        return [0.0] * self.dim


class Boom(RuntimeError):
    pass


class Counter:
    """A factory that counts its calls and builds a new object each time."""

    def __init__(self, delay: float = 0.0, make: Callable[[], Any] = object) -> None:
        self.calls = 0
        self.delay = delay
        self.make = make
        self._lock = threading.Lock()

    def __call__(self, r: Resolver) -> Any:
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return self.make()


def run_threads(n: int, target: Callable[[], Any]) -> list[Any]:
    """Run target in n threads released together; return results (or exceptions) in order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target()
        except BaseException as exc:  # reported to the test, not lost in the thread
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive(), "a resolving thread hung"
    return results


def bounded(fn: Callable[[], Any]) -> Any:
    """Call fn in a daemon thread; a deadlock fails the test instead of hanging it."""
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert outcome, "deadlock: the call did not return"
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


# ---- registration and laziness -----------------------------------------------------------------


def test_container_error_is_a_magray_error() -> None:
    assert issubclass(ContainerError, MagrayError)


def test_nothing_is_built_until_first_resolved() -> None:
    store_factory = Counter(make=Store)
    index_calls: list[int] = []
    c = Container()
    c.singleton(Store, store_factory)

    def make_index(r: Resolver) -> Index:
        index_calls.append(1)
        return Index(r.resolve(Store))

    c.singleton(Index, make_index)
    c.transient("other", Counter())
    assert store_factory.calls == 0 and index_calls == []
    assert c.stats()["Store"]["alive"] is False

    store = c.resolve(Store)  # builds Store only
    assert store_factory.calls == 1 and index_calls == []

    index = c.resolve(Index)  # builds Index, reuses Store
    assert index.store is store
    assert store_factory.calls == 1 and index_calls == [1]


def test_register_validates_its_arguments() -> None:
    c = Container()
    with pytest.raises(ContainerError, match="lifetime"):
        c.register(Store, lambda r: Store(), lifetime="forever")  # type: ignore[call-overload]
    with pytest.raises(ContainerError, match="not callable"):
        c.register(Store, 42)  # type: ignore[call-overload]
    with pytest.raises(ContainerError, match="key"):
        c.register(42, lambda r: Store())  # type: ignore[call-overload]
    with pytest.raises(ContainerError, match="key"):
        c.register("", lambda r: Store())
    with pytest.raises(ContainerError, match="transient"):
        c.register(Store, lambda r: Store(), lifetime="transient", dispose=lambda s: None)


def test_reregistering_replaces_until_resolved() -> None:
    c = Container()
    c.singleton("n", lambda r: 1)
    c.singleton("n", lambda r: 2)
    assert c.resolve("n") == 2
    with pytest.raises(ContainerError, match="already been resolved"):
        c.singleton("n", lambda r: 3)
    assert c.resolve("n") == 2


def test_protocol_and_string_keys() -> None:
    c = Container()
    c.singleton(Embedder, lambda r: FakeEmbedder(r.resolve("dim")))
    c.instance("dim", 7)
    emb = c.resolve(Embedder)
    assert isinstance(emb, FakeEmbedder) and emb.dim == 7
    assert c.resolve("dim") == 7


def test_instance_is_returned_as_is_and_disposed_only_when_asked() -> None:
    owned, shared = Store(name="owned"), Store(name="shared")
    c = Container()
    c.instance(Store, shared)
    c.instance("owned", owned, dispose=lambda s: s.close())
    assert c.resolve(Store) is shared
    assert c.stats()["Store"]["alive"] is True
    assert c.stats()["Store"]["created"] == 0
    c.close()
    assert shared.closed == 0
    assert owned.closed == 1


# ---- lifetimes ---------------------------------------------------------------------------------


def test_singleton_is_one_instance() -> None:
    c = Container()
    c.singleton(Store, lambda r: Store())
    assert c.resolve(Store) is c.resolve(Store)
    with c.scope() as s:
        assert s.resolve(Store) is c.resolve(Store)


def test_singleton_is_built_once_under_eight_threads() -> None:
    factory = Counter(delay=0.1, make=Store)
    c = Container()
    c.singleton(Store, factory)
    results = run_threads(8, lambda: c.resolve(Store))
    assert all(isinstance(r, Store) for r in results), results
    assert all(r is results[0] for r in results)
    assert factory.calls == 1
    stats = c.stats()["Store"]
    assert stats["created"] == 1 and stats["resolves"] == 8


def test_transient_is_new_every_time() -> None:
    factory = Counter(make=Store)
    c = Container()
    c.transient(Store, factory)
    a, b = c.resolve(Store), c.resolve(Store)
    assert a is not b
    assert factory.calls == 2
    c.close()
    assert a.closed == 0 and b.closed == 0  # transients belong to the caller
    assert c.stats()["Store"]["alive"] is None


def test_scoped_once_per_scope_and_disposed_in_reverse_order() -> None:
    log: list[str] = []
    c = Container()
    c.singleton("root", lambda r: Store(log, "root"))
    c.scoped("a", lambda r: Store(log, "a"))
    c.scoped("b", lambda r: (r.resolve("a"), Store(log, "b"))[1])
    c.scoped("c", lambda r: (r.resolve("b"), r.resolve("root"), Store(log, "c"))[2])

    with c.scope() as s1:
        first = s1.resolve("c")
        assert s1.resolve("c") is first
        assert s1.resolve("a") is s1.resolve("a")
        with c.scope() as s2:
            assert s2.resolve("c") is not first
        assert log == ["close c", "close b", "close a"]
        log.clear()
    assert log == ["close c", "close b", "close a"]  # the root singleton is not the scope's
    assert first.closed == 1
    with pytest.raises(ContainerError, match="scope is closed"):
        s1.resolve("a")
    c.close()
    assert log[-1] == "close root"


def test_scoped_outside_a_scope_is_refused() -> None:
    c = Container()
    c.scoped("request", lambda r: object())
    c.singleton(Store, lambda r: (r.resolve("request"), Store())[1])
    with pytest.raises(ContainerError, match=r"request is scoped.*outside a scope"):
        c.resolve("request")
    # A singleton gets the container, not the scope, so it cannot capture a scoped object.
    with c.scope() as s, pytest.raises(ContainerError, match="needed by Store"):
        s.resolve(Store)


def test_transient_in_a_scope_sees_the_scope() -> None:
    c = Container()
    c.scoped("request", lambda r: object())
    c.transient("handler", lambda r: r.resolve("request"))
    with c.scope() as s:
        assert s.resolve("handler") is s.resolve("request")


def test_async_scope_awaits_async_disposers_in_reverse_order() -> None:
    log: list[str] = []

    async def dispose(x: str) -> None:
        await asyncio.sleep(0)
        log.append(f"dispose {x}")

    async def make_b(r: Resolver) -> str:
        await r.aresolve("a")
        await asyncio.sleep(0)
        return "b"

    c = Container()
    c.scoped("a", lambda r: "a", dispose=dispose)
    c.scoped("b", make_b, dispose=dispose)

    async def main() -> None:
        async with c.ascope() as s:
            assert isinstance(s, Scope)
            assert await s.aresolve("b") == "b"
            assert await s.aresolve("b") == "b"
        assert log == ["dispose b", "dispose a"]

    asyncio.run(main())
    assert c.stats()["b"]["created"] == 1


# ---- cycles ------------------------------------------------------------------------------------


def cyclic_container() -> Container:
    c = Container()
    c.singleton(Store, lambda r: (r.resolve(Index), Store())[1])
    c.singleton(Index, lambda r: (r.resolve(Embedder), Index(Store()))[1])
    c.singleton(Embedder, lambda r: (r.resolve(Store), FakeEmbedder())[1])
    return c


def test_cycle_is_reported_with_its_full_path() -> None:
    c = cyclic_container()
    with pytest.raises(ContainerError) as info:
        bounded(lambda: c.resolve(Store))
    assert str(info.value) == "dependency cycle: Store -> Index -> Embedder -> Store"
    with pytest.raises(ContainerError) as info:
        bounded(lambda: c.resolve(Embedder))
    assert str(info.value) == "dependency cycle: Embedder -> Store -> Index -> Embedder"
    # Nothing was cached, and nothing is left half-built.
    assert all(not s["alive"] for s in c.stats().values())


def test_self_cycle_and_async_cycle() -> None:
    c = Container()
    c.transient("me", lambda r: r.resolve("me"))
    with pytest.raises(ContainerError, match=r"^dependency cycle: me -> me$"):
        bounded(lambda: c.resolve("me"))

    async def make_a(r: Resolver) -> object:
        return await r.aresolve("b")

    async def make_b(r: Resolver) -> object:
        await asyncio.sleep(0)
        return await r.aresolve("a")

    c.singleton("a", make_a)
    c.singleton("b", make_b)

    async def main() -> None:
        with pytest.raises(ContainerError, match=r"^dependency cycle: a -> b -> a$"):
            await asyncio.wait_for(c.aresolve("a"), WAIT)

    bounded(lambda: asyncio.run(main()))


def test_no_false_cycle_across_threads() -> None:
    # Two threads are inside the same chain a -> b -> c at once; a shared resolution path would
    # make the second one see a cycle.
    inside = threading.Barrier(2, timeout=WAIT)

    def make_c(r: Resolver) -> str:
        inside.wait()
        return "c"

    c = Container()
    c.transient("a", lambda r: "a" + r.resolve("b"))
    c.transient("b", lambda r: "b" + r.resolve("c"))
    c.transient("c", make_c)
    results = run_threads(2, lambda: c.resolve("a"))
    assert results == ["abc", "abc"]


def test_no_false_cycle_across_tasks() -> None:
    async def make_c(r: Resolver) -> str:
        await asyncio.sleep(0.01)  # both tasks are inside the chain now
        return "c"

    async def make_b(r: Resolver) -> str:
        return "b" + str(await r.aresolve("c"))

    async def make_a(r: Resolver) -> str:
        return "a" + str(await r.aresolve("b"))

    c = Container()
    c.transient("a", make_a)
    c.transient("b", make_b)
    c.transient("c", make_c)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(c.aresolve("a") for _ in range(4))))

    assert asyncio.run(main()) == ["abc"] * 4


# ---- errors ------------------------------------------------------------------------------------


def test_unknown_key_names_it_and_lists_what_is_registered() -> None:
    c = Container()
    c.singleton(Store, lambda r: Store())
    c.singleton("config", lambda r: {})
    with pytest.raises(ContainerError) as info:
        c.resolve(Index)
    message = str(info.value)
    assert "'Index'" in message
    assert "registered: Store, config" in message
    with pytest.raises(ContainerError, match="'missing'"):
        c.resolve("missing")
    with pytest.raises(ContainerError, match="nothing"):
        Container().resolve("x")


def test_failing_factory_is_wrapped_and_retried() -> None:
    attempts: list[int] = []

    def flaky(r: Resolver) -> Store:
        attempts.append(1)
        if len(attempts) == 1:
            raise Boom("disk not ready")
        return Store()

    c = Container()
    c.singleton(Store, flaky)
    c.singleton(Index, lambda r: Index(r.resolve(Store)))
    with pytest.raises(ContainerError) as info:
        c.resolve(Index)
    assert isinstance(info.value.__cause__, Boom)
    assert "factory for Store failed" in str(info.value)
    assert "Index -> Store" in str(info.value)  # the path that led to it
    assert "disk not ready" in str(info.value)
    assert c.stats()["Store"]["alive"] is False
    assert c.stats()["Store"]["failures"] == 1

    index = c.resolve(Index)  # not cached: tried again, and now it works
    assert isinstance(index.store, Store)
    assert len(attempts) == 2
    assert c.resolve(Store) is index.store


def test_concurrent_waiters_share_a_failure_then_retry() -> None:
    attempts: list[int] = []
    gate = threading.Event()

    def failing(r: Resolver) -> Store:
        attempts.append(1)
        if len(attempts) == 1:
            gate.wait(WAIT)
            raise Boom("first attempt")
        return Store()

    c = Container()
    c.singleton(Store, failing)
    owner_result: list[Any] = []
    waiter_result: list[Any] = []
    owner = threading.Thread(target=lambda: owner_result.append(_capture(c.resolve, Store)))
    owner.start()
    while not attempts:  # the owner is inside the factory
        time.sleep(0.001)
    waiter = threading.Thread(target=lambda: waiter_result.append(_capture(c.resolve, Store)))
    waiter.start()
    while c.stats()["Store"]["resolves"] < 2:  # the waiter has found the construction
        time.sleep(0.001)
    time.sleep(0.05)  # and is blocked on it
    gate.set()
    owner.join(WAIT)
    waiter.join(WAIT)
    assert isinstance(owner_result[0], ContainerError)
    assert isinstance(owner_result[0].__cause__, Boom)
    assert isinstance(waiter_result[0], ContainerError)  # it shared that failure
    assert waiter_result[0].__cause__ is owner_result[0]
    assert len(attempts) == 1
    assert isinstance(c.resolve(Store), Store)  # the next call tries again
    assert len(attempts) == 2


def _capture(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        return exc


# ---- disposal ----------------------------------------------------------------------------------


class AsyncResource:
    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name

    def close(self) -> None:
        self.log.append(f"close {self.name}")

    async def aclose(self) -> None:
        await asyncio.sleep(0)
        self.log.append(f"aclose {self.name}")


def test_close_disposes_singletons_in_reverse_creation_order() -> None:
    log: list[str] = []

    async def async_dispose(s: Store) -> None:
        await asyncio.sleep(0)
        log.append(f"async dispose {s.name}")

    c = Container()
    c.singleton("a", lambda r: Store(log, "a"))
    c.singleton("b", lambda r: (r.resolve("a"), Store(log, "b"))[1], dispose=async_dispose)
    c.singleton("c", lambda r: (r.resolve("b"), AsyncResource(log, "c"))[1])
    c.singleton("unused", lambda r: Store(log, "unused"))
    c.singleton("plain", lambda r: object())  # nothing to dispose
    c.resolve("plain")
    c.resolve("c")  # builds a, then b, then c
    c.close()
    assert log == ["close c", "async dispose b", "close a"]  # built sync: close() wins
    with pytest.raises(ContainerError, match="closed"):
        c.resolve("a")
    with pytest.raises(ContainerError, match="closed"):
        c.singleton("late", lambda r: 1)
    c.close()  # a second close does nothing
    assert len(log) == 3
    assert c.stats()["a"]["alive"] is False


def test_instance_finished_after_close_is_disposed_not_kept() -> None:
    started, release = threading.Event(), threading.Event()
    built: list[Store] = []

    def slow(r: Resolver) -> Store:
        started.set()
        release.wait(WAIT)
        built.append(Store())
        return built[-1]

    c = Container()
    c.singleton(Store, slow)
    result: list[Any] = []
    builder = threading.Thread(target=lambda: result.append(_capture(c.resolve, Store)))
    builder.start()
    assert started.wait(WAIT)
    c.close()
    release.set()
    builder.join(WAIT)
    assert isinstance(result[0], ContainerError)
    assert "after its container or scope was closed" in str(result[0])
    assert built[0].closed == 1
    assert c.stats()["Store"]["alive"] is False


def test_disposal_errors_are_collected() -> None:
    log: list[str] = []

    def bad(s: Store) -> None:
        raise Boom(f"cannot close {s.name}")

    async def bad_async(s: Store) -> None:
        raise OSError("flush failed")

    c = Container()
    c.singleton("a", lambda r: Store(log, "a"))
    c.singleton("b", lambda r: Store(log, "b"), dispose=bad)
    c.singleton("c", lambda r: Store(log, "c"))
    c.singleton("d", lambda r: Store(log, "d"), dispose=bad_async)
    for key in "abcd":
        c.resolve(key)
    with pytest.raises(ContainerError) as info:
        c.close()
    assert log == ["close c", "close a"]  # the failures stopped nobody
    error = info.value
    assert [type(e) for e in error.errors] == [OSError, Boom]
    assert error.__cause__ is error.errors[0]
    assert "2 disposer(s) failed" in str(error)
    assert "d: OSError: flush failed" in str(error)
    assert "b: Boom: cannot close b" in str(error)


def test_with_block_closes_and_logs_disposal_errors_when_already_failing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Container() as c:
        c.singleton(Store, lambda r: Store())
        store = c.resolve(Store)
    assert store.closed == 1

    def bad(s: Store) -> None:
        raise Boom("dispose failed")

    with (
        caplog.at_level(logging.ERROR, logger="magray"),
        pytest.raises(KeyError),
        Container() as c,
    ):
        c.singleton(Store, lambda r: Store(), dispose=bad)
        c.resolve(Store)
        raise KeyError("the real problem")
    assert "dispose failed" in caplog.text

    with pytest.raises(ContainerError, match="dispose failed"), Container() as c:
        c.singleton(Store, lambda r: Store(), dispose=bad)
        c.resolve(Store)


def test_aclose_prefers_aclose_for_async_built_instances() -> None:
    log: list[str] = []

    async def make(r: Resolver) -> AsyncResource:
        return AsyncResource(log, "async-factory")

    c = Container()
    c.singleton("x", make)
    c.singleton("y", lambda r: AsyncResource(log, "via-aresolve"))
    c.singleton("z", lambda r: AsyncResource(log, "via-resolve"))

    async def main() -> None:
        async with c:
            await c.aresolve("x")
            await c.aresolve("y")
            c.resolve("z")

    asyncio.run(main())
    assert log == ["close via-resolve", "aclose via-aresolve", "aclose async-factory"]


def test_sync_close_inside_a_running_loop_reports_async_disposers() -> None:
    log: list[str] = []
    c = Container()
    c.singleton("a", lambda r: Store(log, "a"))
    c.singleton("b", lambda r: AsyncResource(log, "b"))

    async def main() -> ContainerError:
        c.resolve("a")
        await c.aresolve("b")  # async-built: its disposer is aclose()
        with pytest.raises(ContainerError) as info:
            c.close()
        return info.value

    error = asyncio.run(main())
    assert "use `await aclose()`" in str(error)
    assert log == ["close a"]  # the sync disposer still ran


def test_sync_close_outside_a_loop_runs_async_disposers() -> None:
    log: list[str] = []
    c = Container()
    c.singleton("b", lambda r: AsyncResource(log, "b"))
    asyncio.run(c.aresolve("b"))
    c.close()
    assert log == ["aclose b"]


# ---- stats -------------------------------------------------------------------------------------


def test_stats_count_resolves_creations_and_time() -> None:
    c = Container()
    c.singleton(Store, Counter(delay=0.02, make=Store))
    c.transient("t", Counter(delay=0.01))
    c.scoped("s", Counter())
    for _ in range(3):
        c.resolve(Store)
        c.resolve("t")
    with c.scope() as s:
        s.resolve("s")
        s.resolve("s")
    stats = c.stats()
    assert set(stats) == {"Store", "t", "s"}
    st = stats["Store"]
    assert st["lifetime"] == "singleton"
    assert (st["created"], st["resolves"], st["failures"], st["alive"]) == (1, 3, 0, True)
    assert st["last_seconds"] is not None and st["last_seconds"] >= 0.02
    assert st["total_seconds"] == st["last_seconds"]
    t = stats["t"]
    assert (t["lifetime"], t["created"], t["resolves"], t["alive"]) == ("transient", 3, 3, None)
    assert t["last_seconds"] is not None and t["total_seconds"] >= 3 * 0.01
    assert t["total_seconds"] >= t["last_seconds"]
    assert (stats["s"]["created"], stats["s"]["resolves"]) == (1, 2)
    c.close()
    assert c.stats()["Store"]["alive"] is False


def test_stats_disambiguate_classes_with_the_same_name() -> None:
    def make_class() -> type:
        class Store:  # same __qualname__ as the module-level Store
            pass

        return Store

    other = make_class()
    c = Container()
    c.singleton(Store, lambda r: Store())
    c.singleton(other, lambda r: other())
    assert len(c.stats()) == 2


# ---- async -------------------------------------------------------------------------------------


def test_aresolve_inside_a_running_loop_with_nested_async_factories() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def make_store(r: Resolver) -> Store:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0.01)
        return Store()

    async def make_index(r: Resolver) -> Index:
        store = await r.aresolve(Store)
        await asyncio.sleep(0)
        return Index(store)

    c = Container()
    c.singleton(Store, make_store)
    c.singleton(Index, make_index)
    c.singleton("sync", lambda r: "plain")  # a sync factory through aresolve

    async def main() -> tuple[Index, Store, Any, asyncio.AbstractEventLoop]:
        index = await c.aresolve(Index)
        return index, await c.aresolve(Store), await c.aresolve("sync"), asyncio.get_running_loop()

    index, store, plain, loop = asyncio.run(main())
    assert index.store is store
    assert plain == "plain"
    assert loops == [loop]  # built on the caller's loop, once


def test_concurrent_aresolve_builds_an_async_singleton_once() -> None:
    calls: list[int] = []

    async def make(r: Resolver) -> Store:
        calls.append(1)
        await asyncio.sleep(0.05)
        return Store()

    c = Container()
    c.singleton(Store, make)

    async def main() -> list[Store]:
        return list(
            await asyncio.wait_for(asyncio.gather(*(c.aresolve(Store) for _ in range(8))), WAIT)
        )

    stores = asyncio.run(main())
    assert calls == [1]
    assert all(s is stores[0] for s in stores)


def test_aresolve_waits_for_a_sync_build_in_another_thread_without_blocking_the_loop() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow(r: Resolver) -> Store:
        calls.append(1)
        started.set()
        release.wait(WAIT)
        return Store()

    c = Container()
    c.singleton(Store, slow)
    builder = threading.Thread(target=c.resolve, args=(Store,))
    builder.start()
    assert started.wait(WAIT)

    async def main() -> Store:
        waiting = asyncio.create_task(c.aresolve(Store))
        for _ in range(5):  # the loop keeps running while aresolve waits
            await asyncio.sleep(0.01)
        assert not waiting.done()
        release.set()
        return await asyncio.wait_for(waiting, WAIT)

    store = bounded(lambda: asyncio.run(main()))
    builder.join(WAIT)
    assert calls == [1]
    assert store is c.resolve(Store)


def test_sync_resolve_waits_for_an_async_build_on_another_threads_loop() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    async def make(r: Resolver) -> Store:
        calls.append(1)
        started.set()
        while not release.is_set():
            await asyncio.sleep(0.001)
        return Store()

    c = Container()
    c.singleton(Store, make)
    result: list[Store] = []
    builder = threading.Thread(target=lambda: result.append(asyncio.run(c.aresolve(Store))))
    builder.start()
    assert started.wait(WAIT)
    threading.Timer(0.05, release.set).start()
    store = bounded(lambda: c.resolve(Store))  # waits for that construction, builds nothing
    builder.join(WAIT)
    assert result == [store]
    assert calls == [1]


def test_sync_resolve_of_a_sync_service_inside_a_running_loop() -> None:
    c = Container()
    c.singleton(Store, lambda r: Store())
    c.transient(Index, lambda r: Index(r.resolve(Store)))

    async def main() -> tuple[Store, Index]:
        await asyncio.sleep(0)
        return c.resolve(Store), c.resolve(Index)

    store, index = asyncio.run(main())
    assert index.store is store


def test_sync_resolve_of_an_async_service_outside_a_loop_runs_it_here() -> None:
    seen: list[tuple[int, bool]] = []

    async def make(r: Resolver) -> Store:
        await asyncio.sleep(0.01)
        seen.append((threading.get_ident(), True))
        return Store()

    async def make_index(r: Resolver) -> Index:
        return Index(await r.aresolve(Store))

    c = Container()
    c.singleton(Store, make)
    c.transient(Index, make_index)
    index = c.resolve(Index)
    assert index.store is c.resolve(Store)
    assert seen == [(threading.get_ident(), True)]  # in this thread, once
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # and no loop was left running


@pytest.mark.filterwarnings("error")  # also: no "coroutine was never awaited"
def test_sync_resolve_of_an_async_service_inside_a_loop_is_refused() -> None:
    ran: list[int] = []

    async def make(r: Resolver) -> Store:
        ran.append(1)
        return Store()

    c = Container()
    c.singleton(Store, make)
    c.transient("lambda-async", lambda r: make(r))  # async only in what it returns
    c.singleton(Index, lambda r: Index(r.resolve(Store)))  # sync factory, async dependency

    async def main() -> None:
        with pytest.raises(ContainerError, match=r"aresolve\(Store\)"):
            c.resolve(Store)
        with pytest.raises(ContainerError, match=r"aresolve\(lambda-async\)"):
            c.resolve("lambda-async")
        with pytest.raises(ContainerError, match=r"aresolve\(Store\)"):
            c.resolve(Index)
        assert ran == []
        store = await c.aresolve(Store)  # the supported way
        assert c.resolve(Store) is store  # once built, a sync resolve just returns it

    asyncio.run(main())
    assert ran == [1]


def test_sync_resolve_during_a_same_loop_async_build_fails_fast() -> None:
    async def main() -> None:
        entered, release = asyncio.Event(), asyncio.Event()

        async def make(r: Resolver) -> Store:
            entered.set()
            await release.wait()
            return Store()

        c = Container()
        c.singleton(Store, make)
        c.singleton(Index, lambda r: Index(r.resolve(Store)))
        building = asyncio.create_task(c.aresolve(Store))
        await entered.wait()  # the task is inside the factory now
        with pytest.raises(ContainerError, match="another task on this event loop"):
            c.resolve(Index)  # would otherwise block the loop the builder needs
        release.set()
        store = await asyncio.wait_for(building, WAIT)
        assert (await c.aresolve(Index)).store is store

    bounded(lambda: asyncio.run(main()))


def test_failing_async_factory_is_wrapped_and_retried() -> None:
    attempts: list[int] = []

    async def make(r: Resolver) -> Store:
        attempts.append(1)
        await asyncio.sleep(0)
        if len(attempts) == 1:
            raise Boom("model download failed")
        return Store()

    c = Container()
    c.singleton(Store, make)

    async def main() -> None:
        with pytest.raises(ContainerError, match="factory for Store failed") as info:
            await c.aresolve(Store)
        assert isinstance(info.value.__cause__, Boom)
        assert isinstance(await c.aresolve(Store), Store)

    asyncio.run(main())
    assert len(attempts) == 2
