"""Build the retrieval evaluation sets (JSONL) from text that ships with Python.

    python bench/retrieval_data.py [--out bench/data] [--n 6000]

Two sets, each a ``docs.jsonl`` (``{"id", "text"}``) and a ``queries.jsonl``
(``{"query", "relevant"}``, one relevant document per query):

- ``docstrings``: the documentation strings of the standard library's functions,
  classes and methods, read from its source files with ``ast`` (nothing is imported).
  The summary line is the query; the rest of the docstring is the relevant document.
  Docstrings with a summary of at least four words and a body of at least 120
  characters make the pairs; other bodies of 60 characters or more fill the set up as
  documents no query points to; each body once. Many people wrote them over three
  decades.
- ``identifiers``: incident notes full of error codes, version strings, ticket
  numbers, hosts and user ids, written from templates with a seeded generator; the
  query names one note's codes and a few of its words, as someone pasting an error
  would. Dense embeddings blur such tokens; this set measures that case.

Deterministic: the same Python and the same arguments give the same files.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sysconfig
from collections.abc import Iterator
from pathlib import Path


def stdlib_docstrings() -> Iterator[tuple[str, str]]:
    """(place, docstring) of every function and class of the standard library's source
    (tests and site-packages left out), read with ast: nothing is imported."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("test/", "idlelib/idle_test/", "lib2to3/tests/")) or "/test" in rel:
            continue
        if "site-packages" in rel:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node)
                if doc:
                    yield f"{rel}:{node.name}:{node.lineno}", doc


def docstring_pairs(limit: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    seen: set[str] = set()
    pairs: list[tuple[str, str, str]] = []
    others: list[tuple[str, str]] = []  # documents no query points to: distractors
    for pid, doc in stdlib_docstrings():
        head, _, body = doc.strip().partition("\n")
        body = " ".join(body.split())
        head = " ".join(head.split())
        if len(body) < 60 or body in seen:
            continue
        seen.add(body)
        if len(head.split()) >= 4 and len(body) >= 120:
            pairs.append((pid, head, body))
        else:
            others.append((pid, body))
    rng = random.Random(7)
    rng.shuffle(pairs)
    rng.shuffle(others)
    pairs = pairs[:limit]
    docs = [{"id": pid, "text": body} for pid, _, body in pairs]
    docs += [{"id": pid, "text": body} for pid, body in others[: max(0, limit - len(docs))]]
    queries = [{"query": head, "relevant": pid} for pid, head, _ in pairs]
    return docs, queries


SERVICES = [
    "payments-api", "auth-gateway", "search-indexer", "billing-worker", "media-resizer",
    "notify-hub", "orders-db", "session-cache", "report-builder", "ledger-sync",
]  # fmt: skip
ERRORS = [
    "ERR_CONN_RESET", "ERR_TIMEOUT", "ERR_DISK_FULL", "ERR_AUTH_EXPIRED", "ERR_RATE_LIMIT",
    "E_LOCK_HELD", "ECONNREFUSED", "OOMKilled", "SIGSEGV", "ERR_SCHEMA_DRIFT",
]  # fmt: skip
ACTIONS = [
    "rolled back the deploy", "restarted the pods", "raised the pool size",
    "rotated the credentials", "cleared the queue", "failed over to the replica",
    "pinned the dependency", "added a retry with backoff",
]  # fmt: skip
SYMPTOMS = [
    "requests started failing", "latency went up", "jobs piled up in the queue",
    "users saw blank pages", "the nightly export stopped", "health checks flapped",
]  # fmt: skip


def identifier_pairs(n: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    rng = random.Random(11)
    docs, queries = [], []
    for i in range(n):
        service = rng.choice(SERVICES)
        error = rng.choice(ERRORS)
        ticket = f"INC-{rng.randrange(10000, 99999)}"
        version = f"v{rng.randrange(1, 9)}.{rng.randrange(0, 30)}.{rng.randrange(0, 20)}"
        host = f"{service.split('-')[0]}-{rng.randrange(1, 64):02d}.prod"
        user = f"user_{rng.randrange(16**5):05x}"
        text = (
            f"{ticket}: after the {version} deploy of {service}, "
            f"{rng.choice(SYMPTOMS)} on {host} with {error} for {user}; "
            f"we {rng.choice(ACTIONS)}."
        )
        doc_id = f"note-{i}"
        docs.append({"id": doc_id, "text": text})
        # What someone pastes: one or two exact identifiers and a few words.
        parts = rng.sample([ticket, version, host, user], 2)
        queries.append({"query": f"{error} {' '.join(parts)} {service}", "relevant": doc_id})
    return docs, queries


def write(out: Path, name: str, docs: list[dict[str, str]], queries: list[dict[str, str]]) -> None:
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    for fname, rows in (("docs.jsonl", docs), ("queries.jsonl", queries)):
        with open(d / fname, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{d}: {len(docs)} documents, {len(queries)} queries")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("bench/data"))
    ap.add_argument("--n", type=int, default=6000, help="documents per set (at most)")
    args = ap.parse_args()
    write(args.out, "docstrings", *docstring_pairs(args.n))
    write(args.out, "identifiers", *identifier_pairs(args.n))


if __name__ == "__main__":
    main()
