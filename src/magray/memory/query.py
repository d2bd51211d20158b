"""The query planner: a search's arguments become one checked plan (a filter over the
index's columns, k, a score floor), and the index's answer becomes the ranked record
ids to read. The engine runs the plan: query vector -> ``VectorIndex.search`` -> rank
-> records from the store."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from magray.memory import validate
from magray.memory.index import Filter
from magray.memory.record import Layer


@dataclass(frozen=True, slots=True)
class Plan:
    """A checked search: the k wanted, the filter for the index, the score floor."""

    k: int
    filter: Filter
    min_score: float | None
    layers: int  # how many layers are searched (for traces)


_NO_FILTER = Filter()


def plan(
    k: Any,
    layers: Iterable[Layer | str] | Layer | str | None,
    tags: Any,
    project: Any,
    session: Any,
    kind: Any,
    since: Any,
    until: Any,
    min_score: Any,
) -> Plan:
    """Check a search's arguments (InvalidInputError names any bad one) and plan it.
    Times are Unix seconds or datetimes; the filter holds milliseconds."""
    k = validate.top_k(k)
    if (
        layers is None
        and tags is None
        and project is None
        and session is None
        and kind is None
        and since is None
        and until is None
    ):  # the common search: every layer, no condition
        return Plan(k, _NO_FILTER, validate.min_score(min_score), len(Layer))
    chosen = validate.layers(layers)
    floor = validate.min_score(min_score)
    codes = tuple(sorted({layer.code for layer in chosen}))
    flt = Filter(
        layers=None if len(codes) == len(Layer) else codes,
        tags=(validate.tags(tags) or None) if tags is not None else None,
        project=validate.opt_str("project", project),
        session=validate.opt_str("session", session),
        kind=validate.opt_str("kind", kind),
        since_ms=None if since is None else int(validate.timestamp(since, "since") * 1000),
        until_ms=None if until is None else int(validate.timestamp(until, "until") * 1000),
    )
    return Plan(k, flt, floor, len(chosen))


def _older_first(t: tuple[float, bytes]) -> tuple[float, bytes]:
    return -t[0], t[1]


def rank(
    rids: Sequence[bytes | None], scores: Sequence[float], p: Plan
) -> list[tuple[float, bytes]]:
    """(score, record id) best first, at most p.k, from the index's answer as record ids
    (None: no longer indexed, left out) and their scores: equal scores go to the older
    record (ids sort by creation time), and scores under the floor go."""
    found = [(score, rid) for rid, score in zip(rids, scores) if rid is not None]
    found.sort(key=_older_first)
    if p.min_score is not None:
        found = [t for t in found if t[0] >= p.min_score]
    return found[: p.k]
