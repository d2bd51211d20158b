"""``magray models ...``: the embedding models on this machine."""

from __future__ import annotations

from pathlib import Path

import click

from magray.cli.common import UserPath, emit_fields, emit_json, json_option


@click.group()
def models() -> None:
    """List, download, import, verify and remove embedding models."""


@models.command(name="list")
@json_option
def list_(as_json: bool) -> None:
    """Known models and what is installed."""
    from magray.embed import models as m

    rows = m.list_models()
    if as_json:
        emit_json(rows)
        return
    click.echo(f"{'NAME':24} {'DIM':>5}  {'STATE':9}  DESCRIPTION")
    for r in rows:
        mark = "installed" if r.get("installed") else ("hf-cache" if r.get("in_hf_cache") else "-")
        click.echo(
            f"{r['name']:24} {str(r.get('dim') or ''):>5}  {mark:9}  {r.get('description') or ''}"
        )


@models.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Download again even if installed.")
@json_option
def pull(name: str, force: bool, as_json: bool) -> None:
    """Install NAME through the Hugging Face cache (checksum-verified, atomic).

    A copy that transformers, sentence-transformers or `hf download` already put in the
    cache is used without a download. HF_ENDPOINT picks a mirror, HF_TOKEN authenticates,
    HF_HUB_OFFLINE=1 forbids the network.
    """
    from magray.embed import models as m

    def manifest_stamp() -> tuple[int, int] | None:
        path = m.installed(name)
        if path is None:
            return None
        st = (path / m.MANIFEST).stat()
        return st.st_ino, st.st_mtime_ns

    before = manifest_stamp()
    path = m.pull(name, progress=not as_json, force=force)
    current = before is not None and manifest_stamp() == before  # nothing was installed
    if as_json:
        emit_json({"name": name, "path": str(path), "already_installed": current})
    elif current:
        click.echo(
            f"{name} is already installed in {path} (`magray models verify {name}` re-hashes"
            " its files; `--force` installs it again)"
        )
    else:
        click.echo(f"installed {name} in {path}")


@models.command(name="import")
@click.argument("directory", type=UserPath())
@click.option("--name", help="Install under this name (default: the directory's name).")
@json_option
def import_(directory: Path, name: str | None, as_json: bool) -> None:
    """Install a local model directory (Hugging Face layout)."""
    from magray.embed import models as m

    path = m.import_dir(directory, name)
    emit_json({"path": str(path)}) if as_json else click.echo(f"imported into {path}")


@models.command()
@click.argument("name")
@json_option
def info(name: str, as_json: bool) -> None:
    """Details of a model."""
    from magray.embed import models as m

    data = m.info(name)
    emit_fields(data, as_json)


@models.command()
@click.argument("name", required=False)
@json_option
def verify(name: str | None, as_json: bool) -> None:
    """Re-check installed files against their checksums (exit 1 if any fail)."""
    from magray.embed import models as m

    results = m.verify(name)
    bad = [r for r in results if not r[1]]
    if as_json:
        emit_json([{"name": n, "ok": ok, "problems": p} for n, ok, p in results])
    else:
        if not results:
            click.echo("no models installed")
        for n, ok, problems in results:
            click.echo(f"{n:24} {'ok' if ok else 'FAILED: ' + '; '.join(problems)}")
    if bad:
        raise SystemExit(1)


@models.command()
@click.argument("name")
@json_option
def remove(name: str, as_json: bool) -> None:
    """Uninstall a model."""
    from magray.embed import models as m

    m.remove(name)
    emit_json({"removed": name}) if as_json else click.echo(f"removed {name}")
