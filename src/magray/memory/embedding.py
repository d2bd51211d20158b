"""A store's embedding path: texts to unit vectors through its embedder, behind the
embedding cache (L1 in memory, L2 in the store, L3 an optional shared Redis tier).

Documents and queries have separate caches when the model embeds them differently (a
query prefix). A text the model maps to the zero vector gets a fixed fallback direction,
so that whatever is stored can be found by its own text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from magray.config import MemoryConfig
from magray.embed.base import Embedder
from magray.errors import EmbedderMismatchError, InvalidInputError, StoreError
from magray.memory.observe import Instruments
from magray.memory.store import Store
from magray.ops.tracing import span

_LOG = logging.getLogger("magray.memory")


def give_direction(texts: Sequence[str], vecs: np.ndarray) -> None:
    """Replace the zero rows of vecs (float32, shape (len(texts), dim)), in place, by
    their texts' fallback directions (:func:`magray.embed.base.fallback_directions`)."""
    zero = ~vecs.any(axis=1)
    if zero.any():
        from magray.embed.base import fallback_directions

        rows = np.flatnonzero(zero)
        vecs[rows] = fallback_directions([texts[int(i)] for i in rows], vecs.shape[1])


class EmbeddingPath:
    """The embedder of one store behind its caches. Thread-safe."""

    def __init__(
        self, embedder: Embedder | None, store: Store, config: MemoryConfig, obs: Instruments
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.config = config
        self.obs = obs
        self.caches: dict[str, Any] = {}  # "doc" and, for a model with a query form, "query"
        self.l1_bytes = config.cache_l1_bytes
        self.l3: Any = None  # the Redis cache tier, made on first use
        self.l3_error: str | None = None
        self._lock = threading.Lock()  # two first embeds must not make two caches

    def embed(
        self, texts: Sequence[str], *, query: bool = False, expect: str | None = None
    ) -> np.ndarray:
        """float32 unit vectors, shape (len(texts), dim), of already validated texts.

        query: embed in the model's query form where it has one. expect: the store's
        vector fingerprint, when its vectors must come from this embedder (everything
        but a re-embed into it). Raises InvalidInputError without an embedder,
        EmbedderMismatchError when the embedder is not the expected model, and
        StoreError when the embedder returns the wrong shape.
        """
        e = self.embedder
        if e is None:
            raise InvalidInputError(
                "this store has no embedder (opened with embedder=None): pass vector= / "
                "vectors=, or open it with an embedder to use text"
            )
        if expect and e.fingerprint != expect:
            raise EmbedderMismatchError(
                f"the store's vectors come from {expect}, and {e.name} is the model a "
                "re-embed is converting it to; finish with mem.reembed() first, or open "
                "the store with its own model"
            )
        cache = self.cache_for(query)
        out: np.ndarray
        t_cache = time.perf_counter()
        out, missing, keys = cache.get_many(texts)
        self.obs.observe("cache", time.perf_counter() - t_cache)
        self.obs.count("cache_hits", len(texts) - len(missing))
        if missing:
            todo = [texts[i] for i in missing]
            embed = getattr(e, "embed_query", None) if query else None
            t0 = time.perf_counter()
            with span("magray.embed", texts=len(todo)):
                vecs = np.asarray((embed or e.embed)(todo), dtype=np.float32)
            self.obs.observe("embed", time.perf_counter() - t0)
            self.obs.count("embedded", len(todo))
            if vecs.shape != (len(todo), e.dim):
                raise StoreError(
                    f"embedder {e.name} returned shape {vecs.shape}, expected {(len(todo), e.dim)}"
                )
            give_direction(todo, vecs)
            out[missing] = vecs
            cache.put_many([keys[i] for i in missing], vecs)
        else:
            give_direction(texts, out)  # entries cached before the rule existed
        return out

    def cache_for(self, query: bool) -> Any:
        """The cache of documents, or of queries when the model embeds them differently."""
        from magray.embed.cache import EmbeddingCache

        e = self.embedder
        assert e is not None
        distinct = query and getattr(e, "query_prefix", "") != getattr(e, "document_prefix", "")
        key = "query" if distinct else "doc"
        cache = self.caches.get(key)
        if cache is None:
            with self._lock:
                cache = self.caches.get(key)
                if cache is None:
                    fp = e.fingerprint + ("/query" if distinct else "")
                    cache = EmbeddingCache(
                        fp,
                        e.dim,
                        store=self.store,
                        l1_bytes=self.l1_bytes,
                        l2_bytes=self.config.cache_l2_bytes,
                        l3=self.redis_tier(),
                    )
                    self.caches[key] = cache
        return cache

    def resize_l1(self, l1_bytes: int) -> None:
        """Change the bound of the in-memory caches (bytes), now and for later ones."""
        self.l1_bytes = int(l1_bytes)
        for cache in self.caches.values():
            cache.resize_l1(self.l1_bytes)

    def cache_stats(self) -> dict[str, Any]:
        return {key: c.stats() for key, c in self.caches.items()}

    def redis_stats(self) -> dict[str, Any] | None:
        """The L3 tier's state for stats and health: None when none is configured."""
        if not self.config.cache_redis_url:
            return None
        if self.l3_error is not None:
            return {"state": "unusable", "last_error": self.l3_error}
        tier = self.l3
        return {"state": "unused"} if tier is None else dict(tier.stats())

    def redis_tier(self) -> Any:
        """The shared L3 tier (config cache_redis_url), made once; None without one or
        when its URL is unusable (said once in the log and in stats)."""
        if self.l3 is not None or not self.config.cache_redis_url or self.l3_error:
            return self.l3
        from magray.embed.redis_tier import RedisTier, describe

        try:
            self.l3 = RedisTier(self.config.cache_redis_url, ttl=self.config.cache_redis_ttl)
        except InvalidInputError as exc:
            self.l3_error = str(exc)
            _LOG.warning("redis cache %s unusable: %s; continuing without it",
                         describe(self.config.cache_redis_url), exc)  # fmt: skip
        return self.l3

    def close(self) -> None:
        """Close the connections of the L3 tier, if one was made."""
        if self.l3 is not None:
            self.l3.close()
