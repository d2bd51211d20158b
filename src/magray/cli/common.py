"""Shared CLI plumbing: the context object, output (JSON or rich), errors."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import click


def fail_line(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then exit with code."""
    line = " ".join(message.split())
    sys.stderr.write(f"magray: {line}\n")
    sys.stderr.flush()
    sys.exit(code)


@dataclass
class Ctx:
    """What the global options decided; the application is built on first use."""

    flags: dict[str, Any]
    config_file: str | None
    token: str | None = None
    _settings: Any = None
    _app: Any = None

    @property
    def settings(self) -> Any:
        if self._settings is None:
            from magray.config import load_settings

            self._settings = load_settings(self.config_file, flags=self.flags)
        return self._settings

    def app(self) -> Any:
        """The wired application (container) for this invocation."""
        if self._app is None:
            from magray.app import App

            self._app = App(self.settings, token=self.token)
            click.get_current_context().call_on_close(self._app.close)
        return self._app


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    color = stream.isatty() and "NO_COLOR" not in os.environ
    return Console(
        file=stream,
        no_color=not color,
        highlight=False,
        soft_wrap=not stream.isatty(),
        force_terminal=False if not stream.isatty() else None,
    )


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=_jsonable) + "\n")


def index_line(index: dict[str, Any]) -> str:
    """One line for the vector index of stats(): state, size, deleted rows in the graph."""
    line = f"{index['state']}, {index['records']} records (all layers)"
    if index.get("deleted_in_graph"):
        line += f", {index['deleted_in_graph']} deleted still in the graph"
    return line


def emit_fields(data: dict[str, Any], as_json: bool, width: int = 16) -> None:
    """A mapping as JSON, or as one "key  value" line per field: None and empty text
    show as "-", a list as its items joined by commas, and a mapping as a line with its
    size followed by one indented line per entry (a mapping entry as "k=v" pairs)."""
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        if isinstance(value, dict):
            click.echo(f"{key:{width}} {len(value)}")
            inner = max((len(str(k)) for k in value), default=0)
            for k, v in value.items():
                click.echo(f"  {str(k):{inner}}  {_field_text(v)}")
        else:
            click.echo(f"{key:{width}} {_field_text(value)}")


def _field_text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={_field_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_field_text(v) for v in value) or "-"
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        import base64

        return {"$bytes": base64.b64encode(value).decode()}
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "value"):
        return value.value
    return str(value)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON only.")


class UserPath(click.Path):
    """A path argument with a leading ``~`` expanded, as the shell does for a bare word:
    a quoted ``"~/x"`` or ``--opt=~/x`` reaches us unexpanded, and taken literally it
    would make a directory named ``~`` in the working directory."""

    def __init__(self, **kwargs: Any) -> None:
        from pathlib import Path

        super().__init__(path_type=Path, **kwargs)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            value = os.path.expanduser(value)
        return super().convert(value, param, ctx)
