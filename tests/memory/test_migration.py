"""A store written with one index per layer (the previous format) opens, and migrates
its derived index once; the store itself is never rewritten, so a crash during the
migration costs nothing but index work."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np

import magray

DATA = Path(__file__).parent / "data" / "store-per-layer-index.tar.gz"


def _extract(tmp_path: Path) -> tuple[Path, dict]:  # type: ignore[type-arg]
    with tarfile.open(DATA) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "store", json.loads((tmp_path / "expected.json").read_text())


def _check(mem: magray.Memory, expected: dict) -> None:  # type: ignore[type-arg]
    records = expected["records"]
    assert mem.stats()["records"] == len(records) == 57
    volatile = {"access_count", "last_access"}  # searches below count as accesses
    for rid, fields in records.items():
        got = mem.get(rid).to_dict()  # type: ignore[union-attr]
        assert {k: v for k, v in got.items() if k not in volatile} == {
            k: v for k, v in fields.items() if k not in volatile
        }
    for rid, vec in expected["vectors"].items():
        hit = mem.search(vector=np.asarray(vec, np.float32), k=1)[0]
        assert hit.id == rid and hit.layer.value == records[rid]["layer"]
    counts = {layer: 0 for layer in ("interact", "insights", "assets")}
    for fields in records.values():
        counts[fields["layer"]] += 1
    assert {k: v["records"] for k, v in mem.stats()["layers"].items()} == counts
    q = np.asarray(next(iter(expected["vectors"].values())), np.float32)
    for layer in counts:
        assert all(h.layer.value == layer for h in mem.search(vector=q, k=5, layers=[layer]))


def test_a_store_with_one_index_per_layer_opens_and_migrates_once(tmp_path: Path) -> None:
    store, expected = _extract(tmp_path)
    old = [store / "index" / name for name in ("interact", "insights", "assets")]
    assert all(p.is_dir() for p in old)
    with magray.open(store, embedder=None, read_only=True) as mem:  # reads, changes nothing
        _check(mem, expected)
    assert all(p.is_dir() for p in old)
    with magray.open(store, embedder=None) as mem:
        _check(mem, expected)
    assert not any(p.exists() for p in old)
    assert (store / "index" / "vectors" / "current").is_file()
    with magray.open(store, embedder=None) as mem:  # from the new snapshot this time
        assert mem.stats()["index"]["snapshot_seq"] > 0
        _check(mem, expected)
