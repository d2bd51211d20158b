"""magray: a local memory engine for AI agents.

    import magray

    with magray.open() as mem:                      # the default store (MAGRAY_HOME)
        mem.add("the deploy key lives in the vault", tags=["ops"])
        for hit in mem.search("where is the deploy key?"):
            print(hit.score, hit.record.text)

Heavy parts (numpy, RocksDB, hnswlib, the native extension) load on first use, so
``import magray`` and ``magray --help`` stay instant.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING, Any

from magray.errors import (
    AuthError,
    BackupError,
    CorruptStoreError,
    DiskFullError,
    EmbedderMismatchError,
    InvalidInputError,
    MagrayError,
    NotFoundError,
    PermissionDeniedError,
    ReadOnlyError,
    ServerError,
    StoreError,
    StoreLockedError,
)

try:
    from magray._version import __version__  # written by the build from pyproject.toml
except ImportError:  # a source tree that was never built: ask the installed metadata
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("magray")
    except PackageNotFoundError:
        __version__ = "0+unknown"

__all__ = [
    "AuthError",
    "BackupError",
    "CorruptStoreError",
    "DiskFullError",
    "EmbedderMismatchError",
    "Hit",
    "ImportReport",
    "InvalidInputError",
    "Layer",
    "LifecycleReport",
    "MagrayError",
    "Memory",
    "MemoryConfig",
    "NotFoundError",
    "PermissionDeniedError",
    "ReadOnlyError",
    "Record",
    "ServerError",
    "StoreError",
    "StoreLockedError",
    "RemoteMemory",
    "__version__",
    "connect",
    "kernels",
    "models",
    "open",
    "restore",
]

if TYPE_CHECKING:
    from pathlib import Path

    from magray import kernels
    from magray.client import RemoteMemory
    from magray.config import MemoryConfig
    from magray.embed import models
    from magray.memory.engine import Memory
    from magray.memory.record import Hit, ImportReport, Layer, LifecycleReport, Record

_LAZY = {
    "kernels": ("magray.kernels", None),
    "models": ("magray.embed.models", None),
    "Memory": ("magray.memory.engine", "Memory"),
    "MemoryConfig": ("magray.config", "MemoryConfig"),
    "Hit": ("magray.memory.record", "Hit"),
    "Record": ("magray.memory.record", "Record"),
    "Layer": ("magray.memory.record", "Layer"),
    "LifecycleReport": ("magray.memory.record", "LifecycleReport"),
    "ImportReport": ("magray.memory.record", "ImportReport"),
    "RemoteMemory": ("magray.client", "RemoteMemory"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'magray' has no attribute {name!r}")
    module = import_module(target[0])
    value = module if target[1] is None else getattr(module, target[1])
    globals()[name] = value
    return value


def open(  # noqa: A001 (the natural name, like io.open)
    path: str | os.PathLike[str] | None = None,
    *,
    embedder: Any = "auto",
    read_only: bool = False,
    config: Any = None,
    reembed: bool = False,
    clock: Any = None,
) -> Memory:
    """Open (or create) a memory store.

    Args:
        path: the store directory; None means ``MAGRAY_HOME`` or the user data directory.
        embedder: ``"auto"``, ``"hash"``, an Embedder instance, or None for a vector-only
            store (text queries then raise; pass ``vector=``).
        read_only: open alongside a running writer; ``mem.refresh()`` sees newer data.
        config: a MemoryConfig or a dict of its fields.
        reembed: allow opening with an embedder other than the store's, to convert the
            store with ``mem.reembed()``.
        clock: a function returning Unix seconds (tests inject one).

    Raises:
        StoreLockedError: another process has the store open for writing.
        EmbedderMismatchError: the store was built with another model.
        InvalidInputError, StoreError: a bad path or configuration.
    """
    import dataclasses

    from magray.app import build_container
    from magray.config import MemoryConfig, coerce_config, load_settings
    from magray.memory.engine import Memory

    flags: dict[str, Any] = {}
    if config is not None:
        cfg = coerce_config(config)
        given = (
            config
            if isinstance(config, dict)
            else {f.name: getattr(cfg, f.name) for f in dataclasses.fields(MemoryConfig)}
        )
        flags.update(given)
    if path is not None:
        flags["store"] = os.fspath(path)
    settings = load_settings(flags=flags)
    container = build_container(
        settings,
        # "auto" defers to the configured choice (the settings file or MAGRAY_EMBEDDER).
        embedder="settings" if embedder == "auto" else embedder,
        read_only=read_only,
        reembed=reembed,
        clock=clock,
        configure_logging=False,
    )
    try:
        mem = container.resolve(Memory)
    except BaseException as exc:
        container.close()
        cause = exc.__cause__ if type(exc).__name__ == "ContainerError" and exc.__cause__ else exc
        raise cause from None
    mem.owned_by(container)
    if not read_only:
        # Watch memory pressure for as long as the store is open (a daemon thread).
        from magray.ops.resources import ResourceManager

        try:
            container.resolve(ResourceManager).start()
        except BaseException:
            mem.close()
            raise
    return mem


def connect(
    url: str,
    *,
    namespace: str = "default",
    token: str | None = None,
    timeout: float | None = 60.0,
    root_certificates: bytes | None = None,
) -> RemoteMemory:
    """A namespace of a magray server (``magray serve``) with the API of :class:`Memory`.

    Args:
        url: ``grpc://HOST:PORT``, or ``grpcs://HOST:PORT`` for TLS (``?ca=FILE`` names a
            CA bundle).
        namespace: which of the server's stores; the first write creates it.
        token: the bearer token when the server has a tokens file (default:
            ``MAGRAY_TOKEN``).
        timeout: seconds per call; root_certificates: a PEM CA bundle for TLS.

    Raises:
        InvalidInputError: a malformed URL or namespace. A server that cannot be reached
        raises :class:`ServerError` on the first call.
    """
    from magray.client import connect as _connect

    return _connect(
        url,
        namespace=namespace,
        token=token,
        timeout=timeout,
        root_certificates=root_certificates,
    )


def restore(backup: str | os.PathLike[str], path: str | os.PathLike[str] | None = None) -> Path:
    """Restore a backup made by ``Memory.backup`` into path (verified, then swapped in)."""
    from magray.memory.backup import restore as _restore

    return _restore(backup, path)
