"""Retrieval quality of magray's search modes against bm25s, and the cost of hybrid.

    python bench/retrieval_data.py --out bench/data          # once: builds the sets
    python bench/compare_retrieval.py --data bench/data \\
        --model ../shared/models/all-MiniLM-L6-v2 [--queries 1000] [--latency-n 100000]

Quality, per set (see retrieval_data.py): MRR@10 and recall@10 of magray's ``vector``,
``text`` and ``hybrid`` modes, and of bm25s (BM25, English stop words, Snowball
stemmer) as the lexical peer. The fusion variants are scored from the same two
candidate lists (top 50 of each mode), so the choice of fusion rests on the same run:

- ``rrf``: reciprocal rank fusion, k=60, and weighted 1:2 and 2:1 (vector:text);
- ``blend``: a convex combination of normalised scores, alpha the vector weight, with
  the candidates either as each list returned them, one missing from a list counting
  0 there ("missing 0", the engine's fusion before the current one), or completed
  over the union of both lists ("complete"), each candidate scored by both modes as
  read from each mode's top 1000 (a vector candidate below that gets the 1000th
  similarity; a text candidate missing there, BM25 0). The engine's own hybrid
  completes with exact scores; on these sets the two agree to the third decimal.
- normalisations: ``best`` (score / the list's best, from 0: the engine's, at alpha
  0.6), ``min-max``, ``z-score`` (mean 0, standard deviation 1) and ``from -1``
  (cosine from -1, BM25 from 0, to the list's best).

Cost: ingest with embedding, full text on against off (until add_many returns, and
until the text index has caught up), and search p50 of hybrid against vector mode on
``--latency-n`` records (query embedding included in both).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def load(d: Path, limit: int) -> tuple[list[dict[str, str]], dict[str, list[dict[str, str]]]]:
    """The documents of a set and each of its query files (``queries*.jsonl``: one
    index serves them all), each shuffled and cut to ``limit``."""
    with open(d / "docs.jsonl", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    query_sets = {}
    for path in sorted(d.glob("queries*.jsonl")):
        with open(path, encoding="utf-8") as f:
            queries = [json.loads(line) for line in f]
        random.Random(3).shuffle(queries)
        query_sets[path.stem] = queries[:limit]
    return docs, query_sets


def score(rankings: list[list[str]], relevant: list[str]) -> tuple[float, float]:
    """(MRR@10, recall@10) with one relevant document per query."""
    rr, hit = 0.0, 0
    for ranked, want in zip(rankings, relevant):
        top = ranked[:10]
        if want in top:
            rr += 1.0 / (top.index(want) + 1)
            hit += 1
    return rr / len(relevant), hit / len(relevant)


def rrf(lists: list[list[str]], weights: list[float], k: int = 60) -> list[str]:
    fused: dict[str, float] = {}
    for ranking, w in zip(lists, weights):
        for r, item in enumerate(ranking, 1):
            fused[item] = fused.get(item, 0.0) + w / (k + r)
    return [x for x, _ in sorted(fused.items(), key=lambda t: -t[1])]


def from_minus_one(pairs: list[tuple[str, float]]) -> dict[str, float]:
    """Cosine from its theoretical minimum, -1, to the list's best (Bruch, Gai, Ingber,
    "An Analysis of Fusion Functions for Hybrid Retrieval", 2023)."""
    if not pairs:
        return {}
    hi = max(s for _, s in pairs)
    return {x: (s + 1.0) / (hi + 1.0) for x, s in pairs}


def zscore(pairs: list[tuple[str, float]]) -> dict[str, float]:
    """Mean 0, standard deviation 1 over the list (Montague, Aslam, "Relevance Score
    Normalization for Metasearch", CIKM 2001)."""
    if not pairs:
        return {}
    scores = [s for _, s in pairs]
    mu, sd = statistics.fmean(scores), statistics.pstdev(scores) or 1.0
    return {x: (s - mu) / sd for x, s in pairs}


def blend(
    vec: list[tuple[str, float]],
    txt: list[tuple[str, float]],
    alpha: float,
    norm_vec: Any = None,
    norm_txt: Any = None,
) -> list[str]:
    """The engine's fusion (magray.memory.fusion.blend), by_best unless other
    normalisations are given, as a ranking of ids."""
    from magray.memory.fusion import blend as fuse
    from magray.memory.fusion import by_best

    fused = fuse(
        vec, txt, alpha, normalise_vector=norm_vec or by_best, normalise_text=norm_txt or by_best
    )
    return [x for x, _ in fused]


DEPTH = 50  # candidates each retriever hands to the fusion, as in the engine
DEEP = 1000  # how deep each mode is read to complete the candidates' scores


def complete(
    vec: list[tuple[str, float]],
    txt: list[tuple[str, float]],
    deep_vec: list[tuple[str, float]],
    deep_txt: list[tuple[str, float]],
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Both candidate lists completed over their union, as the engine's hybrid does: a
    candidate one list lacks takes its score from that mode's deep list (a text
    candidate missing there holds no query term: BM25 0; a vector candidate missing
    there ranks below DEEP: the deep list's lowest similarity)."""
    union = list(dict.fromkeys([x for x, _ in vec] + [x for x, _ in txt]))
    dv, dt = dict(deep_vec), dict(deep_txt)
    floor = min(dv.values()) if dv else 0.0
    return [(x, dv.get(x, floor)) for x in union], [(x, dt.get(x, 0.0)) for x in union]


def bm25s_rankings(docs: list[dict[str, str]], queries: list[dict[str, str]]) -> list[list[str]]:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    corpus = bm25s.tokenize(
        [d["text"] for d in docs], stopwords="en", stemmer=stemmer, show_progress=False
    )
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    q = bm25s.tokenize(
        [x["query"] for x in queries], stopwords="en", stemmer=stemmer, show_progress=False
    )
    idx, _ = retriever.retrieve(q, k=10, show_progress=False)
    return [[docs[int(i)]["id"] for i in row] for row in idx]


def quality(name: str, d: Path, model: str, limit: int) -> None:
    import magray

    docs, query_sets = load(d, limit)
    with tempfile.TemporaryDirectory() as tmp:
        mem = magray.open(Path(tmp) / "s", embedder=model)
        t0 = time.perf_counter()
        ids = mem.add_many([x["text"] for x in docs])
        took = time.perf_counter() - t0
        by_rid = {rid: x["id"] for rid, x in zip(ids, docs)}
        print(f"[{name}] {len(docs)} documents embedded and indexed in {took:.1f} s")
        for stem, queries in query_sets.items():
            label = name if stem == "queries" else f"{name} {stem.removeprefix('queries-')}"
            lists: dict[str, list[list[tuple[str, float]]]] = {"vector": [], "text": []}
            hybrid: list[list[str]] = []
            for x in queries:
                for mode in ("vector", "text"):
                    hits = mem.search(x["query"], k=DEEP, mode=mode)
                    lists[mode].append([(by_rid[h.id], h.score) for h in hits])
                hits = mem.search(x["query"], k=10, mode="hybrid")
                hybrid.append([by_rid[h.id] for h in hits])
            report(label, docs, queries, lists, hybrid)
        mem.close()


def report(
    label: str,
    docs: list[dict[str, str]],
    queries: list[dict[str, str]],
    lists: dict[str, list[list[tuple[str, float]]]],
    hybrid: list[list[str]],
) -> None:
    """Print MRR@10 and recall@10 of every mode, bm25s and the fusion variants."""
    relevant = [x["relevant"] for x in queries]
    print(f"[{label}] {len(queries)} queries")
    rows: dict[str, tuple[float, float]] = {}
    deep = lists
    lists = {m: [r[:DEPTH] for r in deep[m]] for m in deep}
    ranked = {m: [[x for x, _ in r] for r in lists[m]] for m in lists}
    rows["magray vector"] = score(ranked["vector"], relevant)
    rows["magray text (BM25)"] = score(ranked["text"], relevant)
    rows["magray hybrid"] = score(hybrid, relevant)
    rows["bm25s"] = score(bm25s_rankings(docs, queries), relevant)
    for wv, wt in ((1, 1), (1, 2), (2, 1)):
        fused = [rrf([v, t], [wv, wt]) for v, t in zip(ranked["vector"], ranked["text"])]
        rows[f"fusion rrf k=60 vector:text {wv}:{wt}"] = score(fused, relevant)
    from magray.memory.fusion import minmax

    pairs = list(zip(lists["vector"], lists["text"], deep["vector"], deep["text"]))
    done = [complete(v, t, dv, dt) for v, t, dv, dt in pairs]
    variants: list[tuple[str, Any, tuple[float, ...], bool]] = [
        ("best", None, (0.3, 0.4, 0.5, 0.6, 0.7, 0.8), True),
        ("best", None, (0.6,), False),
        ("min-max", minmax, (0.4, 0.5), False),
        ("min-max", minmax, (0.4, 0.5, 0.6), True),
        ("z-score", zscore, (0.4, 0.5, 0.6), True),
        ("from -1", from_minus_one, (0.7, 0.8), True),
    ]
    for norm, fn, alphas, completed in variants:
        text_norm = None if fn is from_minus_one else fn  # BM25 from 0 there
        for alpha in alphas:
            if completed:
                fused = [blend(v, t, alpha, fn, text_norm) for v, t in done]
            else:
                fused = [blend(v, t, alpha, fn, text_norm) for v, t, _, _ in pairs]
            how = "complete" if completed else "missing 0"
            rows[f"fusion {norm} alpha={alpha}, {how}"] = score(fused, relevant)
    best_single = max(rows["magray vector"][0], rows["magray text (BM25)"][0])
    for row, (mrr, rec) in rows.items():
        print(f"[{label}] {row:<38} MRR@10 {mrr:.3f}  recall@10 {rec:.3f}")
    h = rows["magray hybrid"]
    print(
        f"[{label}] hybrid - best single mode: MRR@10 {h[0] - best_single:+.3f} (bar >= +0.03); "
        f"recall@10 {h[1]:.3f} vs vector {rows['magray vector'][1]:.3f} / text "
        f"{rows['magray text (BM25)'][1]:.3f} (bar: >= both)"
    )


def cost(model: str, d: Path, n_ingest: int, n_latency: int) -> None:
    import numpy as np

    import magray

    docs, query_sets = load(d, 400)
    queries = query_sets["queries"]
    texts = [x["text"] for x in docs][:n_ingest]

    def ingest(embedder: Any, full: bool, vectors: Any) -> tuple[float, float]:
        """(seconds until the last add_many returned, until the text index caught up)."""
        with tempfile.TemporaryDirectory() as tmp:
            mem = magray.open(Path(tmp) / "s", embedder=embedder, config={"full_text": full})
            t0 = time.perf_counter()
            for i in range(0, len(texts), 256):
                chunk = None if vectors is None else vectors[i : i + 256]
                mem.add_many(texts[i : i + 256], vectors=chunk)
            acked = time.perf_counter() - t0
            if full:
                mem._fulltext.sync(mem._seq)  # the text index caught up
            caught = time.perf_counter() - t0
            mem.close()
        return acked, caught

    runs = [(ingest(model, True, None), ingest(model, False, None)) for _ in range(2)]
    on = statistics.median(r[0][0] for r in runs)
    caught = statistics.median(r[0][1] for r in runs)
    off = statistics.median(r[1][0] for r in runs)
    print(
        f"ingest {len(texts)} texts with embedding: full text off {off:.2f} s, on {on:.2f} s "
        f"until add_many returns ({on / off - 1:+.1%}), {caught:.2f} s until the text index "
        f"has caught up ({caught / off - 1:+.1%}; bar: <= +25%)"
    )
    # Vectors given: full text on against off, until the text index has caught up.
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((len(texts), 384)).astype(np.float32)
    given = [(ingest(None, True, vecs)[1], ingest(None, False, vecs)[1]) for _ in range(3)]
    g_on = statistics.median(g[0] for g in given)
    g_off = statistics.median(g[1] for g in given)
    print(
        f"ingest {len(texts)} with vectors given: full text off {g_off:.3f} s, on (caught up) "
        f"{g_on:.3f} s; off builds no text index at all"
    )
    # Latency on n_latency records: hybrid against vector, query embedding included.
    rng2 = random.Random(5)
    words = " ".join(x["text"] for x in docs).split()
    with tempfile.TemporaryDirectory() as tmp:
        mem = magray.open(Path(tmp) / "s", embedder=model)
        base = rng.standard_normal((n_latency, 384)).astype(np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        for i in range(0, n_latency, 5000):
            chunk = [" ".join(rng2.choices(words, k=40)) for _ in range(min(5000, n_latency - i))]
            mem.add_many(chunk, vectors=base[i : i + len(chunk)])
        mem.wait_ready()
        mem._fulltext.sync(mem._seq)  # the text index caught up
        # Every search embeds a query never seen before (no cache hit), and every mode
        # embeds the same queries: each query in three spellings that the uncased model
        # and the text index read alike (lower case, upper case, title case), so the
        # tokens and the cost of embedding them are the same, but each misses the cache.
        # The spellings rotate between the modes. Then the same searches again, their
        # vectors cached: the engine alone.
        qs = [x["query"] for x in queries]
        for q in qs[-10:]:
            mem.search(q, mode="hybrid")
        spell = [v for q in qs[:180] if len(set(v := (q.lower(), q.upper(), q.title()))) == 3]
        modes = ["vector", "text", "hybrid"]
        lat: dict[str, list[float]] = {m: [] for m in modes}
        warm: dict[str, list[float]] = {m: [] for m in modes}
        for times in (lat, warm):  # the second pass finds every query vector cached
            for i, variants in enumerate(spell):
                for j, mode in enumerate(modes):
                    q = variants[(i + j) % 3]
                    t = time.perf_counter()
                    mem.search(q, k=10, mode=mode)
                    times[mode].append(time.perf_counter() - t)
        mem.close()
    w = {m: statistics.median(v) * 1e3 for m, v in warm.items()}
    print(
        f"search p50 on {n_latency} records, query vector cached (the engine alone): vector "
        f"{w['vector']:.2f} ms, text {w['text']:.2f} ms, hybrid {w['hybrid']:.2f} ms; "
        f"hybrid/vector {w['hybrid'] / w['vector']:.2f}x"
    )
    p = {m: statistics.median(v) * 1e3 for m, v in lat.items()}
    print(
        f"search p50 on {n_latency} records (query embedding included): vector {p['vector']:.2f} "
        f"ms, text {p['text']:.2f} ms, hybrid {p['hybrid']:.2f} ms; hybrid/vector "
        f"{p['hybrid'] / p['vector']:.2f}x (bar <= 1.5x)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=Path("bench/data"))
    ap.add_argument("--model", required=True, help="embedding model directory or name")
    ap.add_argument("--sets", default="docstrings,identifiers,manpages")
    ap.add_argument("--queries", type=int, default=1000, help="queries per set (at most)")
    ap.add_argument("--ingest-n", type=int, default=2000)
    ap.add_argument("--latency-n", type=int, default=100_000)
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    for name in [] if args.skip_quality else args.sets.split(","):
        quality(name, args.data / name, args.model, args.queries)
    if not args.skip_cost:
        cost(args.model, args.data / "docstrings", args.ingest_n, args.latency_n)


if __name__ == "__main__":
    main()
