"""Makes store-per-layer-index.tar.gz: a store in the format with one index per layer
(index/interact, index/insights, index/assets), as magray wrote it up to commit f332dee.
Run with that magray:

    python make_per_layer_store.py STORE_DIR EXPECTED_JSON

then tar STORE_DIR (less db/LOG* and writer.lock) with EXPECTED_JSON.
"""

import json
import sys

import numpy as np

import magray

path, out = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(2026)
vecs = rng.standard_normal((60, 16)).astype(np.float32)
cfg = {"exact_threshold": 10, "index_save_every": 5}
with magray.open(path, embedder=None, config=cfg, clock=lambda: 1_800_000_000.0) as m:
    ids = m.add_many([f"interact {i}" for i in range(30)], vectors=vecs[:30], tags=["t"])
    ids += m.add_many([f"insight {i}" for i in range(20)], vectors=vecs[30:50], layer="insights")
    ids += m.add_many(
        [f"asset {i}" for i in range(10)], vectors=vecs[50:], layer="assets", project="p"
    )
    for rid in ids[:5]:
        m.update(rid, importance=0.9)  # promoted below
    m.promote()
    m.delete(ids[40:43])
    m.update(ids[20], layer="assets")
    m.wait_ready()
    m.flush()
    live = {
        r.id: r.to_dict()
        for layer in ("interact", "insights", "assets")
        for r in m.recent(layer=layer, limit=100)
    }
expected = {
    "records": live,
    "vectors": {rid: vecs[i].tolist() for i, rid in enumerate(ids) if rid in live},
}
with open(out, "w") as f:
    json.dump(expected, f)
print(len(live))
