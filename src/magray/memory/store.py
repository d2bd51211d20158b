"""RocksDB, through rocksdict: the only source of truth of a memory store.

Column families (all keys and values are bytes):

    records    id(16)                          -> record (msgpack, format byte first)
    vectors    id(16)                          -> float32 vector, raw
    layer_time layer(1) created_ms(8) id(16)   -> summary  records of a layer, oldest first;
                                                         the value: codec.lifecycle_summary
    labels     layer(1) label(8)               -> id(16)   hnswlib label -> record
    texthash   layer(1) hash128(text)(16)      -> id(16)   exact-duplicate lookup
    oplog      seq(8) index(4)                 -> [op, layer, label]  index changes to replay
    moves      at_ms(8) id(16)                 -> [from, to, reason]  the lifecycle log
    promotable layer(1) id(16)                 -> b""      records a promotion rule may move
                                                  (lifecycle.promotable), so planning
                                                  reads them alone
    meta       name                            -> value    schema, dimension, fingerprint, seq
    cache      key(16)                         -> cached embedding (the embedding cache)
    staged     id(16)                          -> float32 vector of the model a re-embed
                                                  converts to (until it commits)

Integers in keys are big-endian, so byte order is numeric order. Every multi-key change
is one WriteBatch; ``seq`` (in meta) counts batches that change an index and is written
in the same batch, so an index snapshot that records the seq it reflects can be caught up
from the oplog.

Options are tuned for fast open and small writes: a shared 64 MiB block cache with bloom
filters for point lookups (records, vectors, labels, texthash), LZ4 for text, none for
vectors (float32 does not compress), ``max_open_files=-1`` (no table-cache churn), two
background jobs, and level compaction with dynamic level sizes.

Failures of the database or the file system surface as StoreError subclasses, never as
the binding's plain exceptions: DiskFullError when the device is full (see
:func:`magray.errors.storage_error`). A store on read-only media (a mounted backup, an
image layer) is opened from a private directory of links to its files, because the
binding (rocksdict 0.3.29) rewrites a config file in the database directory on every
open, read-only modes included.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
from rocksdict import (
    AccessType,
    BlockBasedOptions,
    Cache,
    Checkpoint,
    DBCompressionType,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteOptions,
)

from magray.errors import CorruptStoreError, StoreError, storage_error

FORMAT = 1  # first byte of every msgpack value
SCHEMA_VERSION = 1

CFS = (
    "records",
    "vectors",
    "layer_time",
    "labels",
    "texthash",
    "oplog",
    "moves",
    "promotable",
    "meta",
    "cache",
    "staged",
)
_BINDING_CONFIG = "rocksdict-config.json"  # what the binding rewrites on every open

_U64 = struct.Struct(">Q")


def default_path() -> Path:
    """MAGRAY_HOME, or the user data directory (platformdirs)."""
    env = os.environ.get("MAGRAY_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("magray", appauthor=False))


def u64(value: int) -> bytes:
    return _U64.pack(value)


def read_u64(raw: bytes, offset: int = 0) -> int:
    return int(_U64.unpack_from(raw, offset)[0])


def pack(value: Any) -> bytes:
    body: bytes = msgpack.packb(value, use_bin_type=True)
    return bytes((FORMAT,)) + body


def unpack(raw: bytes) -> Any:
    if not raw or raw[0] != FORMAT:
        raise CorruptStoreError(
            f"value has format byte {raw[:1]!r}, expected {FORMAT}; the store was written by "
            "another magray version or is damaged: restore a backup"
        )
    return msgpack.unpackb(raw[1:], raw=False, strict_map_key=False)


def _link_tree(src: Path, dest: Path) -> Path:
    """dest: a new directory of symbolic links to src's files, less the binding's config
    file, so that the binding can write its config there instead of on read-only media."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(src):
        if entry.name != _BINDING_CONFIG and entry.is_file():
            os.symlink(entry.path, dest / entry.name)
    return dest


def _cf_options(cache: Cache, *, compress: bool, bloom: bool) -> Options:
    opts = Options(raw_mode=True)
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    if bloom:
        table.set_bloom_filter(10, False)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    opts.set_block_based_table_factory(table)
    opts.set_compression_type(DBCompressionType.lz4() if compress else DBCompressionType.none())
    opts.set_level_compaction_dynamic_level_bytes(True)
    return opts


class Store:
    """An open RocksDB database with magray's column families."""

    def __init__(
        self,
        path: Path,
        *,
        read_only: bool = False,
        secondary_path: Path | None = None,
        sync: bool = True,
    ) -> None:
        self.path = path
        self.read_only = read_only
        cache = Cache(64 << 20)
        db_opts = _cf_options(cache, compress=True, bloom=True)
        db_opts.create_if_missing(not read_only)
        db_opts.create_missing_column_families(not read_only)
        db_opts.set_max_background_jobs(2)
        db_opts.set_max_open_files(-1)
        db_opts.set_keep_log_file_num(2)
        db_opts.set_max_total_wal_size(64 << 20)
        point = {"records", "vectors", "labels", "texthash", "cache"}
        families = {
            name: _cf_options(cache, compress=name != "vectors", bloom=name in point)
            for name in CFS
        }
        access = AccessType.read_write()
        db_path = path / "db"
        # A fixed view of read-only media: there is no writer to catch up with.
        self.frozen = False
        try:
            if read_only:
                if secondary_path is None:
                    raise StoreError("a read-only store needs a secondary path for its logs")
                secondary_path.mkdir(parents=True, exist_ok=True)
                # A store written by an older magray may lack newer (empty) families.
                present = set(Rdict.list_cf(str(db_path)))
                families = {k: v for k, v in families.items() if k in present}
                if os.access(db_path, os.W_OK):
                    access = AccessType.secondary(str(secondary_path))
                else:
                    db_path = _link_tree(db_path, secondary_path / "db")
                    access = AccessType.read_only(False)
                    self.frozen = True
            self.db = Rdict(str(db_path), db_opts, column_families=families, access_type=access)
        except StoreError:
            raise
        except Exception as exc:  # rocksdict raises plain Exceptions
            fix = "check the path and its permissions"
            raise storage_error(exc, path, "opening the database", fix) from exc
        self.cf = {name: self.db.get_column_family(name) for name in families}
        self.handle = {name: self.db.get_column_family_handle(name) for name in families}
        self._write_opts = WriteOptions()
        self._write_opts.sync = sync
        self._fast_opts = WriteOptions()
        self._fast_opts.sync = False

    # -- writes ---------------------------------------------------------------------

    def batch(self) -> WriteBatch:
        return WriteBatch(raw_mode=True)

    def write(self, batch: WriteBatch, *, durable: bool = True) -> None:
        """Apply a batch atomically; durable batches are fsynced when sync_writes is on.
        Raises DiskFullError or StoreError (nothing of the batch is applied then)."""
        try:
            self.db.write(batch, self._write_opts if durable else self._fast_opts)
        except Exception as exc:
            raise storage_error(exc, self.path, "writing to the store") from exc

    # -- reads ----------------------------------------------------------------------

    def get(self, cf: str, key: bytes) -> bytes | None:
        view = self.cf.get(cf)
        value = None if view is None else view.get(key)
        return None if value is None else bytes(value)

    def multi_get(self, cf: str, keys: list[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        view = self.cf.get(cf)
        if view is None:  # a family an older read-only store does not have yet
            return [None] * len(keys)
        values: list[bytes | None] = view.get(keys)  # type: ignore[arg-type,assignment]
        return values

    def scan(
        self, cf: str, prefix: bytes = b"", start: bytes | None = None, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with prefix, in key order (from start, if given), or in
        reverse key order (newest first for time-keyed families)."""
        opts = ReadOptions()
        upper = _prefix_end(prefix) if prefix else None
        if prefix:
            opts.set_iterate_lower_bound(prefix)
            if upper is not None:
                opts.set_iterate_upper_bound(upper)
        view = self.cf.get(cf)
        if view is None:
            return
        if reverse:
            it = view.iter(opts)
            # Backward iteration does not honour the lower bound here: check the prefix.
            it.seek_to_last()
            while it.valid():
                key = it.key()
                if not key.startswith(prefix):
                    return
                yield key, it.value()
                it.prev()
            return
        # Forward: the library's own item iterator, a third faster than stepping one here.
        yield from view.items(from_key=start if start is not None else prefix, read_opt=opts)

    def meta(self, name: str) -> Any:
        raw = self.get("meta", name.encode())
        return None if raw is None else unpack(raw)

    def put_meta(self, batch: WriteBatch, name: str, value: Any) -> None:
        batch.put(name.encode(), pack(value), self.handle["meta"])

    def catch_up(self) -> None:
        """For a read-only (secondary) store: see what the writer has written since."""
        if self.frozen:
            return
        try:
            self.db.try_catch_up_with_primary()
        except Exception as exc:
            raise storage_error(exc, self.path, "catching up with the writer") from exc

    # -- maintenance ----------------------------------------------------------------

    def checkpoint(self, dest: Path) -> None:
        """A consistent copy of the database at dest (hard links where possible)."""
        try:
            self.db.flush_wal(True)
            Checkpoint(self.db).create_checkpoint(str(dest))
        except Exception as exc:
            raise storage_error(exc, dest, "writing a checkpoint") from exc

    def compact(self) -> None:
        try:
            for view in self.cf.values():
                view.compact_range(None, None)
        except Exception as exc:
            raise storage_error(exc, self.path, "compacting the store") from exc

    def size_bytes(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self.path / "db"):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(root, f))
                except OSError:
                    pass
        return total

    def close(self) -> None:
        """Flush the WAL and close. Column-family views and handles share the database and
        keep its file lock, so every one is closed or dropped even when a flush fails (a
        full disk); then the first failure is raised as a StoreError."""
        errors: list[BaseException] = []
        if not self.read_only:
            try:
                self.db.flush_wal(True)
            except Exception as exc:
                errors.append(exc)
        views, self.cf, self.handle = list(self.cf.values()), {}, {}
        while views:
            try:
                views.pop().close()
            except Exception as exc:
                errors.append(exc)
        try:
            self.db.close()
        except Exception as exc:
            errors.append(exc)
        if errors:
            raise storage_error(errors[0], self.path, "closing the store") from errors[0]


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key with this prefix (None: no bound)."""
    b = bytearray(prefix)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return None
    b[-1] += 1
    return bytes(b)
