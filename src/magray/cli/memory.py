"""``magray memory ...``: add, search, get, list, delete, lifecycle, backups, export."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from magray.cli.common import (
    Ctx,
    UserPath,
    console,
    emit_fields,
    emit_json,
    index_line,
    json_option,
)

LAYERS = ["interact", "insights", "assets"]


def _split_tags(tags: str | None) -> list[str]:
    return [t.strip() for t in (tags or "").split(",") if t.strip()]


def _meta(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        key, value = pair.split("=", 1)
        if not key:
            raise click.BadParameter(f"{pair!r} has an empty key", param_hint="--meta")
        out[key] = value
    return out


def _when(value: str | None, name: str) -> float | None:
    """Unix seconds, an ISO date/time, or a relative age like 2h, 3d, 30m."""
    if value is None:
        return None
    v = value.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if v and v[-1] in units and v[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(v[:-1]) * units[v[-1]]
    try:
        return float(v)
    except ValueError:
        pass
    from datetime import datetime, timezone

    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not Unix seconds, an ISO date (2026-01-31) or an age (2h, 3d)",
            param_hint=name,
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _age(seconds: float) -> str:
    s = max(0.0, time.time() - seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.0f}{unit}"
    return f"{s:.0f}s"


def _record_json(rec: Any) -> dict[str, Any]:
    d: dict[str, Any] = rec.to_dict()
    return d


@click.group()
def memory() -> None:
    """Add, search and manage memories."""


# -- add ----------------------------------------------------------------------------------


@memory.command()
@click.argument("text", required=False)
@click.option("--file", "file", type=UserPath(), help="Bulk add from .jsonl or .txt.")
@click.option(
    "--split",
    type=click.Choice(["line", "paragraph"]),
    default="line",
    show_default=True,
    help=".txt files: one record per non-empty line, or per paragraph.",
)
@click.option("--strict", is_flag=True, help="Abort on the first bad line instead of skipping it.")
@click.option("--layer", type=click.Choice(LAYERS), default="interact", show_default=True)
@click.option("--tags", help="Comma-separated tags.")
@click.option("--kind", default="note", show_default=True)
@click.option("--project")
@click.option("--session")
@click.option("--importance", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True)
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata (repeatable).")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=256, show_default=True)
@json_option
@click.pass_obj
def add(
    ctx: Ctx,
    text: str | None,
    file: Path | None,
    split: str,
    strict: bool,
    layer: str,
    tags: str | None,
    kind: str,
    project: str | None,
    session: str | None,
    importance: float,
    meta: tuple[str, ...],
    batch_size: int,
    as_json: bool,
) -> None:
    """Add TEXT, or every record of --file."""
    fields = {
        "layer": layer,
        "kind": kind,
        "tags": _split_tags(tags),
        "project": project,
        "session": session,
        "importance": importance,
        "metadata": _meta(meta),
    }
    if (text is None) == (file is None):
        raise click.UsageError("pass either TEXT or --file FILE")
    if file is not None:
        _add_file(ctx, file, split, strict, fields, batch_size, as_json)
        return
    assert text is not None
    mem = ctx.app().memory()
    rid = mem.add(text, **fields)
    if as_json:
        emit_json({"id": rid})
    else:
        click.echo(rid)


def _read_records(
    file: Path, split: str, fields: dict[str, Any], strict: bool, errors: list[tuple[int, str]]
) -> list[tuple[int, dict[str, Any]]]:
    if not file.exists():
        raise click.BadParameter(f"{file} does not exist", param_hint="--file")
    if file.is_dir():
        raise click.BadParameter(
            f"{file} is a directory; pass a .jsonl or .txt file", param_hint="--file"
        )
    raw = file.read_bytes()
    if b"\x00" in raw[:8192]:
        raise click.BadParameter(
            f"{file} looks binary; pass a UTF-8 .jsonl or .txt file", param_hint="--file"
        )
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.BadParameter(
            f"{file} is not UTF-8 (byte {exc.start})", param_hint="--file"
        ) from None
    out: list[tuple[int, dict[str, Any]]] = []
    if file.suffix.lower() in (".jsonl", ".ndjson"):
        allowed = {"text", "layer", "kind", "tags", "project", "session", "importance", "metadata"}
        for lineno, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    raise ValueError('each line must be an object with a "text" string')
                unknown = set(obj) - allowed
                if unknown:
                    raise ValueError(f"unknown field(s) {sorted(unknown)}")
                rec = dict(fields)
                rec.update(obj)
                if isinstance(rec.get("tags"), str):
                    rec["tags"] = _split_tags(rec["tags"])
                out.append((lineno, rec))
            except ValueError as exc:
                msg = (
                    f"not valid JSON ({exc.msg} at column {exc.colno})"
                    if isinstance(exc, json.JSONDecodeError)
                    else str(exc)
                )
                if strict:
                    raise click.ClickException(f"{file}:{lineno}: {msg}") from None
                errors.append((lineno, msg))
    else:
        if split == "paragraph":
            chunks, lineno, start = [], 0, 1
            buf: list[str] = []
            for lineno, line in enumerate(content.splitlines(), 1):
                if line.strip():
                    if not buf:
                        start = lineno
                    buf.append(line)
                elif buf:
                    chunks.append((start, "\n".join(buf)))
                    buf = []
            if buf:
                chunks.append((start, "\n".join(buf)))
        else:
            chunks = [(i, line) for i, line in enumerate(content.splitlines(), 1) if line.strip()]
        out = [(lineno, dict(fields, text=text)) for lineno, text in chunks]
    return out


def _add_file(
    ctx: Ctx,
    file: Path,
    split: str,
    strict: bool,
    fields: dict[str, Any],
    batch_size: int,
    as_json: bool,
) -> None:
    from magray.errors import InvalidInputError

    errors: list[tuple[int, str]] = []
    records = _read_records(file, split, fields, strict, errors)
    mem = ctx.app().memory()
    from magray.ops.resources import ResourceManager

    ctx.app().container().resolve(ResourceManager).start()  # shrink caches under pressure
    # SIGINT/SIGTERM: finish the current batch, flush, close cleanly, report.
    stop = {"now": False}

    def request_stop(signum: int, frame: Any) -> None:
        stop["now"] = True

    old = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    stored = skipped = 0
    show = not as_json and sys.stderr.isatty()
    progress: Any = None
    task: Any = None
    if show:
        from rich.progress import Progress

        progress = Progress(console=console(stderr=True), transient=True)
        progress.start()
        task = progress.add_task(f"adding {file.name}", total=len(records))
    try:
        # Lines with the same fields go to the engine in one batch. The key is the fields'
        # JSON, so any value a line holds can be grouped; the engine judges the values.
        groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for lineno, rec in records:
            fields_only = {k: v for k, v in rec.items() if k != "text"}
            key = json.dumps(fields_only, sort_keys=True, default=repr)
            groups.setdefault(key, []).append((lineno, rec))
        for items in groups.values():
            for i in range(0, len(items), batch_size):
                if stop["now"]:
                    break
                chunk = items[i : i + batch_size]
                f = dict(chunk[0][1])
                f.pop("text")
                texts = [rec["text"] for _, rec in chunk]
                try:
                    result = mem.add_many(texts, on_duplicate="skip", **f)
                except InvalidInputError:
                    # Find the bad line(s) one by one; keep the good ones.
                    result = []
                    for lineno, rec in chunk:
                        try:
                            result += mem.add_many([rec["text"]], on_duplicate="skip", **f)
                        except InvalidInputError as one:
                            if strict:
                                raise click.ClickException(f"{file}:{lineno}: {one}") from None
                            errors.append((lineno, str(one)))
                new = sum(1 for r in result if r is not None)
                stored += new
                skipped += len(result) - new
                if progress is not None:
                    progress.advance(task, len(chunk))
            if stop["now"]:
                break
    finally:
        if progress is not None:
            progress.stop()
        for s, handler in old.items():
            signal.signal(s, handler)
    mem.flush()
    errors.sort()
    for lineno, msg in errors:
        sys.stderr.write(f"magray: {file}:{lineno}: skipped: {msg}\n")
    summary = {
        "stored": stored,
        "already_present": skipped,
        "bad_lines": len(errors),
        "interrupted": stop["now"],
    }
    if as_json:
        emit_json(summary)
    else:
        tail = " (interrupted: stopped after the current batch)" if stop["now"] else ""
        click.echo(
            f"stored {stored} records, {skipped} already present, {len(errors)} bad lines{tail}"
        )
    if stop["now"]:
        sys.exit(130)
    if errors:
        sys.exit(1)  # partly done: the bad lines are reported above


# -- search and reading ---------------------------------------------------------------------


@memory.command()
@click.argument("query")
@click.option(
    "--layer", "layers", type=click.Choice(LAYERS), multiple=True, help="Repeatable; default all."
)
@click.option(
    "-k",
    "--k",
    "k",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="How many results.",
)
@click.option(
    "--mode",
    type=click.Choice(["hybrid", "vector", "text"]),
    help="hybrid: meaning and words fused (default with full text); vector: meaning; "
    "text: words (BM25).",
)
@click.option("--contains", help="Only records whose text holds this (ignoring case).")
@click.option("--min-score", type=float)
@click.option("--tag", "tags", multiple=True, help="Any of these tags (repeatable).")
@click.option("--project")
@click.option("--session")
@click.option("--kind")
@click.option("--since", help="Created at or after: Unix seconds, ISO date, or an age like 3d.")
@click.option("--until", help="Created at or before (same forms).")
@json_option
@click.pass_obj
def search(
    ctx: Ctx,
    query: str,
    layers: tuple[str, ...],
    k: int,
    mode: str | None,
    contains: str | None,
    min_score: float | None,
    tags: tuple[str, ...],
    project: str | None,
    session: str | None,
    kind: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Search all layers (or --layer ones) for QUERY."""
    if not query.strip():
        raise click.BadParameter("the query is empty; pass some words", param_hint="QUERY")
    mem = ctx.app().searcher()
    hits = mem.search(
        query,
        k=k,
        mode=mode,
        contains=contains,
        layers=list(layers) or None,
        tags=list(tags) or None,
        project=project,
        session=session,
        kind=kind,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        min_score=min_score,
    )
    if as_json:
        emit_json(
            [
                {
                    "rank": i + 1,
                    "id": h.id,
                    "score": h.score,
                    "scores": h.scores,
                    "layer": h.layer.value,
                    "record": _record_json(h.record),
                }
                for i, h in enumerate(hits)
            ]
        )
        return
    if not hits:
        click.echo("no matches")
        return
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for col in ("#", "score", "layer", "age", "tags", "text"):
        table.add_column(
            col, overflow="fold" if col == "text" else "ellipsis", no_wrap=col != "text"
        )
    for i, h in enumerate(hits, 1):
        text = " ".join(h.record.text.split())
        table.add_row(
            str(i),
            f"{h.score:.3f}",
            h.layer.value,
            _age(h.record.created_at),
            ",".join(h.record.tags),
            text[:160] + ("…" if len(text) > 160 else ""),
        )
    console().print(table)


@memory.command()
@click.argument("id")
@json_option
@click.pass_obj
def get(ctx: Ctx, id: str, as_json: bool) -> None:
    """Show the record with ID."""
    from magray.errors import NotFoundError

    rec = ctx.app().memory(read_only=True, embed=False).get(id)
    if rec is None:
        raise NotFoundError(f"no record with id {id}")
    emit_fields(_record_json(rec), as_json, width=13)


@memory.command(name="list")
@click.option("--layer", type=click.Choice(LAYERS))
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@json_option
@click.pass_obj
def list_(ctx: Ctx, layer: str | None, limit: int, as_json: bool) -> None:
    """The newest records (of a layer)."""
    mem = ctx.app().memory(read_only=True, embed=False)
    recs = mem.recent(layer=layer, limit=limit)
    if as_json:
        emit_json([_record_json(r) for r in recs])
        return
    for r in recs:
        text = " ".join(r.text.split())
        click.echo(f"{r.id}  {r.layer.value:8}  {_age(r.created_at):>4}  {text[:100]}")


@memory.command()
@click.argument("ids", nargs=-1, required=True)
@json_option
@click.pass_obj
def delete(ctx: Ctx, ids: tuple[str, ...], as_json: bool) -> None:
    """Delete records by id (all or nothing)."""
    n = ctx.app().memory().delete(list(ids))
    emit_json({"deleted": n}) if as_json else click.echo(f"deleted {n}")


@memory.command()
@json_option
@click.pass_obj
def stats(ctx: Ctx, as_json: bool) -> None:
    """Counts per layer, index states, cache and model."""
    st = ctx.app().memory(read_only=True).stats()
    if as_json:
        emit_json(st)
        return
    for layer, info in st["layers"].items():
        click.echo(f"{layer:9} {info.get('records', 0):>9} records")
    click.echo(f"total     {st['records']:>9}   dim {st['dim']}  fingerprint {st['fingerprint']}")
    click.echo(f"index     {index_line(st['index'])}")


def _report(report: Any, as_json: bool) -> None:
    moves = [
        {
            "id": m.id,
            "from": m.from_layer.value,
            "to": m.to_layer.value if m.to_layer else None,
            "reason": m.reason,
        }
        for m in report.moved + report.expired
    ]
    if as_json:
        emit_json({"dry_run": report.dry_run, "summary": report.summary(), "moves": moves})
        return
    verb = "would move" if report.dry_run else "moved"
    summary = report.summary()
    click.echo(f"{verb}: " + (", ".join(f"{k} {v}" for k, v in summary.items()) or "nothing"))
    for m in moves[:50]:
        click.echo(f"  {m['id']}  {m['from']} -> {m['to'] or 'expired'}  ({m['reason']})")
    if len(moves) > 50:
        click.echo(f"  ... and {len(moves) - 50} more")


@memory.command()
@click.option("--dry-run", is_flag=True, help="Show what would move; change nothing.")
@json_option
@click.pass_obj
def promote(ctx: Ctx, dry_run: bool, as_json: bool) -> None:
    """Move records that keep being used to a more lasting layer."""
    _report(ctx.app().memory().promote(dry_run=dry_run), as_json)


@memory.command()
@click.option("--dry-run", is_flag=True, help="Show what would expire; change nothing.")
@json_option
@click.pass_obj
def expire(ctx: Ctx, dry_run: bool, as_json: bool) -> None:
    """Promote what qualifies, then drop records whose time ran out."""
    _report(ctx.app().memory().expire(dry_run=dry_run), as_json)


@memory.command()
@json_option
@click.pass_obj
def compact(ctx: Ctx, as_json: bool) -> None:
    """Compact the store and rebuild indexes with deleted entries."""
    mem = ctx.app().memory()
    before = mem.stats()["store_bytes"]
    mem.compact()
    after = mem.stats()["store_bytes"]
    emit_json({"bytes_before": before, "bytes_after": after}) if as_json else click.echo(
        f"compacted: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB"
    )


@memory.command()
@json_option
@click.pass_obj
def reembed(ctx: Ctx, as_json: bool) -> None:
    """Re-embed every record with the configured embedder (resumable)."""
    mem = ctx.app().memory(reembed=True)
    n = mem.reembed()
    emit_json({"reembedded": n}) if as_json else click.echo(f"re-embedded {n} records")


# -- backups and exports ----------------------------------------------------------------


def _backups_dir(ctx: Ctx) -> Path:
    return Path(ctx.app().store_path()).parent / (Path(ctx.app().store_path()).name + "-backups")


@memory.command()
@click.argument("dest", required=False, type=UserPath())
@json_option
@click.pass_obj
def backup(ctx: Ctx, dest: Path | None, as_json: bool) -> None:
    """A consistent online backup (default: beside the store, timestamped)."""
    if dest is None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest = _backups_dir(ctx) / stamp
        dest.parent.mkdir(parents=True, exist_ok=True)
    path = ctx.app().memory().backup(dest)
    emit_json({"backup": str(path)}) if as_json else click.echo(str(path))


@memory.command()
@click.argument("src", type=UserPath())
@json_option
@click.pass_obj
def restore(ctx: Ctx, src: Path, as_json: bool) -> None:
    """Restore a backup into the store (verified first; the store must not be open)."""
    import magray

    path = magray.restore(src, ctx.app().store_path())
    emit_json({"restored": str(path)}) if as_json else click.echo(f"restored into {path}")


@memory.command(name="list-backups")
@json_option
@click.pass_obj
def list_backups(ctx: Ctx, as_json: bool) -> None:
    """Backups in the default backup folder."""
    from magray.memory.backup import MANIFEST

    root = _backups_dir(ctx)
    rows: list[dict[str, Any]] = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            manifest = d / MANIFEST
            if manifest.is_file():
                try:
                    m = json.loads(manifest.read_text())
                    if not isinstance(m, dict):
                        raise ValueError("not a JSON object")
                except (OSError, ValueError) as exc:
                    # An interrupted backup: list it as damaged rather than fail the listing.
                    rows.append({"path": str(d), "damaged": str(exc)})
                    continue
                rows.append(
                    {"path": str(d), "created_at": m.get("created_at"), "records": m.get("records")}
                )
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(f"no backups in {root}")
    for r in rows:
        if "damaged" in r:
            click.echo(f"{r['path']}  damaged manifest ({r['damaged']}); not restorable")
        else:
            click.echo(f"{r['path']}  {r['records']} records")


@memory.command()
@click.argument("file", type=UserPath())
@click.option("--vectors", is_flag=True, help="Include vectors.")
@json_option
@click.pass_obj
def export(ctx: Ctx, file: Path, vectors: bool, as_json: bool) -> None:
    """Write every record to FILE as JSON lines."""
    n = ctx.app().memory(read_only=True, embed=False).export_jsonl(file, vectors=vectors)
    emit_json({"exported": n, "file": str(file)}) if as_json else click.echo(
        f"exported {n} records to {file}"
    )


@memory.command(name="import")
@click.argument("file", type=UserPath())
@json_option
@click.pass_obj
def import_(ctx: Ctx, file: Path, as_json: bool) -> None:
    """Add the records of a JSONL export (ids kept; existing ones skipped)."""
    if file.is_dir():
        raise click.BadParameter(f"{file} is a directory; pass a .jsonl file", param_hint="FILE")
    report = ctx.app().memory().import_jsonl(file)
    for lineno, msg in report.errors:
        sys.stderr.write(f"magray: {file}:{lineno}: skipped: {msg}\n")
    data = {"added": report.added, "skipped": report.skipped, "bad_lines": len(report.errors)}
    emit_json(data) if as_json else click.echo(
        f"added {report.added}, skipped {report.skipped} already present, "
        f"{len(report.errors)} bad lines"
    )
