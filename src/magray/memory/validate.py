"""Checks of what callers hand the engine: each returns the value in its stored form or
raises InvalidInputError naming the problem and the fix. Pure functions of their
arguments; the engine passes in what they depend on (limits, the store's dimension)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgpack
import numpy as np

from magray.errors import InvalidInputError
from magray.memory import ids as idcodec
from magray.memory.record import Layer


def check_keys(value: Any, where: str) -> None:
    """Every dict key in value (nested in dicts and lists) is a str: JSON, and so export,
    the CLI and the server, keeps no other kind of key."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(
                    f"{where} has the key {key!r} ({type(key).__name__}); metadata keys "
                    f"must be str: use {str(key)!r}"
                )
            check_keys(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_keys(item, f"{where}[{i}]")


def text(value: Any, what: str, max_bytes: int) -> str:
    """A non-blank str of at most max_bytes of UTF-8."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise InvalidInputError(f"{what} is empty or only whitespace; pass some content")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid Unicode ({exc.reason}); remove lone surrogates"
        ) from None
    if size > max_bytes:
        raise InvalidInputError(
            f"{what} is {size} bytes of UTF-8, over the limit of {max_bytes}; "
            "split it, or raise max_text_bytes"
        )
    return value


def vectors(value: Any, n: int, want: int, holder: str) -> np.ndarray:
    """n finite, non-zero vectors as unit float32 rows, shape (n, d); d must be want
    unless want is 0. holder says what fixed the dimension (for the error)."""
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"vectors must be numeric arrays: {exc}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] != n:
        raise InvalidInputError(f"expected {n} vector(s), got an array of shape {arr.shape}")
    if want and arr.shape[1] != want:
        raise InvalidInputError(
            f"vector has dimension {arr.shape[1]}, the store {holder} {want}-d vectors"
        )
    if arr.shape[1] == 0:
        raise InvalidInputError("vectors must have at least one dimension")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InvalidInputError(
            f"vector {int(np.flatnonzero(bad)[0])} contains NaN or Inf; clean it first"
        )
    norms = np.linalg.norm(arr, axis=1)
    if (norms == 0).any():
        raise InvalidInputError(
            f"vector {int(np.flatnonzero(norms == 0)[0])} is all zeros and has no direction"
        )
    from magray.kernels import l2_normalize

    return l2_normalize(np.ascontiguousarray(arr))


def kind(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"kind must be a non-empty str, got {value!r}")
    return value


def scope(name: str, value: Any) -> str | None:
    """A project or session: a non-empty str, or None."""
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidInputError(f"{name} must be a non-empty str or None, got {value!r}")
    return value


def tags(value: Any) -> tuple[str, ...]:
    """Distinct non-empty tags in their first order; one str is one tag."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    try:
        out = tuple(value)
    except TypeError:
        raise InvalidInputError(f"tags must be a sequence of str, got {value!r}") from None
    for t in out:
        if not isinstance(t, str) or not t:
            raise InvalidInputError(f"every tag must be a non-empty str, got {t!r}")
    return tuple(dict.fromkeys(out))


def metadata(value: Any) -> dict[str, Any]:
    """A dict with str keys that msgpack can store."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"metadata must be a dict, not {type(value).__name__}")
    check_keys(value, "metadata")
    try:
        msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(
            f"metadata cannot be stored ({exc}); use str, int, float, bool, None, bytes, "
            "lists and dicts"
        ) from None
    return value


def importance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"importance must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidInputError(f"importance must be in [0, 1], got {value!r}")
    return float(value)


def fields(
    layer: Any,
    kind_: Any,
    tags_: Any,
    project: Any,
    session: Any,
    metadata_: Any,
    importance_: Any,
) -> dict[str, Any]:
    """The checked fields of a record to write, by name."""
    return {
        "layer": Layer.parse(layer),
        "kind": kind(kind_),
        "tags": tags(tags_),
        "project": scope("project", project),
        "session": scope("session", session),
        "metadata": metadata(metadata_),
        "importance": importance(importance_),
    }


def raw_id(value: Any) -> bytes:
    """The 16 bytes of a record id string."""
    try:
        return idcodec.decode(value)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None


def opt_str(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a str or None, got {value!r}")
    return value


def timestamp(value: Any, name: str) -> float:
    """Unix seconds from a number or a datetime."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise InvalidInputError(f"{name} must be Unix seconds or a datetime, got {value!r}")


def top_k(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"k must be an int >= 1, got {value!r}")
    return value


def layers(value: Iterable[Layer | str] | Layer | str | None) -> list[Layer]:
    """The layers named (all of them for None); at least one."""
    chosen = (
        list(Layer)
        if value is None
        else [Layer.parse(x) for x in ([value] if isinstance(value, (str, Layer)) else value)]
    )
    if not chosen:
        raise InvalidInputError("layers is empty; pass None for all layers or name some")
    return chosen


def min_score(value: Any) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise InvalidInputError(f"min_score must be a number, got {value!r}")
    return value


MODES = ("hybrid", "vector", "text")


def mode(value: Any) -> str | None:
    """A search mode, or None for the store's default."""
    if value is None:
        return None
    if isinstance(value, str) and value in MODES:
        return value
    raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {value!r}")


def contains(value: Any) -> str | None:
    """A substring that hits must hold (ignoring case), or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"contains must be a non-blank str, got {value!r}")
    return value
