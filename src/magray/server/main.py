"""``magray serve``: a gRPC server for the namespaces under one root directory.

Standard gRPC health checking and server reflection are served beside magray.v1.Memory.
SIGTERM or SIGINT drains the calls in flight (new ones are refused), flushes and closes
every open store (releasing their locks) and returns 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from magray.errors import InvalidInputError

_LOG = logging.getLogger("magray.server")
SERVICE_NAME = "magray.v1.Memory"


def parse_listen(listen: str) -> tuple[str, int]:
    """host:port (IPv6 in brackets) from a --listen value; InvalidInputError otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidInputError(
            f"--listen {listen!r} is not HOST:PORT; pass e.g. 127.0.0.1:7077 (port 0: any)"
        )
    return host.strip("[]"), int(port)


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class Metrics:
    """The server's Prometheus metrics (prometheus-client), in a registry of their own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.calls = Counter(
            "magray_rpc_calls", "RPCs handled", ["method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "magray_rpc_seconds",
            "RPC latency in seconds",
            ["method"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.namespaces = Gauge(
            "magray_open_namespaces", "namespaces with an open store", registry=self.registry
        )
        self.batch = Histogram(
            "magray_embed_batch_texts",
            "texts per shared model call",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )

    def watch_cache_tier(self, tenants: Any) -> None:
        """Export the Redis cache tier (L3) of the open stores at each scrape:
        ``magray_cache_redis_{hits,misses,errors}`` (summed over the open stores) and
        ``magray_cache_redis_up`` (1 when the last call of every open store's tier
        succeeded and none has its circuit open)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        class _Collector:
            def collect(self) -> Any:
                tiers = [m.redis_cache_stats() for m in tenants.open_memories()]
                tiers = [t for t in tiers if t is not None]
                if not tiers:
                    return
                for name, what in (
                    ("hits", "L3 lookups answered"),
                    ("misses", "L3 lookups not answered"),
                    ("errors", "L3 calls that failed"),
                ):
                    c = CounterMetricFamily(f"magray_cache_redis_{name}", what)
                    c.add_metric([], float(sum(t.get(name, 0) for t in tiers)))
                    yield c
                up = GaugeMetricFamily("magray_cache_redis_up", "the L3 tier is usable")
                usable = all(
                    t["state"] in ("closed", "unused") and t.get("last_call_ok", True)
                    for t in tiers
                )
                up.add_metric([], float(usable))
                yield up

        self.registry.register(_Collector())

    def serve_http(self, listen: str) -> None:
        from prometheus_client import start_http_server

        host, port = parse_listen(listen)
        start_http_server(port, addr=host, registry=self.registry)


class _Observe(grpc.ServerInterceptor):  # type: ignore[misc]
    """Counts every RPC by method and status code and times it."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method.rsplit("/", 1)[-1]
        m = self.m

        def observe(t0: float, context: Any) -> None:
            code = context.code() or grpc.StatusCode.OK
            m.calls.labels(method, code.name).inc()
            m.latency.labels(method).observe(time.perf_counter() - t0)

        if handler.unary_unary is not None or handler.stream_unary is not None:
            inner = handler.unary_unary or handler.stream_unary

            def unary(request: Any, context: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return inner(request, context)
                finally:
                    observe(t0, context)

            make = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary is not None
                else grpc.stream_unary_rpc_method_handler
            )
            return make(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        inner_stream = handler.unary_stream or handler.stream_stream

        def streaming(request: Any, context: Any) -> Any:
            t0 = time.perf_counter()
            try:
                yield from inner_stream(request, context)
            finally:
                observe(t0, context)

        make = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream is not None
            else grpc.stream_stream_rpc_method_handler
        )
        return make(
            streaming,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def serve(
    *,
    root: Path,
    listen: str = "127.0.0.1:7077",
    open_store: Callable[[Path, Any], Any],
    embedder: Any,
    tokens_file: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    metrics_listen: str | None = None,
    max_open: int = 16,
    workers: int = 16,
    max_concurrent: int = 256,
    max_message_mb: int = 64,
    batch_wait_ms: float = 2.0,
    batch_max: int = 64,
    tracer_provider: Any = None,
    ready: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set); returns the exit status.

    Args:
        root: the directory holding one store per namespace (created if missing).
        listen: HOST:PORT; port 0 picks a free one (``ready`` is told the real address).
        open_store: ``open_store(path, embedder)`` opens one namespace's Memory.
        embedder: the shared Embedder (None: vector-only stores); its calls are
            batched across requests.
        tokens_file: the bearer tokens (see :mod:`magray.server.auth`); without it,
            only a loopback address may be served.
        tls_cert, tls_key: PEM files; both or neither.
        metrics_listen: HOST:PORT for Prometheus metrics over HTTP.
        max_open: the most namespaces open at once.
        workers: threads handling RPCs; max_concurrent: RPCs admitted at once (more get
            RESOURCE_EXHAUSTED); max_message_mb: the largest message either way.
        batch_wait_ms: how long the embedding batcher waits to fill a batch;
            batch_max: the most texts per model call (1: one call per request).
        tracer_provider: an OpenTelemetry TracerProvider: a span per RPC (trace context
            taken from the client's metadata) with child spans for embedding, index
            search and store access.
        ready: called with "grpc://HOST:PORT" (or grpcs://) once serving.

    Raises:
        InvalidInputError: a bad listen address, tokens file, TLS pair or limit.
    """
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    from magray.server.auth import Tokens
    from magray.server.batching import BatchingEmbedder
    from magray.server.service import MemoryService
    from magray.server.tenants import Tenants
    from magray.v1 import memory_pb2, memory_pb2_grpc

    host, port = parse_listen(listen)
    tokens = Tokens.load(tokens_file) if tokens_file else None
    if tokens is None and not _loopback(host):
        raise InvalidInputError(
            f"--listen {listen} is not a loopback address, and no --tokens file was given: "
            "anyone could read and write every namespace; pass --tokens FILE"
        )
    if (tls_cert is None) != (tls_key is None):
        raise InvalidInputError("pass both --tls-cert and --tls-key, or neither")
    for name, value in (("max_open", max_open), ("workers", workers), ("batch_max", batch_max)):
        if value < 1:
            raise InvalidInputError(f"{name} must be at least 1, got {value}")
    credentials = None
    if tls_cert is not None and tls_key is not None:
        try:
            credentials = grpc.ssl_server_credentials(
                [
                    (
                        Path(tls_key).expanduser().read_bytes(),
                        Path(tls_cert).expanduser().read_bytes(),
                    )
                ]
            )
        except OSError as exc:
            raise InvalidInputError(f"cannot read the TLS files: {exc}") from None

    root = root.expanduser().absolute()
    root.mkdir(parents=True, exist_ok=True)
    metrics = Metrics()
    batcher = (
        None
        if embedder is None
        else BatchingEmbedder(
            embedder,
            max_batch=batch_max,
            max_wait=batch_wait_ms / 1000,
            on_batch=metrics.batch.observe,
        )
    )
    interceptors: list[Any] = [_Observe(metrics)]
    if tracer_provider is not None:
        from opentelemetry.instrumentation.grpc import server_interceptor

        from magray.ops import tracing

        interceptors.append(server_interceptor(tracer_provider=tracer_provider))  # type: ignore[no-untyped-call]
        tracing.enable(tracer_provider)
    limit = max_message_mb << 20
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="magray-rpc"),
        interceptors=interceptors,
        maximum_concurrent_rpcs=max_concurrent,
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = (
            server.add_secure_port(address, credentials)
            if credentials
            else server.add_insecure_port(address)
        )
    except RuntimeError as exc:
        raise InvalidInputError(f"cannot listen on {listen}: {exc}") from None
    scheme = "grpcs" if credentials else "grpc"
    url = f"{scheme}://{host if ':' not in host else f'[{host}]'}:{bound}"
    tenants = Tenants(
        root,
        lambda path: open_store(path, batcher),
        max_open=max_open,
        serving={"url": url},
        on_change=metrics.namespaces.set,
    )
    metrics.watch_cache_tier(tenants)
    service = MemoryService(tenants, tokens, root)
    memory_pb2_grpc.add_MemoryServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        memory_pb2.DESCRIPTOR.services_by_name["Memory"].full_name,
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    if metrics_listen:
        metrics.serve_http(metrics_listen)
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    done = stop or threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        _LOG.info("signal %d: draining", signum)
        done.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    if ready is not None:
        ready(url)
    try:
        # A signal may be delivered to any thread (gRPC's, tantivy's); Python runs its
        # handler only when the main thread next runs bytecode, so never block for good.
        while not done.wait(0.25):
            pass
    finally:
        health_servicer.enter_graceful_shutdown()
        server.stop(grace=30).wait()  # in-flight calls finish, new ones are refused
        tenants.close_all()
        if batcher is not None:
            batcher.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if tracer_provider is not None:
            from magray.ops import tracing

            tracing.disable()
            tracer_provider.force_flush()
    return 0


def otlp_provider(endpoint: str) -> Any:
    """A TracerProvider exporting spans over OTLP/HTTP to endpoint (service.name magray).
    InvalidInputError if OpenTelemetry is not installed."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise InvalidInputError("--otlp needs OpenTelemetry: pip install 'magray[otel]'") from None
    provider = TracerProvider(resource=Resource.create({"service.name": "magray"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider
