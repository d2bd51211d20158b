"""Re-embedding a store with another model: stage new vectors beside the old ones,
then switch in one marked batch, so that a crash anywhere leaves the store readable and
the work resumable."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING

from magray.memory.codec import StoredRecord, vector_bytes
from magray.memory.record import Layer

if TYPE_CHECKING:
    from magray.memory.ports import Engine


def reembed_all(mem: Engine, progress: Callable[[int, int], None] | None, batch_size: int) -> int:
    """Give every record a vector from mem's embedder, in two phases that a crash at any
    point leaves resumable and every open still reads:

    1. **Stage.** New vectors go to the ``staged`` family, a durable batch at a time;
       records and their vectors are untouched, so the store stays whole in its old
       model (searchable, and writable with the old model) until the end. A re-run skips
       what is staged already.
    2. **Commit** (:func:`commit_reembed`), under the write lock: stage what was added or
       changed meanwhile, switch the store's model in one batch that marks the commit,
       then move the staged vectors into place; an open that finds the mark finishes it.

    Returns how many records were embedded now. Opening with the store's own model and
    calling this drops an unfinished conversion instead (returns 0).
    """
    e = mem._embedder
    if e is None:
        from magray.errors import InvalidInputError

        raise InvalidInputError("reembed needs an embedder; open the store with one")
    target = e.fingerprint
    s = mem.store
    if target == mem.fingerprint or not mem.dim:
        if mem._reembed_target not in (None, target):
            with mem._wlock:  # back on the store's own model: drop the staged work
                b = s.batch()
                b.delete_range(b"", _AFTER_IDS, s.handle["staged"])
                b.delete(b"reembed_target", s.handle["meta"])
                s.write(b)
                mem._reembed_target = None
        return 0
    with mem._wlock:
        b = s.batch()
        s.put_meta(b, "reembed_target", target)
        s.write(b)
        mem._reembed_target = target
    total = sum(1 for layer in Layer for _ in s.scan("layer_time", bytes((layer.code,))))
    done = 0
    converted = 0

    def stage(chunk: list[StoredRecord]) -> None:
        nonlocal done, converted
        converted += _stage(mem, chunk, target)
        for _ in chunk:
            done += 1
            if progress is not None:
                progress(done, total)

    for layer in Layer:
        chunk: list[StoredRecord] = []
        for rec in mem._records_of(layer):
            chunk.append(rec)
            if len(chunk) >= batch_size:
                stage(chunk)
                chunk = []
        stage(chunk)
    with mem._wlock:
        for layer in Layer:  # what was added or changed while the stage ran
            recs = list(mem._records_of(layer))
            for i in range(0, len(recs), batch_size):
                converted += _stage(mem, recs[i : i + batch_size], target)
        commit_reembed(mem, e.dim, target, e.name)
    return converted


_AFTER_IDS = b"\xff" * 17  # above every 16-byte id: the end of a whole-family range
_MOVE_BATCH = 1024  # staged vectors moved into place per batch by a commit


def _stage(mem: Engine, recs: list[StoredRecord], target: str) -> int:
    """Stage target vectors for the records that have none yet; returns how many."""
    if not recs:
        return 0
    s = mem.store
    have = s.multi_get("staged", [r.raw_id for r in recs])
    todo = [r for r, h in zip(recs, have) if h is None and r.fingerprint != target]
    if not todo:
        return 0
    vecs = mem._embed([r.text for r in todo], migrating=True)
    with mem._wlock:
        b = s.batch()
        for rec, v in zip(todo, vecs):
            b.put(rec.raw_id, vector_bytes(v), s.handle["staged"])
        s.write(b)
    return len(todo)


def commit_reembed(mem: Engine, dim: int, fingerprint: str, name: str) -> None:
    """Switch the store to the staged model: one batch sets the model and the commit
    mark, then :func:`finish_reembed` moves the vectors. Caller holds the write lock."""
    s = mem.store
    b = s.batch()
    s.put_meta(b, "dim", dim)
    s.put_meta(b, "fingerprint", fingerprint)
    s.put_meta(b, "embedder", name)
    s.put_meta(b, "reembed_commit", fingerprint)
    s.write(b)
    finish_reembed(mem)
    mem._open_indexes()


def finish_reembed(mem: Engine) -> None:
    """Move every staged vector into place and stamp its record with the new model, a
    batch at a time, then clear the marks and drop the index snapshots (derived from
    the old vectors; the caller opens the indexes anew). Safe to repeat: it is what an
    open runs when a commit was interrupted."""
    s = mem.store
    target = s.meta("reembed_commit")
    chunk: list[tuple[bytes, bytes]] = []

    def move() -> None:
        ids = [rid for rid, _ in chunk]
        b = s.batch()
        for (rid, vec), raw in zip(chunk, s.multi_get("records", ids)):
            if raw is not None:
                rec = StoredRecord.decode(rid, raw)
                rec.fingerprint = target
                b.put(rid, rec.encode(), s.handle["records"])
                b.put(rid, vec, s.handle["vectors"])
            b.delete(rid, s.handle["staged"])
        s.write(b)
        chunk.clear()

    for rid, vec in s.scan("staged"):
        chunk.append((bytes(rid), bytes(vec)))
        if len(chunk) >= _MOVE_BATCH:
            move()
    if chunk:
        move()
    b = s.batch()
    b.delete(b"reembed_target", s.handle["meta"])
    b.delete(b"reembed_commit", s.handle["meta"])
    s.write(b)
    mem.dim = int(s.meta("dim"))
    mem.fingerprint = str(s.meta("fingerprint"))
    mem._reembed_target = None
    shutil.rmtree(mem.path / "index", ignore_errors=True)
