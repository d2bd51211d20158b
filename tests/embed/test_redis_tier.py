"""L3 on real Redis servers started here on loopback: a standalone server and a
3-master Cluster (redis-cli --cluster create). Nothing stands in for Redis."""

from __future__ import annotations

import shutil
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import magray
from magray.embed.hashing import HashEmbedder
from magray.embed.redis_tier import KEY_PREFIX, RedisTier, describe, parse
from magray.errors import InvalidInputError

from ..redis_servers import RedisServer, free_cluster_port

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed (.ci/run does)"
)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.kill()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServer]]:
    work = tmp_path_factory.mktemp("cluster")
    nodes = [
        RedisServer(
            work,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            port=free_cluster_port(),
        )
        for _ in range(3)
    ]
    subprocess.run(
        ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in nodes],
         "--cluster-replicas", "0", "--cluster-yes"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = subprocess.run(
            ["redis-cli", "-p", str(nodes[0].port), "cluster", "info"],
            capture_output=True,
            text=True,
        ).stdout
        if "cluster_state:ok" in info:
            break
        time.sleep(0.2)
    yield nodes
    for n in nodes:
        n.kill()


class CountingEmbedder(HashEmbedder):
    """The hash embedder, counting the texts it was asked to embed."""

    def __init__(self) -> None:
        super().__init__(dim=64)
        self.calls = 0

    def embed(self, texts: Any) -> np.ndarray:
        self.calls += len(texts)
        return super().embed(texts)


TEXTS = [f"paragraph {i} about the shared cache and topic {i % 13}" for i in range(300)]


def _second_host_skips_the_model(tmp_path: Path, url: str) -> None:
    a, b = CountingEmbedder(), CountingEmbedder()
    with magray.open(tmp_path / "a", embedder=a, config={"cache_redis_url": url}) as mem:
        mem.add_many(TEXTS)
        assert mem.stats()["cache_redis"]["writes"] == len(TEXTS)
    assert a.calls == len(TEXTS)
    with magray.open(tmp_path / "b", embedder=b, config={"cache_redis_url": url}) as mem:
        ids = mem.add_many(TEXTS)
        assert b.calls == 0  # every vector came from L3
        st = mem.stats()["cache_redis"]
        assert st["hits"] == len(TEXTS) and st["state"] == "closed"
        assert mem.search(TEXTS[5], k=1, mode="vector")[0].id == ids[5]
    # The L3 hits filled L2: a third open of b needs neither the model nor Redis.
    with magray.open(tmp_path / "b", embedder=b, config={"cache_redis_url": url}) as mem:
        mem.embed(TEXTS[:10])
        assert b.calls == 0 and mem.stats()["cache_redis"]["hits"] == 0


def test_a_second_host_reads_what_the_first_embedded(tmp_path: Path, redis_server: Any) -> None:
    _second_host_skips_the_model(tmp_path, redis_server.url)


def test_the_same_against_a_three_master_cluster(tmp_path: Path, redis_cluster: Any) -> None:
    _second_host_skips_the_model(tmp_path, f"redis+cluster://127.0.0.1:{redis_cluster[1].port}")


def test_a_damaged_value_is_a_miss_and_is_overwritten(tmp_path: Path, redis_server: Any) -> None:
    import redis

    url = redis_server.url
    with magray.open(
        tmp_path / "a", embedder=CountingEmbedder(), config={"cache_redis_url": url}
    ) as m:
        m.embed(["one text"])
    r = redis.Redis.from_url(url)
    (key,) = r.keys(KEY_PREFIX + b"*")
    good = r.get(key)
    r.set(key, good[:-1] + bytes([good[-1] ^ 1]))  # one flipped bit in the payload
    b = CountingEmbedder()
    with magray.open(tmp_path / "b", embedder=b, config={"cache_redis_url": url}) as m:
        m.embed(["one text"])
    assert b.calls == 1 and r.get(key) == good  # recomputed, and rewritten whole


def test_redis_down_slow_or_gone_mid_run_loses_nothing(tmp_path: Path, redis_server: Any) -> None:
    url = redis_server.url
    e = CountingEmbedder()
    texts = [f"note {i}" for i in range(400)]
    with magray.open(tmp_path / "s", embedder=e, config={"cache_redis_url": url}) as mem:
        ids = mem.add_many(texts[:100])
        redis_server.kill()
        t0 = time.perf_counter()
        ids += mem.add_many(texts[100:200])  # Redis gone: plain embedding, no error
        ids += mem.add_many(texts[200:300])
        assert time.perf_counter() - t0 < 5
        st = mem.stats()["cache_redis"]
        assert st["state"] == "open" and st["errors"] >= 1 and st["last_error"]
        redis_server.start()
        mem._embedding.l3.breaker.reset()  # (the breaker would retry by itself after reset_timeout)
        ids += mem.add_many(texts[300:])
        assert mem.stats()["cache_redis"]["state"] == "closed"
        assert len(set(ids)) == 400 and mem.stats()["records"] == 400
        assert e.calls == 400


def test_bad_urls_and_not_a_redis_are_one_line_and_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(InvalidInputError, match="scheme"):
        parse("http://127.0.0.1:6379")
    with pytest.raises(InvalidInputError, match="bad port"):
        parse("redis://127.0.0.1:notaport")
    assert describe("redis://alice:s3cret@10.0.0.1:6379/2") == "redis://10.0.0.1:6379/2"

    # A TCP echo server is not a Redis.
    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            while data := self.request.recv(1024):
                self.request.sendall(data)

    echo = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    for url in (f"redis://127.0.0.1:{echo.server_address[1]}", "ftp://nowhere"):
        e = CountingEmbedder()
        with magray.open(tmp_path / url[:4], embedder=e, config={"cache_redis_url": url}) as m:
            m.add_many(["a", "b", "c"])
            st = m.stats()["cache_redis"]
            assert st["state"] in ("open", "unusable", "closed") and st["last_error"], st
        assert e.calls == 3
    echo.shutdown()


def test_a_wrong_password_is_reported_not_raised(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, "--requirepass", "right")
    try:
        tier = RedisTier(f"redis://:wrong@127.0.0.1:{server.port}")
        reason = tier.check()
        assert reason is not None and "wrong" not in reason.replace("WRONGPASS", "")
        ok = RedisTier(f"redis://:right@127.0.0.1:{server.port}")
        assert ok.check() is None
        assert "right" not in repr(ok.stats())
    finally:
        server.kill()


def test_one_round_trip_per_batch(redis_server: Any) -> None:
    tier = RedisTier(redis_server.url)
    keys = [i.to_bytes(16, "big") for i in range(1000)]
    vecs = np.random.default_rng(0).standard_normal((1000, 32)).astype(np.float32)
    tier.put_many(keys, vecs)
    import redis

    observer = redis.Redis.from_url(redis_server.url)
    before = observer.info("stats")["total_commands_processed"]
    got = tier.get_many(keys, 32)
    after = observer.info("stats")["total_commands_processed"]
    assert after - before == 2  # one MGET, and the INFO that read the counter
    assert all(np.array_equal(g, v) for g, v in zip(got, vecs))


def test_a_cluster_slot_moving_mid_run_loses_nothing(redis_cluster: Any) -> None:
    """Reshard slots (keys migrate, clients get MOVED/ASK) between two batches, and
    while a batch is read: every entry is still found, and writes keep landing."""
    url = f"redis+cluster://127.0.0.1:{redis_cluster[0].port}"
    tier = RedisTier(url)
    keys = [i.to_bytes(16, "big") for i in range(3000)]
    vecs = np.random.default_rng(1).standard_normal((3000, 16)).astype(np.float32)
    tier.put_many(keys[:2000], vecs[:2000])
    ids = {}
    for line in subprocess.run(
        ["redis-cli", "-p", str(redis_cluster[0].port), "cluster", "nodes"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines():  # fmt: skip
        parts = line.split()
        ids[int(parts[1].split(":")[1].split("@")[0])] = parts[0]
    src, dst = ids[redis_cluster[0].port], ids[redis_cluster[1].port]
    reshard = subprocess.Popen(
        ["redis-cli", "--cluster", "reshard", f"127.0.0.1:{redis_cluster[0].port}",
         "--cluster-from", src, "--cluster-to", dst, "--cluster-slots", "600",
         "--cluster-yes", "--cluster-pipeline", "10"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    found_during = []
    while reshard.poll() is None:
        got = tier.get_many(keys[:2000], 16)
        found_during.append(sum(g is not None for g in got))
    assert reshard.returncode == 0
    assert found_during and min(found_during) == 2000, found_during  # MOVED/ASK followed
    tier.put_many(keys[2000:], vecs[2000:])
    got = tier.get_many(keys, 16)
    assert all(g is not None and np.array_equal(g, v) for g, v in zip(got, vecs))
    assert tier.stats()["state"] == "closed"
