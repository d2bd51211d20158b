"""The server as an operator meets it: tokens and tenants, limits and bad input, health,
reflection, metrics, graceful shutdown, and clients that go away mid-stream."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

import magray
from magray.v1 import memory_pb2 as pb
from magray.v1 import memory_pb2_grpc as pb_grpc

from .conftest import BIN, Server, remote

WRITER = "w" * 24
READER = "r" * 24
OTHER = "o" * 24


def _tokens(path: Path) -> Path:
    path.write_text(
        f"""
[[token]]
name = "writer"
token = "{WRITER}"
namespaces = ["team-a"]
rights = ["read", "write"]

[[token]]
name = "reader"
sha256 = "{hashlib.sha256(READER.encode()).hexdigest()}"
namespaces = ["team-a"]
rights = ["read"]

[[token]]
name = "other"
token = "{OTHER}"
namespaces = ["team-b"]
rights = ["read", "write"]
"""
    )
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tokens_grant_namespaces_and_rights(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory("--tokens", str(_tokens(tmp_path / "tokens.toml")))
    with remote(server, "team-a") as anon, pytest.raises(magray.AuthError, match="needs a token"):
        anon.add("no token")
    with remote(server, "team-a", token="x" * 24) as bad, pytest.raises(magray.AuthError):
        bad.search("wrong token")
    with remote(server, "team-a", token=WRITER) as w:
        rid = w.add("a secret of team a", tags=["a"])
    with remote(server, "team-a", token=READER) as r:
        assert r.get(rid).text == "a secret of team a"  # type: ignore[union-attr]
        assert r.search("secret", k=1)[0].id == rid
        with pytest.raises(magray.PermissionDeniedError, match="may only read"):
            r.add("readers cannot write")
    with remote(server, "team-a", token=OTHER) as o, pytest.raises(magray.PermissionDeniedError):
        o.search("secret")
    # Team b's token sees nothing of team a: no id, no search, no export reaches it.
    with remote(server, "team-b", token=OTHER) as o:
        o.add("team b's own note")
        assert o.get(rid) is None
        assert all(h.record.text != "a secret of team a" for h in o.search("secret", k=10))
        assert o.export_jsonl(tmp_path / "b.jsonl") == 1
        with pytest.raises(magray.NotFoundError):
            o.delete(rid)
        for name in ("../team-a", "/etc", "a/b", ".."):
            with pytest.raises(magray.InvalidInputError, match="plain name"):
                o._call("Backup", pb.BackupRequest(name=name))
        path = o.backup("nightly")
        assert path == server.root / ".backups" / "team-b" / "nightly"
    assert WRITER not in server.stderr() if server.stop() == 0 else False


def test_a_bad_tokens_file_stops_the_server_at_start_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "tokens.toml"
    for text, fragment in (
        ("[[token]]\nnamespaces = ['a']\n", "exactly one of sha256 and token"),
        ("[[token]\n", "not valid TOML"),
        ('[[token]]\ntoken = "short"\nnamespaces = ["a"]\n', "16 or more"),
        (f'[[token]]\ntoken = "{WRITER}"\nnamespaces = ["a"]\nrights = ["admin"]\n', "rights"),
    ):
        bad.write_text(text)
        proc = subprocess.run(
            [str(BIN), "serve", "--root", str(tmp_path / "r"), "--tokens", str(bad)],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, MAGRAY_EMBEDDER="hash"),
        )
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [str(BIN), "serve", "--root", str(tmp_path / "r"), "--listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, MAGRAY_EMBEDDER="hash"),
    )
    assert proc.returncode == 1 and "--tokens" in proc.stderr


def test_malformed_requests_get_the_right_status_and_the_server_keeps_serving(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory("--max-message-mb", "1")
    channel = grpc.insecure_channel(server.url.removeprefix("grpc://"))
    stub = pb_grpc.MemoryStub(channel)  # type: ignore[no-untyped-call]
    md = (("x-magray-namespace", "bad-input"),)

    def status(fn: Callable[[], Any]) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as info:
            fn()
        return info.value.code()  # type: ignore[no-any-return]

    stub.Add(pb.AddRequest(texts=["seed"]), metadata=md)
    bad_vec = pb.Vectors(data=b"\x00" * 10, rows=1, dim=4)
    assert status(lambda: stub.Search(pb.SearchRequest(vector=bad_vec), metadata=md)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    wrong_dim = pb.Vectors(data=np.ones(7, "<f4").tobytes(), rows=1, dim=7)
    assert status(lambda: stub.Search(pb.SearchRequest(vector=wrong_dim), metadata=md)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert status(lambda: stub.Get(pb.GetRequest(id="zz"), metadata=md)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        status(
            lambda: stub.Add(
                pb.AddRequest(texts=["x"]), metadata=(("x-magray-namespace", "../up"),)
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        status(
            lambda: stub.Search(
                pb.SearchRequest(query="x"), metadata=(("x-magray-namespace", "nope"),)
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )
    bad_meta = pb.Fields(metadata=b"\xc1not msgpack")
    assert status(lambda: stub.Add(pb.AddRequest(texts=["y"], fields=bad_meta), metadata=md)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    huge = pb.AddRequest(texts=["z" * (2 << 20)])
    assert status(lambda: stub.Add(huge, metadata=md)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Still serving, and nothing of the bad requests was written.
    reply = stub.Search(pb.SearchRequest(query="seed", k=5), metadata=md)
    assert [h.record.text for h in reply.hits] == ["seed"]
    channel.close()


def test_health_reflection_and_metrics(server_factory: Callable[..., Server]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    port = _free_port()
    server = server_factory("--metrics", f"127.0.0.1:{port}")
    channel = grpc.insecure_channel(server.url.removeprefix("grpc://"))
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "magray.v1.Memory"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    req = reflection_pb2.ServerReflectionRequest(list_services="")
    services = {
        s.name
        for r in refl.ServerReflectionInfo(iter([req]))
        for s in r.list_services_response.service
    }
    assert {"magray.v1.Memory", "grpc.health.v1.Health"} <= services
    with remote(server, "m") as m:
        m.add_many(["one text", "two text"])
        m.search("one", k=1)
        with pytest.raises(magray.InvalidInputError):
            m.get("not-an-id")  # judged by the server
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'magray_rpc_calls_total{code="OK",method="Add"} 1.0' in text
    assert 'magray_rpc_calls_total{code="INVALID_ARGUMENT",method="Get"} 1.0' in text
    assert 'magray_rpc_seconds_count{method="Search"} 1.0' in text
    assert "magray_open_namespaces 1.0" in text
    assert "magray_embed_batch_texts_count" in text
    channel.close()


def test_sigterm_drains_flushes_and_releases_the_stores(server: Server) -> None:
    with remote(server, "kept") as m:
        ids = m.add_many([f"kept {i}" for i in range(50)])
    assert (server.root / "kept" / "serving.json").is_file()
    assert server.stop(signal.SIGTERM) == 0
    assert not (server.root / "kept" / "serving.json").exists()
    with magray.open(server.root / "kept", embedder="hash") as local:  # the lock is free
        assert [local.get(i) is not None for i in ids] == [True] * 50


CLIENT = r"""
import os, signal, sys, numpy as np, magray
url, ack = sys.argv[1], sys.argv[2]
m = magray.connect(url, namespace="stream")
rng = np.random.default_rng(0)

def batches():
    for b in range(1000):
        yield {"texts": [f"b{b}-{i}" for i in range(100)],
               "vectors": rng.standard_normal((100, 384)).astype(np.float32)}

def on_ack(ids):
    with open(ack, "a") as f:
        f.write(" ".join(ids) + "\n")
        f.flush(); os.fsync(f.fileno())
    if sum(1 for _ in open(ack)) == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # gone mid-stream

m.add_stream(batches(), on_ack=on_ack)
"""


def test_a_client_gone_mid_stream_leaves_only_whole_acknowledged_batches(
    server: Server, tmp_path: Path
) -> None:
    ack = tmp_path / "acks"
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, server.url, str(ack)], capture_output=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr.decode()
    acked = [line.split() for line in ack.read_text().splitlines()]
    assert len(acked) == 3
    time.sleep(0.5)
    with remote(server, "stream") as m:
        texts = [r.text for r in m.recent(limit=10_000)]
        for ids in acked:
            assert all(m.get(i) is not None for i in ids)
    # Whole batches only: every batch present has all of its 100 records.
    per_batch: dict[str, int] = {}
    for t in texts:
        per_batch[t.split("-")[0]] = per_batch.get(t.split("-")[0], 0) + 1
    assert set(per_batch.values()) == {100}, per_batch
    assert len(per_batch) >= 3


def test_the_cli_runs_memory_commands_on_a_server(server: Server, tmp_path: Path) -> None:
    env = dict(os.environ, MAGRAY_EMBEDDER="hash", NO_COLOR="1", MAGRAY_HOME=str(tmp_path / "h"))

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN), *args], capture_output=True, text=True, env=dict(env, **extra), timeout=60
        )

    r = cli("--server", server.url, "--namespace", "cli", "memory", "add", "remote note one")
    assert r.returncode == 0, r.stderr
    r = cli(
        "memory",
        "search",
        "remote note",
        "--json",
        MAGRAY_SERVER=server.url,
        MAGRAY_NAMESPACE="cli",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["record"]["text"] == "remote note one"
    r = cli("--server", server.url, "--namespace", "cli", "memory", "stats", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["records"] == 1, r.stderr
    # A local store held by the server: the CLI finds the server through the store.
    r = cli("--store", str(server.root / "cli"), "memory", "add", "through the store dir")
    assert r.returncode == 0, r.stderr
    r = cli("--store", str(server.root / "cli"), "memory", "list", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 2, r.stderr
    # An unreachable server: one line, exit 1.
    r = cli("--server", "grpc://127.0.0.1:9", "memory", "add", "nowhere")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "unavailable" in r.stderr and "Traceback" not in r.stderr


def test_tls(server_factory: Callable[..., Server], tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a test certificate: {made.stderr[-200:]!r}")
    server = server_factory("--tls-cert", str(cert), "--tls-key", str(key))
    assert server.url.startswith("grpcs://")
    with magray.connect(f"{server.url}?ca={cert}", namespace="tls") as m:
        rid = m.add("sent over TLS")
        assert m.get(rid).text == "sent over TLS"  # type: ignore[union-attr]
    plain = server.url.replace("grpcs://", "grpc://")
    with magray.connect(plain, namespace="tls", timeout=5) as m, pytest.raises(magray.ServerError):
        m.get(rid)


def test_calls_beyond_the_concurrency_limit_get_resource_exhausted(
    server_factory: Callable[..., Server],
) -> None:
    import threading

    server = server_factory("--max-concurrent", "1")
    channel = grpc.insecure_channel(server.url.removeprefix("grpc://"))
    stub = pb_grpc.MemoryStub(channel)  # type: ignore[no-untyped-call]
    md = (("x-magray-namespace", "busy"),)
    stub.Add(pb.AddRequest(texts=["seed"]), metadata=md)
    release = threading.Event()

    def held() -> Any:
        yield pb.Chunk(data=b"")
        release.wait(30)

    pending = stub.Import.future(held(), metadata=md)  # holds the only slot
    time.sleep(0.5)
    with pytest.raises(grpc.RpcError) as info:
        stub.Search(pb.SearchRequest(query="seed"), metadata=md)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    release.set()
    assert pending.result(timeout=30).added == 0
    assert stub.Search(pb.SearchRequest(query="seed"), metadata=md).hits[0].record.text == "seed"
    channel.close()


def test_sigterm_lets_a_call_in_flight_finish(server: Server, tmp_path: Path) -> None:
    import threading

    channel = grpc.insecure_channel(server.url.removeprefix("grpc://"))
    stub = pb_grpc.MemoryStub(channel)  # type: ignore[no-untyped-call]
    md = (("x-magray-namespace", "drain"),)
    line = json.dumps({"text": "imported while the server was stopping"}) + "\n"
    go_on = threading.Event()

    def chunks() -> Any:
        yield pb.Chunk(data=line.encode())
        go_on.wait(30)
        yield pb.Chunk(data=b"")

    pending = stub.Import.future(chunks(), metadata=md)
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert server.proc.poll() is None  # still draining
    go_on.set()
    assert pending.result(timeout=30).added == 1
    assert server.proc.wait(60) == 0
    channel.close()
    with magray.open(server.root / "drain", embedder="hash") as local:
        assert [r.text for r in local.recent()] == ["imported while the server was stopping"]


def test_a_bad_import_names_the_upload_not_a_server_path(server: Server, tmp_path: Path) -> None:
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    with remote(server, "imports") as m:
        m.add("the namespace exists")
        with pytest.raises(magray.InvalidInputError) as info:
            m.import_jsonl(bad)
    assert "the uploaded lines" in str(info.value) and "UTF-8" in str(info.value)
    assert str(server.root) not in str(info.value)


def test_add_stream_batches_take_add_manys_arguments(server: Server) -> None:
    with remote(server, "streamed") as m:
        ids = m.add_stream(
            [{"texts": ["one", "two"], "tags": ["t"]}, {"texts": ["three"], "layer": "assets"}]
        )
        assert [m.get(i).text for i in ids] == ["one", "two", "three"]  # type: ignore[union-attr]
        assert m.get(ids[2]).layer.value == "assets"  # type: ignore[union-attr]
        acked: list[list[str]] = []
        with pytest.raises(magray.InvalidInputError, match="add_many's arguments"):
            m.add_stream(
                [{"texts": ["kept"]}, {"texts": ["x"], "colour": "red"}], on_ack=acked.append
            )
        assert len(acked) == 1 and m.get(acked[0][0]).text == "kept"  # type: ignore[union-attr]
