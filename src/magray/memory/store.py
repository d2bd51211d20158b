"""RocksDB, through rocksdict: the only source of truth of a memory store.

Column families (all keys and values are bytes):

    records    id(16)                          -> record (msgpack, format byte first)
    vectors    id(16)                          -> float32 vector, raw
    layer_time layer(1) created_ms(8) id(16)   -> b""      records of a layer, oldest first
    labels     layer(1) label(8)               -> id(16)   hnswlib label -> record
    texthash   layer(1) hash128(text)(16)      -> id(16)   exact-duplicate lookup
    oplog      seq(8) index(4)                 -> [op, layer, label]  index changes to replay
    moves      at_ms(8) id(16)                 -> [from, to, reason]  the lifecycle log
    meta       name                            -> value    schema, dimension, fingerprint, seq
    cache      key(16)                         -> cached embedding (the embedding cache)

Integers in keys are big-endian, so byte order is numeric order. Every multi-key change
is one WriteBatch; ``seq`` (in meta) counts batches that change an index and is written
in the same batch, so an index snapshot that records the seq it reflects can be caught up
from the oplog.

Options are tuned for fast open and small writes: a shared 64 MiB block cache with bloom
filters for point lookups (records, vectors, labels, texthash), LZ4 for text, none for
vectors (float32 does not compress), ``max_open_files=-1`` (no table-cache churn), two
background jobs, and level compaction with dynamic level sizes.
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

from magray.errors import CorruptStoreError, StoreError

FORMAT = 1  # first byte of every msgpack value
SCHEMA_VERSION = 1

CFS = ("records", "vectors", "layer_time", "labels", "texthash", "oplog", "moves", "meta", "cache")

_U64 = struct.Struct(">Q")


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
        if read_only:
            if secondary_path is None:
                raise StoreError("a read-only store needs a secondary path for its logs")
            secondary_path.mkdir(parents=True, exist_ok=True)
            access = AccessType.secondary(str(secondary_path))
        try:
            self.db = Rdict(str(path / "db"), db_opts, column_families=families, access_type=access)
        except Exception as exc:  # rocksdict raises plain Exceptions
            raise StoreError(
                f"cannot open the database in {path}: {exc}; check the path and its permissions"
            ) from exc
        self.cf = {name: self.db.get_column_family(name) for name in CFS}
        self.handle = {name: self.db.get_column_family_handle(name) for name in CFS}
        self._write_opts = WriteOptions()
        self._write_opts.sync = sync
        self._fast_opts = WriteOptions()
        self._fast_opts.sync = False

    # -- writes ---------------------------------------------------------------------

    def batch(self) -> WriteBatch:
        return WriteBatch(raw_mode=True)

    def write(self, batch: WriteBatch, *, durable: bool = True) -> None:
        """Apply a batch atomically; durable batches are fsynced when sync_writes is on."""
        self.db.write(batch, self._write_opts if durable else self._fast_opts)

    # -- reads ----------------------------------------------------------------------

    def get(self, cf: str, key: bytes) -> bytes | None:
        value = self.cf[cf].get(key)
        return None if value is None else bytes(value)

    def multi_get(self, cf: str, keys: list[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = self.cf[cf].get(keys)  # type: ignore[arg-type,assignment]
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
        it = self.cf[cf].iter(opts)
        if reverse:
            # Backward iteration does not honour the lower bound here: check the prefix.
            it.seek_to_last()
            while it.valid():
                key = it.key()
                if not key.startswith(prefix):
                    return
                yield key, it.value()
                it.prev()
            return
        it.seek(start if start is not None else prefix)
        while it.valid():
            yield it.key(), it.value()
            it.next()

    def meta(self, name: str) -> Any:
        raw = self.get("meta", name.encode())
        return None if raw is None else unpack(raw)

    def put_meta(self, batch: WriteBatch, name: str, value: Any) -> None:
        batch.put(name.encode(), pack(value), self.handle["meta"])

    def catch_up(self) -> None:
        """For a read-only (secondary) store: see what the writer has written since."""
        self.db.try_catch_up_with_primary()

    # -- maintenance ----------------------------------------------------------------

    def checkpoint(self, dest: Path) -> None:
        """A consistent copy of the database at dest (hard links where possible)."""
        self.db.flush_wal(True)
        Checkpoint(self.db).create_checkpoint(str(dest))

    def compact(self) -> None:
        for name in CFS:
            self.cf[name].compact_range(None, None)

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
        """Flush the WAL and close. Column-family views share the database and keep its
        file lock, so they close first and every reference is dropped."""
        try:
            if not self.read_only:
                self.db.flush_wal(True)
        finally:
            for view in self.cf.values():
                view.close()
            self.cf = {}
            self.handle = {}
            self.db.close()


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key with this prefix (None: no bound)."""
    b = bytearray(prefix)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return None
    b[-1] += 1
    return bytes(b)
