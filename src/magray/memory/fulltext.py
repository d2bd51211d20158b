"""A store's full-text side: its BM25 index (textindex.py) kept caught up with the
store, and the text searches the query path asks of it.

The index is derived data, like the vector index: it records the store sequence it
reflects, is caught up from the oplog in the background after an open and before any
text search (so results are complete), and is made anew from the store when it is
missing, damaged or ahead of the store.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from magray.errors import CorruptStoreError, InvalidInputError
from magray.memory.codec import StoredRecord
from magray.memory.index import Filter, VectorIndex
from magray.memory.store import Store
from magray.memory.textindex import TextIndex, catch_up
from magray.ops.tracing import span

_LOG = logging.getLogger("magray.memory")


class FullText:
    """The full-text index of one store (None when config full_text is off)."""

    RESTRICT_MAX = 50_000  # passing labels handed to tantivy as a term set

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index: TextIndex | None = None
        self._lock = threading.Lock()  # one catch-up at a time
        self._thread: threading.Thread | None = None

    def open(self, path: Path | None, seq: int) -> None:
        """(Re)open the index at path for a store at sequence seq, making it anew when
        it is missing, damaged or ahead of the store, and catch it up in a background
        thread. path None: an in-memory index (read-only views), built on first use."""
        self.join()
        old, self.index = self.index, None
        if old is not None:
            old.close()
        if path is None:
            self.index = TextIndex(None, read_only=True)
            return
        try:
            text = TextIndex(path)
            if text.seq > seq:  # its last changes were never synced in the store
                text.close()
                raise CorruptStoreError("the full-text index is ahead of the store")
        except CorruptStoreError as exc:
            _LOG.warning("rebuilding the full-text index from the store: %s", exc)
            TextIndex.destroy(path)
            text = TextIndex(path)
        self.index = text
        if text.seq < seq:
            self._thread = threading.Thread(
                target=self._sync_quietly, args=(seq,), name="magray-text-index", daemon=True
            )
            self._thread.start()

    def sync(self, seq: int) -> TextIndex:
        """The index, caught up with the store up to sequence seq (every write
        acknowledged so far). Raises InvalidInputError when full text is off."""
        text = self.index
        if text is None:
            raise InvalidInputError(
                "full-text search is off for this store (config full_text=false); use "
                "mode='vector', or open the store with full_text=true"
            )
        with self._lock:
            if text.seq < seq:
                floor = int(self.store.meta("oplog_floor") or 0)
                with span("magray.text.catch_up", behind=seq - text.seq):
                    catch_up(text, self.store, seq, floor)
        return text

    def _sync_quietly(self, seq: int) -> None:
        try:
            self.sync(seq)
        except Exception:  # the next search or maintenance round tries again
            _LOG.exception("catching up the full-text index failed")

    def behind(self, seq: int) -> bool:
        """Whether the index lags sequence seq and no catch-up is running."""
        text = self.index
        return text is not None and text.seq < seq and not self._lock.locked()

    def search(
        self, query: str, depth: int, flt: Filter, idx: VectorIndex, seq: int
    ) -> list[tuple[int, float]]:
        """Up to depth (label, BM25 score) best first among the records passing flt:
        restricted inside tantivy to the passing labels when they are few enough, else
        fetched wider until depth pass (no recall lost either way)."""
        text = self.sync(seq)
        if not flt.active():
            return text.search(query, depth)
        allowed = idx.filter_labels(flt)
        if len(allowed) <= self.RESTRICT_MAX:
            return text.search(query, depth, allowed.tolist()) if len(allowed) else []
        ok = set(allowed.tolist())
        fetch = depth * 2
        while True:
            found = text.search(query, fetch)
            keep = [h for h in found if h[0] in ok]
            if len(keep) >= depth or len(found) < fetch:
                return keep[:depth]
            fetch *= 4

    def scores(self, query: str, labels: list[int], seq: int) -> dict[int, float]:
        """label -> BM25 score of each of labels for query (0.0 where the record holds
        no query term): one search restricted to those labels. For a hybrid search's
        vector-only candidates: a few dozen labels."""
        if not labels:
            return {}
        found = dict(self.sync(seq).search(query, len(labels), labels))
        return {label: found.get(label, 0.0) for label in labels}

    def containing(self, needle: str, idx: VectorIndex, seq: int) -> np.ndarray:
        """int64 labels of every indexed record whose text holds needle, ignoring case:
        candidates from the text index (or every record without one), each checked
        against its stored text."""
        candidates = None
        if self.index is not None:
            found = self.sync(seq).containing(needle)
            candidates = None if found is None else np.array(found, np.int64)
        if candidates is None:
            candidates = idx.filter_labels(Filter())
        want = needle.lower()
        keep: list[int] = []
        for i in range(0, len(candidates), 4096):
            chunk = [int(x) for x in candidates[i : i + 4096]]
            pairs = [(label, rid) for label in chunk if (rid := idx.id_of(label)) is not None]
            raws = self.store.multi_get("records", [rid for _, rid in pairs])
            for (label, rid), raw in zip(pairs, raws):
                if raw is not None and want in StoredRecord.decode(rid, raw).text.lower():
                    keep.append(label)
        return np.array(keep, np.int64)

    def join(self) -> None:
        """Wait for a background catch-up to finish."""
        t = self._thread  # read once: close() and open() may race a flush's wait
        if t is not None:
            t.join()

    def close(self) -> None:
        """Wait for a background catch-up, then close the index."""
        self.join()
        if self.index is not None:
            self.index.close()
