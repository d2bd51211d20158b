"""The ``magray`` command: thin over the library API (parse, call, render).

Every data-returning command takes ``--json`` and then prints JSON and nothing else on
stdout. Exit codes: 0 success, 1 error, 2 usage error. An error is one line on stderr,
with no traceback unless ``--debug`` is given. Heavy modules (numpy, ONNX Runtime,
RocksDB) load inside the commands that need them, so ``magray --help`` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from magray.cli.common import Ctx, UserPath, fail_line
from magray.cli.mcp import mcp
from magray.cli.memory import memory
from magray.cli.models import models
from magray.cli.serve import serve
from magray.cli.system import config, gpu, health, metrics, performance, status, warmup

__all__ = ["cli", "main"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="magray", prog_name="magray")
@click.option(
    "--store",
    "store",
    type=UserPath(),
    metavar="PATH",
    help="Store directory (default: MAGRAY_HOME or the user data dir).",
)
@click.option(
    "--config",
    "config_file",
    type=UserPath(),
    metavar="FILE",
    help="Settings file (default: `magray config path`).",
)
@click.option(
    "--server",
    metavar="URL",
    help="Run memory commands on a magray server, grpc://HOST:PORT (or MAGRAY_SERVER).",
)
@click.option(
    "--namespace", metavar="NAME", help="The namespace on that server (default: default)."
)
@click.option(
    "--token",
    metavar="TOKEN",
    help="Bearer token for the server (prefer MAGRAY_TOKEN: a flag shows in `ps`).",
)
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log line format.")
@click.option("--log-file", type=UserPath(), metavar="FILE", help="Also write logs to FILE.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def cli(
    ctx: click.Context,
    store: Path | None,
    config_file: Path | None,
    server: str | None,
    namespace: str | None,
    token: str | None,
    log_format: str | None,
    log_file: Path | None,
    verbose: int,
    quiet: bool,
    debug: bool,
) -> None:
    """magray: a local memory engine for AI agents.

    Memories live in three layers (interact 24 h, insights 90 days, assets permanent),
    are embedded locally and searched across layers at once.

    \b
    Quick start:
      magray memory add "the deploy key lives in the vault" --tags ops
      magray memory search "where is the deploy key?"
      magray status
    """
    level = None
    if quiet:
        level = "error"
    elif verbose:
        level = "debug" if verbose > 1 else "info"
    ctx.obj = Ctx(
        flags={
            "store": None if store is None else str(store),
            "log_format": log_format,
            "log_file": None if log_file is None else str(log_file),
            "log_level": level,
            "server": server,
            "namespace": namespace,
        },
        config_file=None if config_file is None else str(config_file),
        token=token,
    )


for command in (
    memory,
    models,
    serve,
    mcp,
    gpu,
    status,
    health,
    performance,
    warmup,
    config,
    metrics,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command; map errors to one stderr line and an exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rv: Any = cli.main(args=argv, prog_name="magray", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        fail_line("aborted", code=1)
    except click.UsageError as exc:
        hint = ""
        if exc.ctx is not None:
            hint = f" (see `{exc.ctx.command_path} --help`)"
        fail_line(f"usage error: {exc.format_message()}{hint}", code=2)
    except click.ClickException as exc:
        fail_line(exc.format_message(), code=exc.exit_code or 1)
    except KeyboardInterrupt:
        fail_line("interrupted", code=130)
    except Exception as exc:  # one line, no traceback, unless --debug
        if debug:
            raise
        fail_line(_describe(exc), code=1)
    code = rv if isinstance(rv, int) else 0
    sys.exit(code)


def _describe(exc: BaseException) -> str:
    from magray.container import ContainerError
    from magray.errors import MagrayError

    # A part that failed to build: the user needs the part's own reason.
    while isinstance(exc, ContainerError) and exc.__cause__ is not None:
        exc = exc.__cause__

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, MagrayError):
        return text
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or text}: {exc.filename}"
    return f"{type(exc).__name__}: {text}"
