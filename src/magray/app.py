"""The application, wired by the dependency-injection container.

One place decides how the parts fit together, for the ``magray`` command and for
``magray.open`` alike:

    Settings -> MemoryConfig
    Settings -> Embedder (ONNX model, or the hash embedder) -> its CircuitBreaker
    Settings -> Logging
    Metrics (in process; persisted in the store on close)
    Memory(store path, Embedder, MemoryConfig, Metrics) -> EmbeddingCache, indexes
    ResourceManager(Memory's caches, Embedder's batch size)

Every part is built lazily on first use and disposed in reverse order on close.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from magray.config import MemoryConfig, Settings
from magray.container import Container, Resolver
from magray.errors import MagrayError

# String keys for values that have no class of their own.
EMBEDDER = "embedder"  # the active Embedder, or None for a vector-only store
STORE_PATH = "store_path"  # the store directory


def store_path_of(settings: Settings) -> Path:
    from magray.memory.store import default_path

    value = settings["store"]
    return Path(value).expanduser() if value else default_path()


def build_container(
    settings: Settings,
    *,
    embedder: Any = "settings",
    read_only: bool = False,
    reembed: bool = False,
    clock: Any = None,
    configure_logging: bool = True,
) -> Container:
    """A container wired for these settings. embedder="settings" uses settings["embedder"];
    any other value (None, "hash", a path, an Embedder) overrides it."""
    from magray.memory.engine import Memory
    from magray.ops.metrics import Metrics
    from magray.ops.resources import ResourceManager

    c = Container()
    c.instance(Settings, settings)
    c.singleton(MemoryConfig, lambda c: c.resolve(Settings).memory_config())
    c.singleton(STORE_PATH, lambda c: store_path_of(c.resolve(Settings)))

    def make_embedder(c: Resolver) -> Any:
        from magray.embed.select import load_embedder

        s = c.resolve(Settings)
        choice = s["embedder"] if embedder == "settings" else embedder
        return load_embedder(choice, device=s["device"], batch_size=s["batch_size"])

    c.singleton(EMBEDDER, make_embedder, dispose=lambda e: None)
    c.singleton(Metrics, lambda c: Metrics())

    def make_memory(c: Resolver) -> Memory:
        mem = Memory(
            c.resolve(STORE_PATH),
            embedder=c.resolve(EMBEDDER),
            read_only=read_only,
            config=c.resolve(MemoryConfig),
            clock=clock or time.time,
            reembed=reembed,
        )
        mem.attach_metrics(c.resolve(Metrics))
        return mem

    c.singleton(Memory, make_memory)

    def make_resources(c: Resolver) -> ResourceManager:
        s = c.resolve(Settings)
        limit = s["rss_limit_mb"] * (1 << 20) or None
        rm = ResourceManager(interval=5.0, rss_limit_bytes=limit)
        mem = c.resolve(Memory)
        cfg = c.resolve(MemoryConfig)
        # Under pressure a knob shrinks toward its minimum, never below what was configured;
        # a cache configured off (0 bytes) has nothing to shrink.
        if cfg.cache_l1_bytes > 0:
            rm.register(
                "l1_cache_bytes",
                normal=cfg.cache_l1_bytes,
                minimum=min(4 << 20, cfg.cache_l1_bytes),
                apply=mem.resize_cache,
            )
        e = c.resolve(EMBEDDER)
        if e is not None and hasattr(e, "batch_size"):

            def set_batch(n: int) -> None:
                e.batch_size = n

            batch = int(e.batch_size)
            rm.register("embed_batch_size", normal=batch, minimum=min(4, batch), apply=set_batch)
        return rm

    c.singleton(ResourceManager, make_resources, dispose=lambda rm: rm.stop())
    if configure_logging:
        from magray.ops.logging import configure

        configure(
            fmt=settings["log_format"],
            level=settings["log_level"].upper(),
            file=settings["log_file"] or None,
        )
    return c


class App:
    """The CLI's handle on the container, with a few conveniences."""

    def __init__(self, settings: Settings, token: str | None = None) -> None:
        self.settings = settings
        self._token = token
        self._remote: Any = None
        self._containers: dict[tuple[bool, bool, bool], Container] = {}

    def container(
        self, read_only: bool = False, reembed: bool = False, embed: bool = True
    ) -> Container:
        """The container for this kind of access. embed=False: a read-only view for
        commands that never embed, opened without loading the embedding model."""
        if read_only and not self.store_exists():
            read_only = False  # nothing to read yet: open (and create) it normally
        embed = embed or not read_only
        key = (read_only, reembed, embed)
        if key not in self._containers:
            # A writer serves reads too, and a view with the model serves one without:
            # reuse them rather than opening another view.
            if read_only and not reembed:
                serving = [(False, False, True)] + ([] if embed else [(True, False, True)])
                for other in serving:
                    if other in self._containers:
                        return self._containers[other]
            self._containers[key] = build_container(
                self.settings,
                embedder="settings" if embed else None,
                read_only=read_only,
                reembed=reembed,
            )
        return self._containers[key]

    def memory(self, read_only: bool = False, reembed: bool = False, embed: bool = True) -> Any:
        """The Memory the command works on: a server's namespace when a server is set
        (--server / MAGRAY_SERVER), else the local store; when a running server holds
        the local store, that server (found through the store's serving.json)."""
        from magray.errors import StoreLockedError
        from magray.memory.engine import Memory

        if self.settings["server"]:
            return self.remote(self.settings["server"], self.settings["namespace"])
        try:
            return self.container(read_only, reembed, embed).resolve(Memory)
        except MagrayError as exc:
            cause = exc
            while cause.__cause__ is not None and not isinstance(cause, StoreLockedError):
                cause = cause.__cause__  # type: ignore[assignment]
            served = self._served_by(cause) if isinstance(cause, StoreLockedError) else None
            if served is None:
                raise
            return self.remote(*served)

    def remote(self, url: str, namespace: str) -> Any:
        """One RemoteMemory per invocation (closed with the app)."""
        if self._remote is None:
            from magray.client import connect

            self._remote = connect(url, namespace=namespace or "default", token=self._token)
        return self._remote

    def _served_by(self, locked: Any) -> tuple[str, str] | None:
        """(url, namespace) of the server holding the local store, if it says so."""
        import json

        from magray.server.tenants import SERVING_FILE

        try:
            info = json.loads((self.store_path() / SERVING_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict) or not info.get("url") or info.get("pid") != locked.pid:
            return None
        return str(info["url"]), str(info.get("namespace") or "default")

    def searcher(self) -> Any:
        """The Memory a search uses: writable, so that hits count as accesses, or a
        read-only view when the store sits on read-only media (a mounted backup)."""
        import os

        path = self.store_path()
        if (path / "db").is_dir() and os.statvfs(path).f_flag & os.ST_RDONLY:
            return self.memory(read_only=True)
        return self.memory()

    def embedder(self) -> Any:
        return self.container(read_only=True).resolve(EMBEDDER)

    def store_path(self) -> Path:
        return store_path_of(self.settings)

    def store_exists(self) -> bool:
        return (self.store_path() / "db").is_dir()

    def metrics_history(self) -> Any:
        """The persisted metrics as a Metrics registry (empty without a store)."""
        from magray.ops.metrics import Metrics

        snap = (
            self.memory(read_only=True, embed=False).metrics_history()
            if self.store_exists()
            else None
        )
        return Metrics.from_snapshot(snap) if snap else Metrics()

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()
            self._remote = None
        for c in reversed(list(self._containers.values())):
            c.close()
        self._containers.clear()
