"""L3 of the embedding cache: Redis, shared by every process and host that names it.

An accelerator, never a dependency: every call has a short timeout and goes through a
circuit breaker, and any failure (down, slow, refusing, a wrong password, not a Redis
at all) is a miss, logged once per state change and shown in ``stats()``, never an
error to the caller.

URLs: ``redis://[user:password@]host:port[/db]``, ``rediss://...`` (TLS), and
``redis+cluster://[user:password@]host:port`` (or ``rediss+cluster://``) for a Redis
Cluster, of which one node is enough to find the others. A password may also come from
``MAGRAY_CACHE_REDIS_PASSWORD`` (and a user from ``MAGRAY_CACHE_REDIS_USER``); neither
is ever logged: ``describe()`` shows the URL without them.

Keys: ``magray:e1:`` + the cache key (16 bytes of XXH3-128 over the model fingerprint
and the text: vectors of two models never meet). Values: a 16-byte header (``b"MGE1"``,
dimension as uint32, the first 8 bytes of XXH3-128 of the payload) and the float32
vector. A value that fails its check is a miss and is overwritten.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from magray.errors import InvalidInputError
from magray.kernels import hash128_many

log = logging.getLogger("magray.cache")

KEY_PREFIX = b"magray:e1:"
_MAGIC = b"MGE1"
_HEADER = struct.Struct("<4sI8s")  # magic, dimension, checksum of the payload
_SCHEMES = {"redis", "rediss", "redis+cluster", "rediss+cluster"}


def parse(url: str) -> tuple[str, bool, str | None, str | None]:
    """(URL for redis-py, cluster?, user, password) from a cache_redis_url; raises
    InvalidInputError naming the problem."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInputError("cache_redis_url is empty; give redis://HOST:PORT or unset it")
    parts = urlsplit(url.strip())
    if parts.scheme not in _SCHEMES:
        raise InvalidInputError(
            f"cache_redis_url scheme {parts.scheme or '(none)'!r} is not one of "
            "redis://, rediss://, redis+cluster://, rediss+cluster://"
        )
    try:
        port = parts.port
    except ValueError:
        raise InvalidInputError(f"cache_redis_url has a bad port: {describe(url)}") from None
    if not parts.hostname:
        raise InvalidInputError(f"cache_redis_url names no host: {describe(url)}")
    user = parts.username or os.environ.get("MAGRAY_CACHE_REDIS_USER")
    password = parts.password or os.environ.get("MAGRAY_CACHE_REDIS_PASSWORD")
    cluster = parts.scheme.endswith("+cluster")
    scheme = parts.scheme.split("+")[0]
    netloc = parts.hostname + (f":{port}" if port else "")
    return urlunsplit((scheme, netloc, parts.path, parts.query, "")), cluster, user, password


def describe(url: str) -> str:
    """The URL without user or password: safe to log."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit((parts.scheme, host + port, parts.path, "", ""))
    except ValueError:
        return "(unparsable URL)"


def pack_many(vectors: np.ndarray) -> list[bytes]:
    """Header + float32 payload of each row of vectors (one native hashing call)."""
    payloads = [np.ascontiguousarray(v, np.float32).tobytes() for v in vectors]
    checks = hash128_many(tuple(payloads)) if payloads else None
    return [
        _HEADER.pack(_MAGIC, len(p) // 4, checks[i, :8].tobytes()) + p  # type: ignore[index]
        for i, p in enumerate(payloads)
    ]


def unpack_many(raws: Sequence[Any], dim: int) -> list[np.ndarray | None]:
    """The vector in each raw value, or None for a missing one or one that fails any
    check (size, magic, dimension, checksum, finite values); one native hashing call."""
    out: list[np.ndarray | None] = [None] * len(raws)
    size = _HEADER.size + 4 * dim
    sized = [i for i, raw in enumerate(raws) if isinstance(raw, bytes) and len(raw) == size]
    if not sized:
        return out
    checks = hash128_many(tuple(raws[i][_HEADER.size :] for i in sized))
    for j, i in enumerate(sized):
        magic, d, check = _HEADER.unpack_from(raws[i])
        if magic != _MAGIC or d != dim or checks[j, :8].tobytes() != check:
            continue
        v = np.frombuffer(raws[i], np.float32, offset=_HEADER.size).copy()
        if np.isfinite(v).all():
            out[i] = v
    return out


def probe(url: str) -> str | None:
    """Why the tier at url cannot be used (a malformed URL, refused, a wrong password,
    not a Redis), or None when it answers; for start-up lines and health."""
    try:
        tier = RedisTier(url)
    except InvalidInputError as exc:
        return str(exc)
    try:
        return tier.check()
    finally:
        tier.close()


class RedisTier:
    """Batched get and put of vectors on Redis (standalone or Cluster)."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 0.0,
        timeout: float = 0.25,
        failure_threshold: int = 3,
        reset_timeout: float = 5.0,
    ) -> None:
        from magray.resilience import CircuitBreaker

        self.url = describe(url)
        self.ttl = float(ttl)
        self.hits = self.misses = self.errors = self.writes = 0
        self.last_error: str | None = None
        self.last_ok = True  # the last call to Redis succeeded (or none was made)
        self._lock = threading.Lock()
        self.breaker = CircuitBreaker(
            "redis-cache",
            failure_threshold=failure_threshold,
            reset_timeout=reset_timeout,
            on_state_change=self._state_changed,
        )
        target, self.cluster, user, password = parse(url)
        kwargs: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "username": user,
            "password": password,
        }
        self._target = target
        self._kwargs = kwargs
        self._client: Any = None  # connecting (finding a cluster's nodes) may fail: lazily

    def _make(self) -> Any:
        if self.cluster:
            from redis.cluster import RedisCluster

            return RedisCluster.from_url(self._target, **self._kwargs)
        import redis

        return redis.Redis.from_url(self._target, **self._kwargs)

    def _state_changed(self, old: Any, new: Any) -> None:
        """The line for the tier going away is written by the first failure (_fail);
        the breaker's retries in between are debug output; coming back is one line."""
        if new.value == "closed":
            log.warning("redis cache %s is back", self.url)
        else:
            log.debug("redis cache %s: circuit %s -> %s", self.url, old.value, new.value)

    def _conn(self) -> Any:
        if self._client is None:
            self._client = self._make()
        return self._client

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            first = self.last_ok
            self.last_ok = False
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
        if first:
            log.warning(
                "redis cache %s unavailable (%s); continuing without it",
                self.url,
                self.last_error,
            )
        self.breaker.record_failure(exc)
        if self.cluster:
            self._client = None  # rediscover the nodes on the next try

    def check(self) -> str | None:
        """Ping once: None when the tier works, else the reason (for health and the
        server's start-up line)."""
        try:
            if self._conn().ping() is not True:
                return "the server did not answer PING with PONG: is it a Redis?"
            return None
        except Exception as exc:  # the caller reports it; nothing is logged here
            self._client = None
            return f"{type(exc).__name__}: {exc}"

    def get_many(self, keys: Sequence[bytes], dim: int) -> list[np.ndarray | None]:
        """The vector of each key (None: a miss, a bad value, or the tier unavailable)."""
        out: list[np.ndarray | None] = [None] * len(keys)
        if not keys or not self.breaker.allow():
            with self._lock:
                self.misses += len(keys)
            return out
        names = [KEY_PREFIX + k for k in keys]
        try:
            c = self._conn()
            raws = c.mget_nonatomic(names) if self.cluster else c.mget(names)
        except Exception as exc:
            self._fail(exc)
            with self._lock:
                self.misses += len(keys)
            return out
        self.breaker.record_success()
        self.last_ok = True
        out = unpack_many(raws, dim)
        bad = [i for i, raw in enumerate(raws) if raw is not None and out[i] is None]
        found = sum(v is not None for v in out)
        with self._lock:
            self.hits += found
            self.misses += len(keys) - found
        if bad:
            log.warning("redis cache %s: %d damaged entries, recomputed", self.url, len(bad))
        return out

    def put_many(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Write each (key, vector); best effort, in one pipeline."""
        if not len(keys) or not self.breaker.allow():
            return
        try:
            pipe = self._conn().pipeline(transaction=False)
            ex = int(self.ttl) if self.ttl >= 1 else None
            for key, value in zip(keys, pack_many(vectors)):
                pipe.set(KEY_PREFIX + key, value, ex=ex)
            pipe.execute()
        except Exception as exc:
            self._fail(exc)
            return
        self.breaker.record_success()
        self.last_ok = True
        with self._lock:
            self.writes += len(keys)

    def stats(self) -> dict[str, Any]:
        total = self.hits + self.misses
        return {
            "url": self.url,
            "cluster": self.cluster,
            "state": self.breaker.state.value,
            "last_call_ok": self.last_ok,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / total, 4) if total else 0.0,
            "writes": self.writes,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        c, self._client = self._client, None
        if c is not None:
            try:
                c.close()
            except Exception:
                pass
