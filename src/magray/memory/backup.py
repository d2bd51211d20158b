"""Backups (RocksDB checkpoint + index snapshots + checksummed manifest), restore, and
JSONL export/import.

A backup directory holds ``db/`` (a RocksDB checkpoint), ``index/`` (the layer snapshots
at the same sequence) and ``manifest.json`` listing every file with its size and XXH3-128.
``restore`` verifies every file, copies the backup beside the target, verifies the copy,
and only then swaps it in: a damaged backup never touches the target store.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from magray.errors import BackupError, InvalidInputError, ReadOnlyError, StoreLockedError
from magray.memory import ids as idcodec
from magray.memory import validate
from magray.memory.codec import StoredRecord
from magray.memory.index import SNAPSHOT_DIR, file_digest
from magray.memory.record import ImportReport, Layer

if TYPE_CHECKING:
    from magray.memory.ports import Engine

MANIFEST = "manifest.json"
MAX_TIME = 2.0**64 / 1000 / 1024  # keys hold milliseconds in 64 bits: far beyond any real time
BACKUP_FORMAT = 1


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def create_backup(mem: Engine, dest: Path) -> Path:
    if mem.read_only:
        raise ReadOnlyError("back up from the writable store (a read-only view cannot checkpoint)")
    dest = dest.expanduser().absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInputError(
            f"backup destination {dest} exists and is not an empty directory; pick a new path"
        )
    partial = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with mem._wlock:
            # One consistent point: access stats and index snapshots at the current
            # sequence, and a checkpoint taken while no write can slip in between.
            mem._wait_builds()
            mem._flush_access()
            mem._save_indexes(force=True)
            mem.store.checkpoint(partial / "db")
            index_dir = mem.path / "index" / SNAPSHOT_DIR
            pointer = index_dir / "current"
            if pointer.exists():
                snap = pointer.read_text().strip()
                target = partial / "index" / SNAPSHOT_DIR
                target.mkdir(parents=True)
                shutil.copytree(index_dir / snap, target / snap)
                shutil.copy2(pointer, target / "current")
            info = {
                "dim": mem.dim,
                "fingerprint": mem.fingerprint,
                "seq": mem._seq,
                "records": mem.stats()["records"],
            }
        from magray import __version__

        manifest = {
            "format": BACKUP_FORMAT,
            "magray": __version__,
            "created_at": time.time(),
            **info,
            "files": {
                str(p.relative_to(partial)): {"size": p.stat().st_size, "xxh3_128": file_digest(p)}
                for p in _files(partial)
            },
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if dest.exists():
            dest.rmdir()
        os.rename(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return dest


def _fsync_tree(root: Path) -> None:
    """Make a copied tree durable before it replaces anything."""
    for p in [root, *root.rglob("*")]:
        fd = os.open(p, os.O_RDONLY | (os.O_DIRECTORY if p.is_dir() else 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def verify_backup(root: Path) -> dict[str, Any]:
    """The manifest of a backup whose every file is present and intact; BackupError otherwise."""
    manifest_path = root / MANIFEST
    if not root.is_dir() or not manifest_path.is_file():
        raise BackupError(
            f"{root} is not a magray backup (no {MANIFEST}); pass a directory made by backup()"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{manifest_path} is damaged ({exc}); use another backup") from None
    if manifest.get("format") != BACKUP_FORMAT:
        raise BackupError(
            f"backup format {manifest.get('format')!r} is not supported by this magray"
        )
    for rel, entry in files.items():
        p = root / rel
        if not p.is_file():
            raise BackupError(f"backup is incomplete: {rel} is missing; use another backup")
        if p.stat().st_size != entry["size"]:
            raise BackupError(
                f"backup is damaged: {rel} has {p.stat().st_size} bytes, expected {entry['size']}"
            )
        if file_digest(p) != entry["xxh3_128"]:
            raise BackupError(f"backup is damaged: {rel} fails its checksum; use another backup")
    extra = {str(p.relative_to(root)) for p in _files(root)} - set(files)
    if any(x.startswith("db/") for x in extra):
        raise BackupError(
            f"backup holds files its manifest does not list ({sorted(extra)[:3]}); "
            "use another backup"
        )
    checked: dict[str, Any] = manifest
    return checked


def restore(backup: str | os.PathLike[str], path: str | os.PathLike[str] | None = None) -> Path:
    """Restore a backup into path (default: the default store path); returns the path."""
    from magray.memory.lock import WriterLock
    from magray.memory.store import default_path

    src = Path(backup).expanduser().absolute()
    target = (Path(path) if path is not None else default_path()).expanduser().absolute()
    verify_backup(src)
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"restore target {target} is a file; pass a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / "db").is_dir():
        raise InvalidInputError(
            f"restore target {target} is a non-empty directory that is not a magray store; "
            "pass a new path or an existing store"
        )
    lock = None
    if target.is_dir():
        lock = WriterLock(target)
        lock.acquire()  # StoreLockedError if the store is open for writing elsewhere
    try:
        staging = target.parent / f".{target.name}.restoring-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            shutil.copytree(src, staging)
            verify_backup(staging)
            (staging / MANIFEST).unlink()
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_tree(staging)
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        if target.exists():
            os.rename(target, old)
        try:
            os.rename(staging, target)
        except BaseException:
            if old.exists() and not target.exists():
                os.rename(old, target)  # put the old store back
            raise
        shutil.rmtree(old, ignore_errors=True)
    except StoreLockedError:
        raise
    finally:
        if lock is not None:
            lock.release()
    return target


# -- JSONL ----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Metadata as JSON: bytes become ``{"$bytes": base64}``; a dict that could be read
    as such a wrapper (its only key is ``$bytes`` or ``$dict``) is wrapped itself as
    ``{"$dict": {...}}``, so every value reads back as it was written."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        inner = {k: _jsonable(v) for k, v in value.items()}
        return {"$dict": inner} if set(value) in _WRAPPERS else inner
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


_WRAPPERS = ({"$bytes"}, {"$dict"})


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        if set(value) == {"$dict"} and isinstance(value["$dict"], dict):
            return {k: _from_json(v) for k, v in value["$dict"].items()}
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def export_jsonl(mem: Engine, path: Path, *, vectors: bool) -> int:
    if not mem.read_only:
        mem._flush_access()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for layer in Layer:
                batch: list[StoredRecord] = []

                def write() -> None:
                    nonlocal n
                    vecs = (
                        mem.store.multi_get("vectors", [r.raw_id for r in batch]) if vectors else []
                    )
                    for i, rec in enumerate(batch):
                        d = rec.to_record().to_dict()
                        d["metadata"] = _jsonable(d["metadata"])
                        raw = vecs[i] if vectors else None
                        if raw is not None:
                            d["vector"] = np.frombuffer(raw, np.float32).tolist()
                        f.write(json.dumps(d, ensure_ascii=False) + "\n")
                        n += 1
                    batch.clear()

                for rec in mem._records_of(layer):
                    batch.append(rec)
                    if len(batch) >= 1000:
                        write()
                write()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


_FIELDS = {
    "id",
    "text",
    "layer",
    "kind",
    "tags",
    "project",
    "session",
    "metadata",
    "created_at",
    "updated_at",
    "last_access",
    "access_count",
    "importance",
    "fingerprint",
    "layer_since",
    "vector",
}


def _parse_line(mem: Engine, line: str, now: float) -> tuple[StoredRecord, Any]:
    try:
        d = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(d, dict):
        raise InvalidInputError("each line must be a JSON object")
    unknown = set(d) - _FIELDS
    if unknown:
        raise InvalidInputError(f"unknown field(s) {sorted(unknown)}")
    text = mem._text(d.get("text"))
    f = validate.fields(
        d.get("layer", "interact"),
        d.get("kind", "note"),
        d.get("tags"),
        d.get("project"),
        d.get("session"),
        _from_json(d.get("metadata")),
        d.get("importance", 0.0),
    )
    rid = validate.raw_id(d["id"]) if d.get("id") is not None else idcodec.new_id(int(now * 1000))

    def num(name: str, default: float) -> float:
        v = d.get(name, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InvalidInputError(f"{name} must be a finite number, got {v!r}")
        if not 0 <= v < MAX_TIME:
            raise InvalidInputError(
                f"{name} must be Unix seconds in [0, {MAX_TIME:.0f}), got {v!r}"
            )
        return float(v)

    created = num("created_at", now)
    access = d.get("access_count", 0)
    if isinstance(access, bool) or not isinstance(access, int) or not 0 <= access < 2**63:
        raise InvalidInputError(f"access_count must be an int in [0, 2**63), got {access!r}")
    rec = StoredRecord.create(
        rid,
        text,
        f,
        created=created,
        updated=num("updated_at", created),
        last_access=num("last_access", created),
        access_count=access,
        fingerprint=d.get("fingerprint") or "",
        layer_since=num("layer_since", created),
    )
    vector = d.get("vector")
    if vector is not None:
        if not isinstance(vector, list) or not vector:
            raise InvalidInputError("vector must be a non-empty list of numbers")
        try:
            arr = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError):
            raise InvalidInputError("vector must be a list of numbers") from None
        if arr.ndim != 1 or not np.isfinite(arr).all():
            raise InvalidInputError("vector must be a flat list of finite numbers")
        # An all-zero vector has no direction (older magray stored such vectors for
        # texts its model could not represent): the text is embedded again instead.
        vector = arr if arr.any() else None
    if vector is None and mem._embedder is None:
        raise InvalidInputError(
            "the line has no usable vector and this store has no embedder; export with "
            "vectors=True, or open the store with an embedder"
        )
    return rec, vector


def import_jsonl(mem: Engine, path: Path) -> ImportReport:
    if not path.is_file():
        raise InvalidInputError(f"{path} is not a file; pass a .jsonl file made by export_jsonl")
    report = ImportReport()
    now = mem._clock()
    pending: list[tuple[StoredRecord, Any]] = []
    seen: set[bytes] = set()  # ids of this import: a repeated id is skipped, not overwritten

    def flush() -> None:
        if not pending:
            return
        existing = mem.store.multi_get("records", [r.raw_id for r, _ in pending])
        todo = []
        for (r, v), e in zip(pending, existing):
            if e is None and r.raw_id not in seen:
                seen.add(r.raw_id)
                todo.append((r, v))
        report.skipped += len(pending) - len(todo)
        pending.clear()
        if not todo:
            return
        # Stored vectors are reused when they come from this store's model (or, for a new
        # vector-only store, when they agree in length); others are re-embedded.
        vector_only = mem._embedder is None
        dims = {len(v) for _, v in todo if v is not None}
        usable = [
            v is not None
            and (
                (r.fingerprint == mem.fingerprint and mem.dim and len(v) == mem.dim)
                or (vector_only and (len(v) == mem.dim or (not mem.dim and len(dims) == 1)))
            )
            for r, v in todo
        ]
        width = mem.dim or (dims.pop() if vector_only and len(dims) == 1 else 1)
        vecs = np.zeros((len(todo), width), np.float32)
        need = [i for i, ok in enumerate(usable) if not ok]
        if need:
            emb = mem._embed([todo[i][0].text for i in need])
            if vecs.shape[1] != emb.shape[1]:
                vecs = np.zeros((len(todo), emb.shape[1]), np.float32)
            vecs[need] = emb
        have = [i for i, ok in enumerate(usable) if ok]
        if have:  # checked per line already; one conversion for the batch
            vecs[have] = mem._vectors([todo[i][1] for i in have], len(have))
        recs = [r for r, _ in todo]
        fields = [{"layer": r.layer} for r in recs]
        ids = mem._insert([r.text for r in recs], vecs, fields, now, keep=list(recs), touch=False)
        added = sum(1 for r, i in zip(recs, ids) if i is not None and idcodec.encode(r.raw_id) == i)
        report.added += added
        report.skipped += len(recs) - added

    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    pending.append(_parse_line(mem, line, now))
                except (InvalidInputError, ValueError) as exc:
                    report.errors.append((lineno, str(exc)))
                    continue
                if len(pending) >= 1000:
                    flush()
        except UnicodeDecodeError as exc:
            raise InvalidInputError(
                f"{path} is not UTF-8 text (byte {exc.start}); pass a JSONL export"
            ) from None
    flush()
    return report
