"""OpenTelemetry: a span per RPC, continuing the client's trace, with child spans for
embedding, index search and store access; once in process with the SDK's in-memory
exporter, once over real OTLP/HTTP to a receiver on loopback."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.instrumentation.grpc")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

import magray  # noqa: E402
from magray.embed.hashing import HashEmbedder  # noqa: E402

from .conftest import start_server  # noqa: E402


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[tuple[str, InMemorySpanExporter]]:
    from magray.server.main import serve

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stop = threading.Event()
    ready = threading.Event()
    url: list[str] = []

    def on_ready(u: str) -> None:
        url.append(u)
        ready.set()

    t = threading.Thread(
        target=serve,
        kwargs={
            "root": tmp_path / "root",
            "listen": "127.0.0.1:0",
            "open_store": lambda path, emb: magray.open(path, embedder=emb),
            "embedder": HashEmbedder(),
            "tracer_provider": provider,
            "ready": on_ready,
            "stop": stop,
        },
    )
    t.start()
    assert ready.wait(30)
    yield url[0], exporter
    stop.set()
    t.join(60)


def test_rpc_spans_continue_the_client_trace_and_hold_the_engine_steps(
    in_process: tuple[str, InMemorySpanExporter],
) -> None:
    url, exporter = in_process
    client_tracer = TracerProvider().get_tracer("client")
    with magray.connect(url, namespace="traced") as m:
        m.add("a traced memory about deploy keys")
        exporter.clear()
        with client_tracer.start_as_current_span("agent step") as parent:
            m.search("deploy keys", k=3)
    spans = exporter.get_finished_spans()
    rpc = next(s for s in spans if s.name.endswith("/Search"))
    ctx = parent.get_span_context()
    assert rpc.context.trace_id == ctx.trace_id
    assert rpc.parent is not None and rpc.parent.span_id == ctx.span_id
    children = {s.name: s for s in spans if s.parent and s.parent.span_id == rpc.context.span_id}
    assert {"magray.embed", "magray.index.search", "magray.store.read"} <= set(children)
    assert children["magray.embed"].attributes["texts"] == 1


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 (the http.server hook)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_spans_reach_an_otlp_http_receiver(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    _Receiver.bodies = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{httpd.server_address[1]}/v1/traces"
    server = start_server(tmp_path / "root", "--otlp", endpoint)
    client_tracer = TracerProvider().get_tracer("client")
    with (
        magray.connect(server.url, namespace="otlp") as m,
        client_tracer.start_as_current_span("ingest") as parent,
    ):
        m.add_many(["first exported note", "second exported note"])
    assert server.stop() == 0  # shutdown flushes the batch processor
    httpd.shutdown()
    spans = []
    services = set()
    for body in _Receiver.bodies:
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            services |= {
                a.value.string_value for a in rs.resource.attributes if a.key == "service.name"
            }
            for ss in rs.scope_spans:
                spans.extend(ss.spans)
    assert services == {"magray"}
    names = {s.name for s in spans}
    assert {"/magray.v1.Memory/Add", "magray.embed", "magray.store.write"} <= names, names
    add = next(s for s in spans if s.name == "/magray.v1.Memory/Add")
    assert int.from_bytes(add.trace_id, "big") == parent.get_span_context().trace_id
