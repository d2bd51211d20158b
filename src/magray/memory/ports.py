"""What the engine's helpers may use of it: backup, export/import and re-embedding are
written against this protocol, not against Memory, so that they do not import the
engine and a reader sees at once what they touch."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from magray.config import MemoryConfig
from magray.embed.base import Embedder
from magray.memory.codec import StoredRecord
from magray.memory.record import Layer
from magray.memory.store import Store


class Engine(Protocol):
    """The parts of an open store that its helpers read and write."""

    path: Path
    store: Store
    config: MemoryConfig
    read_only: bool
    dim: int
    fingerprint: str
    _embedder: Embedder | None
    _reembed_target: str | None
    _wlock: threading.RLock
    _seq: int
    _clock: Callable[[], float]

    def stats(self) -> dict[str, Any]: ...

    def _records_of(self, layer: Layer) -> Iterable[StoredRecord]: ...

    def _text(self, text: Any, what: str = "text") -> str: ...

    def _vectors(self, vectors: Any, n: int) -> np.ndarray: ...

    def _embed(
        self, texts: Sequence[str], *, query: bool = False, migrating: bool = False
    ) -> np.ndarray: ...

    def _insert(
        self,
        texts: list[str],
        vecs: np.ndarray,
        fields: list[dict[str, Any]],
        now: float,
        *,
        keep: list[StoredRecord | None] | None = None,
        touch: bool = True,
        text_keys: list[bytes] | None = None,
        dedupe: bool = True,
    ) -> list[Any]: ...

    def _flush_access(self) -> None: ...

    def _wait_builds(self) -> None: ...

    def _save_indexes(self, force: bool) -> None: ...

    def _open_indexes(self) -> None: ...
