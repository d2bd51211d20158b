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
- ``manpages``: the system's manual pages (sections 1-8, English), rendered with
  ``groff``. The summary of the NAME line ("list directory contents") is the query;
  the DESCRIPTION section (its first 2,000 characters) is the relevant document.
  Thousands of authors across decades, the shape of the held-out set (a one-line
  summary against a longer description). A second query file,
  ``queries-names.jsonl``, holds the whole NAME line ("ls - list directory
  contents"): real queries that carry identifiers (``SSL_CTX_new``, ``git-commit``).
  The command-reference pages of one generated CLI (``gcloud``, 16k near-identical
  pages where installed) are left out so that one generator does not make the set.
  Needs ``groff``; the set is skipped with a line where it is missing.

Deterministic: the same Python and the same arguments give the same files.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import random
import re
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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


MAN_ROOT = Path("/usr/share/man")
_HEADER = re.compile(r"^[A-Z][A-Z0-9 ,/()-]*$")  # a section header, at column 0


def render_man(path: Path) -> str | None:
    """A manual page as plain text (groff, no hyphenation, one line per paragraph);
    None for a page that is only a ``.so`` link to another one."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    if raw.lstrip().startswith(b".so ") or len(raw) < 200:
        return None
    out = subprocess.run(
        ["groff", "-mandoc", "-Tutf8", "-P-cbou", "-rHY=0", "-rLL=5000n"],
        input=raw,
        capture_output=True,
        check=False,
    )
    return out.stdout.decode("utf-8", "replace") if out.returncode == 0 else None


def man_sections(text: str) -> dict[str, str]:
    """Section name -> its text, whitespace normalised."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line and not line[0].isspace():
            current = sections.setdefault(line.strip(), []) if _HEADER.match(line) else None
        elif current is not None:
            current.append(line.strip())
    return {k: " ".join(" ".join(v).split()) for k, v in sections.items()}


def man_pairs(
    limit: int,
) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]] | None:
    """(docs, summary queries, NAME-line queries) from the manual pages, or None
    without groff."""
    if shutil.which("groff") is None or not MAN_ROOT.is_dir():
        return None
    paths = sorted(
        p
        for p in MAN_ROOT.glob("man[1-8]/*")
        if p.is_file() and not p.is_symlink() and not p.name.startswith("gcloud")
    )
    with ThreadPoolExecutor(4) as pool:
        pages = list(pool.map(render_man, paths))
    seen_body: set[str] = set()
    summaries: dict[str, int] = {}
    rows: list[tuple[str, str, str, str]] = []  # id, NAME line, summary, body
    for path, text in zip(paths, pages):
        if not text:
            continue
        sec = man_sections(text)
        name, body = sec.get("NAME", ""), sec.get("DESCRIPTION", "")[:2000]
        names, sep, summary = name.partition(" - ")
        if not sep or len(body) < 120 or body in seen_body:
            continue
        seen_body.add(body)
        rows.append((f"{path.parent.name}/{path.name}", name, summary.strip(), body))
        summaries[summary.strip().lower()] = summaries.get(summary.strip().lower(), 0) + 1
    rng = random.Random(13)
    rng.shuffle(rows)
    rows = rows[:limit]
    docs = [{"id": pid, "text": body} for pid, _, _, body in rows]
    # A query whose summary several pages share ("perl module") has no one answer.
    keep = [r for r in rows if len(r[2].split()) >= 3 and summaries[r[2].lower()] == 1]
    by_summary = [{"query": summary, "relevant": pid} for pid, _, summary, _ in keep]
    by_name = [{"query": name, "relevant": pid} for pid, name, _, _ in keep]
    return docs, by_summary, by_name


def write(
    out: Path,
    name: str,
    docs: list[dict[str, str]],
    queries: list[dict[str, str]],
    queries_file: str = "queries.jsonl",
) -> None:
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    for fname, rows in (("docs.jsonl", docs), (queries_file, queries)):
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
    man = man_pairs(args.n)
    if man is None:
        print("manpages: skipped (needs groff and /usr/share/man)")
    else:
        docs, by_summary, by_name = man
        write(args.out, "manpages", docs, by_summary)
        write(args.out, "manpages", docs, by_name, queries_file="queries-names.jsonl")


if __name__ == "__main__":
    main()
