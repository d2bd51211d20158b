"""magray serve with the shared embedding cache: namespaces (and servers) that embed
the same texts compute each once, through a real redis-server."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import magray

from ..redis_servers import RedisServer, free_port
from .conftest import Server

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed (.ci/run does)"
)


def _scrape(port: int) -> dict[str, float]:
    import urllib.request

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in body.splitlines():
        if line.startswith("magray_cache_redis"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_a_second_server_reads_what_the_first_embedded(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path)
    try:
        texts = [f"shared paragraph {i} on cache tiers" for i in range(50)]
        first = server_factory("--cache-redis-url", redis.url, root=tmp_path / "a")
        with magray.connect(first.url, namespace="one") as m:
            m.add_many(texts)
            assert m.stats()["cache_redis"]["writes"] == 50
        port = free_port()
        second = server_factory(
            "--cache-redis-url", redis.url, "--metrics", f"127.0.0.1:{port}", root=tmp_path / "b"
        )
        with magray.connect(second.url, namespace="two") as m:
            m.add_many(texts)
            st = m.stats()["cache_redis"]
            assert st["hits"] == 50 and st["state"] == "closed"
        scraped = _scrape(port)
        assert scraped["magray_cache_redis_hits_total"] == 50
        assert scraped["magray_cache_redis_up"] == 1
        redis.kill()  # gone: the server goes on without it
        with magray.connect(second.url, namespace="three") as m:
            assert len(m.add_many([f"new text {i}" for i in range(5)])) == 5
            assert m.stats()["cache_redis"]["errors"] >= 1
        scraped = _scrape(port)
        assert scraped["magray_cache_redis_errors_total"] >= 1
        assert scraped["magray_cache_redis_up"] == 0
        assert first.stop() == 0 and second.stop() == 0
    finally:
        redis.kill()


def test_an_unusable_tier_is_one_line_at_start_and_the_server_serves(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    for url, words in (
        ("redis://127.0.0.1:1", "unavailable"),
        ("http://127.0.0.1:6379", "scheme"),
    ):
        s = server_factory("--cache-redis-url", url, root=tmp_path / words.replace(" ", "-"))
        with magray.connect(s.url, namespace="n") as m:
            assert len(m.add_many(["one", "two"])) == 2
        assert s.stop() == 0
        err = s.stderr()
        lines = [line for line in err.splitlines() if "cache" in line]
        assert lines and words in lines[0] and "Traceback" not in err, err
