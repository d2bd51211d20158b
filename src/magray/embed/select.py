"""Choosing an embedder: ``auto``, ``hash``, a registry model name, a model directory, or
an Embedder instance (``magray.open(embedder=...)``, ``MAGRAY_EMBEDDER``, or the config
key ``embedder``).

``auto`` means: the configured model if it is installed or in the Hugging Face cache;
otherwise download the default model; if that is impossible, the offline HashEmbedder,
with one warning line saying how to get semantic search.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from magray.embed.base import Embedder
from magray.errors import InvalidInputError, MagrayError

log = logging.getLogger("magray.embed")

RETRY_AFTER_S = 600  # seconds before "auto" tries a failed model download again

_warned = False


def _onnx(path: Path, opts: dict[str, Any], name: str | None = None) -> Embedder:
    """The ONNX embedder of a model directory; it reads its own settings (pooling, prefixes,
    ...) from the install manifest or the model's files."""
    from magray.embed.onnx import OnnxEmbedder

    return OnnxEmbedder(path, name=name, **opts)


def _hash_fallback(reason: str) -> Embedder:
    global _warned
    from magray.embed.hashing import HashEmbedder

    if not _warned:
        _warned = True
        print(
            f"magray: {reason}; using the offline hash embedder (lexical matching only). "
            "For semantic search run `magray models pull all-MiniLM-L6-v2`.",
            file=sys.stderr,
        )
    return HashEmbedder()


def load_embedder(
    choice: Any,
    *,
    configured: str | None = None,
    download: bool = True,
    device: str = "auto",
    batch_size: int = 32,
) -> Embedder | None:
    """The Embedder for a choice; None stays None (a vector-only store). device and
    batch_size apply to ONNX models."""
    opts = {"device": device, "batch_size": batch_size}
    if choice is None:
        return None
    if isinstance(choice, Embedder):
        return choice
    if not isinstance(choice, (str, os.PathLike)):
        raise InvalidInputError(
            "embedder must be 'auto', 'hash', a model name, a model directory, None or an "
            f"Embedder instance, not {type(choice).__name__}"
        )
    text = os.fspath(choice)
    if text == "auto":
        env = os.environ.get("MAGRAY_EMBEDDER")
        if env and env != "auto":
            return load_embedder(env, download=download, device=device, batch_size=batch_size)
        return _auto(configured, download, opts)
    if text == "hash":
        from magray.embed.hashing import HashEmbedder

        return HashEmbedder()
    path = Path(text).expanduser()
    if path.is_dir():
        return _onnx(path, opts)
    from magray.embed import models

    if text in models.REGISTRY:
        found = models.usable(text)
        if found is None:
            raise InvalidInputError(
                f"model {text} is not installed; run `magray models pull {text}` "
                "(or use embedder='auto' to fall back to the hash embedder)"
            )
        return _onnx(found, opts, text)
    imported = models.installed(text)
    if imported is not None:
        return _onnx(imported, opts, text)
    known = ", ".join(sorted(models.REGISTRY))
    raise InvalidInputError(
        f"unknown embedder {text!r}: not 'auto', 'hash', a model directory, or a known model "
        f"({known}); see `magray models list`"
    )


def _auto(configured: str | None, download: bool, opts: dict[str, Any]) -> Embedder:
    from magray.embed import models

    name = configured or models.DEFAULT_MODEL
    try:  # installed, or in the Hugging Face cache
        path = models.usable(name) if name in models.REGISTRY else None
    except MagrayError as exc:  # a damaged or cleaned cache, or another process installing
        return _hash_fallback(f"model {name} is not usable ({exc})")
    if path is None and configured and Path(configured).expanduser().is_dir():
        path = Path(configured).expanduser()
    if path is not None:
        try:
            return _onnx(path, opts, name if name in models.REGISTRY else None)
        except MagrayError as exc:
            return _hash_fallback(f"model {name} could not be loaded ({exc})")
    if not download:
        return _hash_fallback(f"model {name} is not installed")
    # After a failed download, later invocations do not retry for a while: each attempt
    # costs seconds when the hub cannot be reached.
    marker = models.models_dir() / f".download-failed-{name}"
    try:
        recent = time.time() - marker.stat().st_mtime < RETRY_AFTER_S
    except OSError:
        recent = False
    if recent:
        return _hash_fallback(
            f"model {name} is not installed (its download failed less than "
            f"{RETRY_AFTER_S // 60} minutes ago)"
        )
    try:
        path = models.pull(name, progress=True, timeout=10.0)
    except MagrayError as exc:
        log.debug("auto download failed: %s", exc)
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass
        return _hash_fallback(f"model {name} is not installed and could not be downloaded")
    marker.unlink(missing_ok=True)
    return _onnx(path, opts, name)
