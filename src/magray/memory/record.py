"""The values the memory API returns: layers, records, hits and reports."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Layer(str, enum.Enum):
    """The three memory layers, hottest first."""

    INTERACT = "interact"  # hot: expires after 24 hours without use
    INSIGHTS = "insights"  # what kept being used: expires after 90 days without use
    ASSETS = "assets"  # permanent

    code: int  # the layer's byte in store keys: 0, 1, 2, hottest first (set below)

    def __str__(self) -> str:
        name: str = self.value
        return name

    @staticmethod
    def from_code(code: int) -> Layer:
        return _LAYERS[code]

    @staticmethod
    def parse(value: Layer | str) -> Layer:
        """A Layer from its name; InvalidInputError lists the valid names otherwise."""
        if isinstance(value, Layer):
            return value
        try:
            return Layer(value)
        except ValueError:
            from magray.errors import InvalidInputError

            valid = ", ".join(layer.value for layer in Layer)
            raise InvalidInputError(f"unknown layer {value!r}; use one of: {valid}") from None


_LAYERS = list(Layer)
for _code, _layer in enumerate(_LAYERS):  # an attribute, not a property: keys read it often
    _layer.code = _code


@dataclass(frozen=True, slots=True)
class Record:
    """One memory. Times are Unix seconds (UTC)."""

    id: str
    text: str
    layer: Layer
    kind: str = "note"
    tags: tuple[str, ...] = ()
    project: str | None = None
    session: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    last_access: float = 0.0
    access_count: int = 0
    importance: float = 0.0
    fingerprint: str = ""
    layer_since: float = 0.0  # when it entered its current layer (TTLs count from here)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "layer": self.layer.value,
            "kind": self.kind,
            "tags": list(self.tags),
            "project": self.project,
            "session": self.session,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_access": self.last_access,
            "access_count": self.access_count,
            "importance": self.importance,
            "fingerprint": self.fingerprint,
            "layer_since": self.layer_since,
        }


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result; higher scores are better.

    ``score`` is what the ranking used: the cosine similarity of query and record
    (mode ``"vector"``), the BM25 score (``"text"``), or the blend of both in [0, 1]
    (``"hybrid"``, see magray.memory.fusion). ``scores`` holds the signals behind it:
    ``"vector"`` (cosine similarity) and ``"text"`` (BM25). A hybrid hit has both,
    whichever retriever found it: its text score is 0.0 when the record holds no
    query term.
    """

    id: str
    score: float
    layer: Layer
    record: Record
    scores: dict[str, float] = field(default_factory=dict)


class _Unfrozen:
    """Record's slots without the frozen guard: the fast constructors below fill one,
    then make it a Record by class assignment, which Python allows between classes of
    the same slot layout. The object is then an ordinary frozen Record."""

    __slots__ = Record.__slots__


class _UnfrozenHit:
    __slots__ = Hit.__slots__


def make_record(
    id: str,
    text: str,
    layer: Layer,
    kind: str,
    tags: tuple[str, ...],
    project: str | None,
    session: str | None,
    metadata: dict[str, Any],
    created_at: float,
    updated_at: float,
    last_access: float,
    access_count: int,
    importance: float,
    fingerprint: str,
    layer_since: float,
) -> Record:
    """Record(...) of every field, positionally, at a third of the cost: a frozen
    dataclass sets each field through object.__setattr__, and search builds one Record
    per hit. The arguments are trusted (decoded from the store); tests/memory/test_record.py
    holds the result equal to Record(...)."""
    r: Any = object.__new__(_Unfrozen)
    r.id = id
    r.text = text
    r.layer = layer
    r.kind = kind
    r.tags = tags
    r.project = project
    r.session = session
    r.metadata = metadata
    r.created_at = created_at
    r.updated_at = updated_at
    r.last_access = last_access
    r.access_count = access_count
    r.importance = importance
    r.fingerprint = fingerprint
    r.layer_since = layer_since
    r.__class__ = Record
    out: Record = r
    return out


def make_hit(id: str, score: float, layer: Layer, record: Record, scores: dict[str, float]) -> Hit:
    """Hit(...) of every field, positionally, as make_record builds a Record."""
    h: Any = object.__new__(_UnfrozenHit)
    h.id = id
    h.score = score
    h.layer = layer
    h.record = record
    h.scores = scores
    h.__class__ = Hit
    out: Hit = h
    return out


@dataclass(frozen=True, slots=True)
class Move:
    """One lifecycle change: a promotion (to a layer) or an expiry (to None)."""

    id: str
    from_layer: Layer
    to_layer: Layer | None
    reason: str
    at: float


@dataclass(slots=True)
class LifecycleReport:
    """What promote() or expire() did (or would do, for a dry run)."""

    moved: list[Move] = field(default_factory=list)
    expired: list[Move] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.moved:
            key = f"{m.from_layer.value}->{m.to_layer.value if m.to_layer else 'expired'}"
            counts[key] = counts.get(key, 0) + 1
        for m in self.expired:
            key = f"{m.from_layer.value}->expired"
            counts[key] = counts.get(key, 0) + 1
        return counts


@dataclass(slots=True)
class ImportReport:
    """What import_jsonl() did: records added, duplicates skipped, lines rejected."""

    added: int = 0
    skipped: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, message)
