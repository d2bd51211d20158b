"""``magray serve``: share the namespaces under one root over gRPC."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from magray.cli.common import Ctx, UserPath


def default_root() -> Path:
    """MAGRAY_SERVER_ROOT, or ``namespaces`` in the user data directory."""
    env = os.environ.get("MAGRAY_SERVER_ROOT")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("magray", appauthor=False)) / "namespaces"


def _check_cache_tier(url: str) -> None:
    """One line on stderr at start-up when the Redis tier cannot be used; the server
    starts either way (it runs without the tier and retries it)."""
    from magray.embed.redis_tier import describe, probe

    reason = probe(url)
    if reason is not None:
        click.echo(
            f"magray: cache tier {describe(url)} unavailable ({reason}); serving without "
            "it until it answers",
            err=True,
        )


@click.command()
@click.option(
    "--listen", default="127.0.0.1:7077", show_default=True, help="HOST:PORT (port 0: any free)."
)
@click.option(
    "--root",
    type=UserPath(),
    help="Directory with one store per namespace (default: MAGRAY_SERVER_ROOT or "
    "<user data dir>/namespaces).",
)
@click.option("--tokens", "tokens_file", type=UserPath(), help="Bearer tokens file (TOML).")
@click.option("--tls-cert", type=UserPath(), help="PEM certificate chain (with --tls-key).")
@click.option("--tls-key", type=UserPath(), help="PEM private key.")
@click.option("--metrics", "metrics_listen", metavar="HOST:PORT", help="Prometheus endpoint.")
@click.option(
    "--cache-redis-url",
    metavar="URL",
    help="Shared embedding cache (L3): redis://, rediss:// or redis+cluster:// "
    "(default: the cache_redis_url setting).",
)
@click.option("--max-open", default=16, show_default=True, help="Namespaces open at once.")
@click.option("--workers", default=16, show_default=True, help="RPC handler threads.")
@click.option("--max-concurrent", default=256, show_default=True, help="RPCs admitted at once.")
@click.option("--max-message-mb", default=64, show_default=True, help="Largest message (MiB).")
@click.option(
    "--batch-wait-ms", default=2.0, show_default=True, help="Embedding batch fill wait (ms)."
)
@click.option(
    "--batch-max", default=64, show_default=True, help="Most texts per model call (1: none)."
)
@click.option(
    "--otlp",
    metavar="URL",
    help="Export traces over OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/traces (magray[otel]).",
)
@click.pass_obj
def serve(
    ctx: Ctx,
    listen: str,
    root: Path | None,
    tokens_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    metrics_listen: str | None,
    cache_redis_url: str | None,
    max_open: int,
    workers: int,
    max_concurrent: int,
    max_message_mb: int,
    batch_wait_ms: float,
    batch_max: int,
    otlp: str | None,
) -> None:
    """Serve memory over gRPC: one store per namespace under --root.

    \b
    Clients: magray.connect("grpc://HOST:PORT", namespace="team-a", token=...),
    or magray --server grpc://HOST:PORT memory ... . SIGTERM drains and exits 0.
    """
    import magray
    from magray.server.main import otlp_provider
    from magray.server.main import serve as run

    provider = otlp_provider(otlp) if otlp else None
    app = ctx.app()
    embedder = app.embedder()

    config = app.settings.memory_config()
    if cache_redis_url is not None:
        config = config.replace(cache_redis_url=cache_redis_url)
    if config.cache_redis_url:
        _check_cache_tier(config.cache_redis_url)

    def open_store(path: Path, shared: Any) -> Any:
        return magray.open(path, embedder=shared, config=config)

    def ready(url: str) -> None:
        sys.stdout.write(f"magray: serving {root_dir} on {url}\n")
        sys.stdout.flush()

    root_dir = (root or default_root()).absolute()
    run(
        root=root_dir,
        listen=listen,
        open_store=open_store,
        embedder=embedder,
        tokens_file=None if tokens_file is None else str(tokens_file),
        tls_cert=None if tls_cert is None else str(tls_cert),
        tls_key=None if tls_key is None else str(tls_key),
        metrics_listen=metrics_listen,
        max_open=max_open,
        workers=workers,
        max_concurrent=max_concurrent,
        max_message_mb=max_message_mb,
        batch_wait_ms=batch_wait_ms,
        batch_max=batch_max,
        tracer_provider=provider,
        ready=ready,
    )
    if provider is not None:
        provider.shutdown()
