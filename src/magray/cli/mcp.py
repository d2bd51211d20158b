"""``magray mcp``: the store as an MCP memory server (stdio, or streamable HTTP)."""

from __future__ import annotations

import click

from magray.cli.common import Ctx


@click.command()
@click.option(
    "--http",
    "http_listen",
    metavar="HOST:PORT",
    help="Serve streamable HTTP on HOST:PORT (path /mcp) instead of stdio.",
)
@click.pass_obj
def mcp(ctx: Ctx, http_listen: str | None) -> None:
    """Serve this store (or --server's namespace) to MCP clients.

    \b
    Tools: remember, recall, forget, list_recent, memory_stats; resource magray://stats.
    Over stdio by default, as MCP clients launch it; see the README for a client block.
    """
    try:
        from magray.integrations.mcp import build_server
    except ImportError as exc:  # the mcp SDK is missing
        raise click.ClickException(
            f"magray mcp needs the mcp package ({exc.name}); pip install 'magray[mcp]'"
        ) from None
    mem = ctx.app().memory()
    server = build_server(mem)
    try:
        if http_listen is None:
            server.run("stdio")
        else:
            host, _, port = http_listen.rpartition(":")
            if not host or not port.isdigit():
                raise click.BadParameter(f"{http_listen!r} is not HOST:PORT", param_hint="--http")
            server.run("streamable-http", host=host, port=int(port))
    finally:
        mem.close()
