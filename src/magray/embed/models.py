"""Embedding models: a registry, downloads that resume and verify, imports of local copies.

A model is a directory in the Hugging Face layout: an ONNX graph (``model.onnx`` or
``onnx/model.onnx``), ``tokenizer.json`` and, optionally, the sentence-transformers files that
say how to pool and normalise (``modules.json``, ``1_Pooling/config.json``,
``sentence_bert_config.json``) and ``config.json``. Installed models live in
:func:`models_dir`, one directory per name, each with a manifest ``magray-model.json`` that
records the size and sha256 of every file and the settings an embedder needs.

How :func:`pull` downloads
--------------------------
Files go to a hidden staging directory next to the final one (``.NAME.download``). Each file
is written to ``FILE.part``; after a dropped connection the transfer resumes with an HTTP
``Range`` request. Network errors, timeouts and server errors (5xx) are retried with
exponential backoff and jitter. A finished file is checked against the registry's pinned
sha256, else against the sha256 the hub announces in ``X-Linked-Etag`` or ``ETag``; a
mismatch discards it. Only when every file is in place is the manifest written and the
staging directory renamed to its final name, so an install is either complete or absent,
and an older install is replaced only by a complete new one. A download that stops for good
keeps its staging directory, and the next ``pull`` of that model continues where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from magray.errors import InvalidInputError, ModelDownloadError, ModelError
from magray.resilience import retry

if sys.platform != "win32":
    import fcntl

__all__ = [
    "DEFAULT_HUB",
    "DEFAULT_MODEL",
    "MANIFEST",
    "REGISTRY",
    "ModelSpec",
    "ProgressCallback",
    "file_url",
    "get_spec",
    "hub_url",
    "import_dir",
    "info",
    "installed",
    "list_models",
    "model_settings",
    "models_dir",
    "pull",
    "remove",
    "resolve",
    "verify",
]

Pooling = Literal["mean", "cls", "last_token"]
ProgressCallback = Callable[[str, int, int | None], None]
"""``progress(file, done_bytes, total_bytes)``; ``total_bytes`` is None when unknown."""

MANIFEST = "magray-model.json"
DEFAULT_HUB = "https://huggingface.co"
MANIFEST_FORMAT = 1

_log = logging.getLogger("magray")

_POOLINGS: tuple[str, ...] = ("mean", "cls", "last_token")
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)
_ONNX_PATHS = ("model.onnx", "onnx/model.onnx")  # the embedder looks in this order
_STATE = ".magray-pull.json"  # inside a staging directory: files already verified
_USER_AGENT = "magray-models/1"
_OFFLINE_HINT = (
    "check the network connection, set MAGRAY_HUB_URL to a reachable mirror,"
    " or install a local copy with `magray models import DIR`"
)


# -- names ----------------------------------------------------------------------------------


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def _check_name(name: str) -> None:
    if not _valid_name(name):
        raise ModelError(
            f"invalid model name {name!r}: use letters, digits, '.', '_', '+' and '-',"
            " starting with a letter or digit"
        )


def _check_relpath(path: str, where: str) -> None:
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or any(p in ("", ".", "..") for p in parts)
        or path.endswith(".part")
        or path in (MANIFEST, _STATE)
    ):
        raise ModelError(f"{where}: {path!r} is not a usable relative file path")


# -- the registry ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A model magray knows how to download: where its files are and how to use it.

    ``files`` are paths inside the Hugging Face repository ``repo`` at ``revision``; the
    first is the ONNX graph, and ``tokenizer.json`` is among them. ``sha256`` optionally pins
    the digest of some of the files (lower-case hex). ``query_prefix`` and
    ``document_prefix`` are prepended to queries and to stored texts respectively.
    """

    name: str
    repo: str
    revision: str = "main"
    files: tuple[str, ...]
    dim: int
    pooling: Pooling
    max_length: int
    normalize: bool = True
    query_prefix: str = ""
    document_prefix: str = ""
    approx_size_mb: int = 0
    description: str = ""
    license: str = ""
    sha256: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        where = f"model spec {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ModelError(
                f"{where}: a name is letters, digits, '.', '_', '+' and '-', starting with a"
                " letter or digit"
            )
        if not isinstance(self.repo, str) or self.repo.count("/") != 1 or " " in self.repo:
            raise ModelError(f"{where}: repo must be 'owner/name', got {self.repo!r}")
        if (
            not isinstance(self.revision, str)
            or not self.revision.strip()
            or ".." in self.revision
            or self.revision.startswith("/")
        ):
            raise ModelError(f"{where}: invalid revision {self.revision!r}")
        files = tuple(self.files)
        if not files or not files[0].endswith(".onnx"):
            raise ModelError(f"{where}: files must start with the ONNX graph, got {files!r}")
        if not any(f == "tokenizer.json" or f.endswith("/tokenizer.json") for f in files):
            raise ModelError(f"{where}: files must include tokenizer.json")
        for path in files:
            _check_relpath(path, where)
        if len(set(files)) != len(files):
            raise ModelError(f"{where}: files are listed twice in {files!r}")
        object.__setattr__(self, "files", files)
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1:
            raise ModelError(f"{where}: dim must be a positive integer, got {self.dim!r}")
        if self.pooling not in _POOLINGS:
            raise ModelError(
                f"{where}: pooling must be one of {', '.join(_POOLINGS)}, got {self.pooling!r}"
            )
        if (
            isinstance(self.max_length, bool)
            or not isinstance(self.max_length, int)
            or self.max_length < 1
        ):
            raise ModelError(f"{where}: max_length must be a positive integer")
        pinned: dict[str, str] = {}
        for path, digest in dict(self.sha256).items():
            if path not in files:
                raise ModelError(f"{where}: sha256 pins {path!r}, which is not in files")
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest.lower()):
                raise ModelError(f"{where}: sha256 of {path!r} must be 64 hex digits")
            pinned[path] = digest.lower()
        object.__setattr__(self, "sha256", pinned)

    @property
    def onnx_file(self) -> str:
        """The repository path of the ONNX graph."""
        return self.files[0]

    def settings(self) -> dict[str, Any]:
        """What an embedder needs, as recorded in the manifest's ``spec``."""
        return {
            "dim": self.dim,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "normalize": self.normalize,
            "query_prefix": self.query_prefix,
            "document_prefix": self.document_prefix,
            "approx_size_mb": self.approx_size_mb,
            "description": self.description,
            "license": self.license,
        }


_ST_FILES = ("modules.json", "1_Pooling/config.json", "sentence_bert_config.json")
# The files of a sentence-transformers repository that ships its ONNX export.
_ST_ONNX_FILES = ("onnx/model.onnx", "tokenizer.json", *_ST_FILES, "config.json")

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="all-MiniLM-L6-v2",
            repo="sentence-transformers/all-MiniLM-L6-v2",
            files=_ST_ONNX_FILES,
            dim=384,
            pooling="mean",
            max_length=256,
            normalize=True,
            approx_size_mb=91,
            description="Small, fast English sentence embeddings (the default).",
            license="apache-2.0",
        ),
        ModelSpec(
            name="bge-small-en-v1.5",
            repo="BAAI/bge-small-en-v1.5",
            files=_ST_ONNX_FILES,
            dim=384,
            pooling="cls",
            max_length=512,
            normalize=True,
            query_prefix="Represent this sentence for searching relevant passages: ",
            approx_size_mb=134,
            description="Small English retrieval model; stronger than MiniLM on search.",
            license="mit",
        ),
        ModelSpec(
            name="multilingual-e5-small",
            repo="intfloat/multilingual-e5-small",
            files=_ST_ONNX_FILES,
            dim=384,
            pooling="mean",
            max_length=512,
            normalize=True,
            query_prefix="query: ",
            document_prefix="passage: ",
            approx_size_mb=471,
            description="Small multilingual retrieval model (about 100 languages).",
            license="mit",
        ),
        ModelSpec(
            name="bge-m3",
            repo="BAAI/bge-m3",
            files=(
                "onnx/model.onnx",
                "onnx/model.onnx_data",
                "tokenizer.json",
                *_ST_FILES,
                "config.json",
            ),
            dim=1024,
            pooling="cls",
            max_length=8192,
            normalize=True,
            approx_size_mb=2270,
            description="Large multilingual retrieval model with long inputs (dense vectors).",
            license="mit",
        ),
        ModelSpec(
            name="Qwen3-Embedding-0.6B",
            # The ONNX export of Qwen/Qwen3-Embedding-0.6B; the upstream repository has no ONNX.
            repo="onnx-community/Qwen3-Embedding-0.6B-ONNX",
            files=(
                "onnx/model.onnx",
                "onnx/model.onnx_data",
                "tokenizer.json",
                "tokenizer_config.json",
                "config.json",
            ),
            dim=1024,
            pooling="last_token",
            max_length=32768,
            normalize=True,
            query_prefix=(
                "Instruct: Given a web search query, retrieve relevant passages that answer"
                " the query\nQuery:"
            ),
            approx_size_mb=2400,
            description="Multilingual decoder embedding model (Qwen3-Embedding-0.6B), 32k inputs.",
            license="apache-2.0",
        ),
    )
}

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def get_spec(name: str) -> ModelSpec:
    """The registry entry of ``name``; :class:`ModelError` listing the known names if none."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise ModelError(f"unknown model {name!r}; known models: {_known()}")
    return spec


def _known() -> str:
    return ", ".join(REGISTRY) or "(none)"


# -- locations ------------------------------------------------------------------------------


def models_dir() -> Path:
    """Where models are installed: ``MAGRAY_MODELS_DIR``, else the user cache directory."""
    env = os.environ.get("MAGRAY_MODELS_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("magray", appauthor=False)) / "models"


def hub_url() -> str:
    """The model hub: ``MAGRAY_HUB_URL`` (a mirror), else ``https://huggingface.co``."""
    env = os.environ.get("MAGRAY_HUB_URL", "").strip().rstrip("/")
    return env or DEFAULT_HUB


def file_url(spec: ModelSpec, path: str, hub: str | None = None) -> str:
    """``{hub}/{repo}/resolve/{revision}/{path}``, quoted for a URL."""
    base = (hub if hub is not None else hub_url()).rstrip("/")
    quote = urllib.parse.quote
    return (
        f"{base}/{quote(spec.repo, safe='/')}/resolve/{quote(spec.revision, safe='')}"
        f"/{quote(path, safe='/')}"
    )


# -- installed models -----------------------------------------------------------------------


def installed(name: str) -> Path | None:
    """The directory of the installed model ``name``, or None if it is not installed."""
    if not _valid_name(name):
        return None
    path = models_dir() / name
    return path if (path / MANIFEST).is_file() else None


def _installed_dirs() -> list[Path]:
    root = models_dir()
    if not root.is_dir():
        return []
    return sorted(
        (p for p in root.iterdir() if _valid_name(p.name) and (p / MANIFEST).is_file()),
        key=lambda p: p.name.lower(),
    )


def _read_json(path: Path) -> Any:
    """The JSON in ``path``, or None if the file is missing or is not valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _read_manifest(model_dir: Path) -> dict[str, Any]:
    data = _read_json(model_dir / MANIFEST)
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise ModelError(
            f"the manifest {MANIFEST} of model {model_dir.name!r} is missing or damaged;"
            f" remove the model and install it again"
        )
    return data


def _find_onnx(model_dir: Path) -> str | None:
    for rel in _ONNX_PATHS:
        if (model_dir / rel).is_file():
            return rel
    return None


def _missing_layout(model_dir: Path) -> list[str]:
    missing = []
    if _find_onnx(model_dir) is None:
        missing.append("an ONNX graph (model.onnx or onnx/model.onnx)")
    if not (model_dir / "tokenizer.json").is_file():
        missing.append("tokenizer.json")
    return missing


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """The directory of a model: an installed name, or the path of a model directory.

    Raises :class:`ModelError` saying how to install the model when it is neither.
    """
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, str):
        found = installed(name_or_path)
        if found is not None:
            return found
    candidate = Path(text).expanduser()
    if candidate.is_dir():
        missing = _missing_layout(candidate)
        if not missing:
            return candidate.resolve()
        if text not in REGISTRY:
            raise ModelError(f"{text} is not a model directory: it lacks {' and '.join(missing)}")
    if text in REGISTRY:
        spec = REGISTRY[text]
        raise ModelError(
            f"model {text!r} is not installed; download it (about {spec.approx_size_mb} MB)"
            f" with `magray models pull {text}`"
        )
    raise ModelError(
        f"no model {text!r}: it is neither an installed model nor a model directory;"
        f" known models: {_known()}; install one with `magray models pull NAME`,"
        " or a local copy with `magray models import DIR`"
    )


def model_settings(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of the model in ``model_dir`` (dim, pooling, max_length, normalize,
    prefixes, ...) and ``onnx``, the path of its graph relative to the directory.

    Taken from the manifest when there is one, else read from the sentence-transformers
    files in the directory.
    """
    path = Path(model_dir)
    manifest = _read_json(path / MANIFEST)
    if isinstance(manifest, dict) and isinstance(manifest.get("spec"), dict):
        settings = dict(manifest["spec"])
        settings["onnx"] = manifest.get("onnx") or _find_onnx(path)
        return settings
    missing = _missing_layout(path)
    if missing:
        raise ModelError(f"{path} is not a model directory: it lacks {' and '.join(missing)}")
    settings = _infer_settings(path, path.name)
    settings["onnx"] = _find_onnx(path)
    return settings


def list_models() -> list[dict[str, Any]]:
    """Every registry model and every other installed (imported) model.

    Keys: name, installed, path (None when not installed), dim, approx_size_mb, description,
    default (the default model), source ("registry" or "import").
    """
    rows: list[dict[str, Any]] = []
    for spec in REGISTRY.values():
        path = installed(spec.name)
        rows.append(
            {
                "name": spec.name,
                "installed": path is not None,
                "path": str(path) if path is not None else None,
                "dim": spec.dim,
                "approx_size_mb": spec.approx_size_mb,
                "description": spec.description,
                "default": spec.name == DEFAULT_MODEL,
                "source": "registry",
            }
        )
    for path in _installed_dirs():
        if path.name in REGISTRY:
            continue
        try:
            manifest = _read_manifest(path)
        except ModelError:
            manifest = {"files": {}}
        settings = manifest.get("spec")
        if not isinstance(settings, dict):
            settings = {}
        rows.append(
            {
                "name": path.name,
                "installed": True,
                "path": str(path),
                "dim": settings.get("dim"),
                "approx_size_mb": round(_manifest_bytes(manifest) / 1e6),
                "description": settings.get("description", ""),
                "default": False,
                "source": manifest.get("source", "import"),
            }
        )
    return rows


def _manifest_bytes(manifest: dict[str, Any]) -> int:
    total = 0
    for record in manifest.get("files", {}).values():
        if isinstance(record, dict) and isinstance(record.get("size"), int):
            total += record["size"]
    return total


def info(name: str) -> dict[str, Any]:
    """Everything known about a model: its registry entry and, once installed, its manifest.

    Keys include name, installed, path, repo, revision, files (path -> {size, sha256}),
    the settings (dim, pooling, max_length, normalize, query_prefix, document_prefix, ...),
    and for installed models installed_at, source and size_bytes.
    """
    path = installed(name)
    spec = REGISTRY.get(name)
    if path is None and spec is None:
        raise ModelError(
            f"unknown model {name!r}: it is neither in the registry nor installed;"
            f" known models: {_known()}"
        )
    result: dict[str, Any] = {
        "name": name,
        "installed": path is not None,
        "path": str(path) if path is not None else None,
    }
    if spec is not None:
        result.update(
            repo=spec.repo,
            revision=spec.revision,
            source="registry",
            url=file_url(spec, spec.onnx_file),
            files={f: {"size": None, "sha256": spec.sha256.get(f)} for f in spec.files},
            onnx=spec.onnx_file,
        )
        result.update(spec.settings())
    if path is not None:
        manifest = _read_manifest(path)
        settings = manifest.get("spec")
        if isinstance(settings, dict):
            result.update(settings)
        for key in ("repo", "revision", "source", "installed_at", "onnx"):
            if key in manifest:
                result[key] = manifest[key]
        result["files"] = manifest["files"]
        result["size_bytes"] = _manifest_bytes(manifest)
    return result


def verify(name: str | None = None) -> list[tuple[str, bool, list[str]]]:
    """Re-hash installed files against their manifests.

    Checks the model ``name``, or every installed model when None. Returns
    ``(name, ok, problems)`` per model; ``problems`` describes each missing, resized or
    altered file.
    """
    if name is None:
        targets = _installed_dirs()
    else:
        path = installed(name)
        if path is None:
            raise ModelError(f"model {name!r} is not installed; {_installed_hint()}")
        targets = [path]
    results: list[tuple[str, bool, list[str]]] = []
    for model_dir in targets:
        problems = _check_model(model_dir)
        results.append((model_dir.name, not problems, problems))
    return results


def _check_model(model_dir: Path) -> list[str]:
    try:
        manifest = _read_manifest(model_dir)
    except ModelError as exc:
        return [str(exc)]
    problems: list[str] = []
    for rel, record in sorted(manifest["files"].items()):
        if not isinstance(record, dict):
            problems.append(f"{rel}: the manifest entry is damaged")
            continue
        path = model_dir / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
            continue
        size = path.stat().st_size
        if size != record.get("size"):
            problems.append(f"{rel}: {size} bytes, the manifest says {record.get('size')}")
            continue
        digest = _sha256_file(path)
        if digest != record.get("sha256"):
            problems.append(
                f"{rel}: sha256 {digest} does not match the manifest's {record.get('sha256')}"
            )
    problems += [f"{item}: missing" for item in _missing_layout(model_dir)]
    return problems


def _installed_hint() -> str:
    names = [p.name for p in _installed_dirs()]
    return f"installed models: {', '.join(names)}" if names else "no models are installed"


def remove(name: str) -> None:
    """Delete the installed model ``name``; :class:`ModelError` if it is not installed."""
    path = installed(name)
    if path is None:
        raise ModelError(f"model {name!r} is not installed; {_installed_hint()}")
    root = path.parent
    with _name_lock(root, name):
        trash = root / f".{name}.removing-{uuid.uuid4().hex[:8]}"
        os.replace(path, trash)
        _fsync_dir(root)
        shutil.rmtree(trash, ignore_errors=True)


# -- files ----------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, _files in os.walk(root):
        _fsync_dir(Path(dirpath))


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def _name_lock(root: Path, name: str) -> Iterator[None]:
    """Hold the lock of one model name, so that two processes never install it at once."""
    if sys.platform == "win32":
        yield
        return
    fd = os.open(root / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModelError(
                f"model {name!r} is being installed or removed by another process;"
                " wait for it to finish and try again"
            ) from None
        yield
    finally:
        os.close(fd)


def _install(staging: Path, final: Path) -> None:
    """Rename the complete ``staging`` directory to ``final``, replacing an older install."""
    _fsync_tree(staging)
    old: Path | None = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    try:
        os.replace(staging, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    _fsync_dir(final.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _manifest(
    *,
    name: str,
    repo: str | None,
    revision: str | None,
    source: str,
    onnx: str,
    files: dict[str, dict[str, Any]],
    settings: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "repo": repo,
        "revision": revision,
        "source": source,
        "onnx": onnx,
        "files": dict(sorted(files.items())),
        "spec": settings,
        "installed_at": _now(),
    }


# -- import ---------------------------------------------------------------------------------


def import_dir(src: str | os.PathLike[str], name: str | None = None) -> Path:
    """Install a copy of the local model directory ``src`` as ``name`` (default: its name).

    The directory needs an ONNX graph (``model.onnx`` or ``onnx/model.onnx``) and
    ``tokenizer.json``. Dimension, pooling, maximum length and normalisation are read from the
    sentence-transformers files when present (``config.json``'s ``hidden_size`` is the
    fallback dimension); a registry name supplies the rest (prefixes, description). Every
    file except hidden ones is copied and hashed; the copy is installed atomically.
    """
    source = Path(src).expanduser()
    if not source.is_dir():
        raise ModelError(f"{source} is not a directory; give the path of a model directory")
    missing = _missing_layout(source)
    if missing:
        raise ModelError(
            f"{source} is not a model directory: it lacks {' and '.join(missing)};"
            " a model needs an ONNX export in the Hugging Face layout"
        )
    model_name = name if name is not None else source.resolve().name
    _check_name(model_name)
    onnx = _find_onnx(source)
    assert onnx is not None
    settings = _infer_settings(source, model_name)
    spec = REGISTRY.get(model_name)
    root = models_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / model_name
    with _name_lock(root, model_name):
        staging = root / f".{model_name}.import-{uuid.uuid4().hex[:8]}"
        try:
            staging.mkdir()
            files = _copy_tree(source, staging)
            manifest = _manifest(
                name=model_name,
                repo=spec.repo if spec is not None else None,
                revision=None,
                source="import",
                onnx=onnx,
                files=files,
                settings=settings,
            )
            manifest["imported_from"] = str(source.resolve())
            _write_json(staging / MANIFEST, manifest)
            _install(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return final


def _copy_tree(source: Path, dest: Path) -> dict[str, dict[str, Any]]:
    """Copy every regular file of ``source`` (links followed, hidden names skipped) to
    ``dest``, hashing as it goes; returns relative path -> {size, sha256}."""
    files: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        rel_dir = here.relative_to(source)
        for fname in sorted(filenames):
            if fname.startswith(".") or fname.endswith(".part") or fname == MANIFEST:
                continue
            rel = (rel_dir / fname).as_posix()
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                files[rel] = _copy_hashed(here / fname, target)
            except OSError as exc:
                raise ModelError(f"cannot copy {rel} from {source}: {exc}") from exc
    return files


def _copy_hashed(src: Path, dst: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return {"size": size, "sha256": digest.hexdigest()}


def _positive_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _infer_settings(model_dir: Path, name: str) -> dict[str, Any]:
    """Settings of a model directory from its sentence-transformers and config files."""
    spec = REGISTRY.get(name)
    settings: dict[str, Any]
    if spec is not None:
        settings = spec.settings()
    else:
        settings = {
            "dim": None,
            "pooling": "mean",
            "max_length": 512,
            "normalize": True,
            "query_prefix": "",
            "document_prefix": "",
            "approx_size_mb": None,
            "description": f"imported model {name}",
            "license": "",
        }
    pooling_dir = "1_Pooling"
    modules = _read_json(model_dir / "modules.json")
    if isinstance(modules, list):
        types = [str(m.get("type", "")) for m in modules if isinstance(m, dict)]
        settings["normalize"] = any(t.endswith("Normalize") for t in types)
        for module in modules:
            if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
                pooling_dir = str(module.get("path") or pooling_dir)
    pooling_cfg = _read_json(model_dir / pooling_dir / "config.json")
    dim: int | None = None
    if isinstance(pooling_cfg, dict):
        dim = _positive_int(pooling_cfg.get("word_embedding_dimension"))
        if pooling_cfg.get("pooling_mode_cls_token"):
            settings["pooling"] = "cls"
        elif pooling_cfg.get("pooling_mode_lasttoken"):
            settings["pooling"] = "last_token"
        elif pooling_cfg.get("pooling_mode_mean_tokens"):
            settings["pooling"] = "mean"
        elif pooling_cfg.get("pooling_mode_max_tokens") or pooling_cfg.get(
            "pooling_mode_mean_sqrt_len_tokens"
        ):
            raise ModelError(
                f"{model_dir} pools with max or sqrt-length pooling, which magray does not"
                " support (it supports mean, cls and last-token pooling)"
            )
    config = _read_json(model_dir / "config.json")
    if dim is None and isinstance(config, dict):
        dim = _positive_int(config.get("hidden_size")) or _positive_int(config.get("d_model"))
    if dim is not None:
        settings["dim"] = dim
    max_length: int | None = None
    sbert = _read_json(model_dir / "sentence_bert_config.json")
    if isinstance(sbert, dict):
        max_length = _positive_int(sbert.get("max_seq_length"))
    if max_length is None and spec is None:
        tok_cfg = _read_json(model_dir / "tokenizer_config.json")
        if isinstance(tok_cfg, dict):
            limit = _positive_int(tok_cfg.get("model_max_length"))
            if limit is not None and limit <= 1_000_000:  # huge values mean "no limit set"
                max_length = limit
        if max_length is None and isinstance(config, dict):
            max_length = _positive_int(config.get("max_position_embeddings"))
    if max_length is not None:
        settings["max_length"] = max_length
    return settings


# -- download -------------------------------------------------------------------------------


class _Transient(OSError):
    """A failure worth retrying: a dropped connection, a server error."""


class _RedirectRecorder(urllib.request.HTTPRedirectHandler):
    """Follows redirects like the default handler, keeping the sha256 a hop announces in
    ``X-Linked-Etag`` (the hub sends it on the redirect to its file storage)."""

    def __init__(self) -> None:
        super().__init__()
        self.linked_sha256: str | None = None

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        digest = _etag_sha256(headers.get("X-Linked-Etag"))
        if digest is not None:
            self.linked_sha256 = digest
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _etag_sha256(value: str | None) -> str | None:
    """The sha256 in an ETag-like header value, or None if it does not hold one."""
    if not value:
        return None
    text = value.strip()
    if text[:2] in ("W/", "w/"):
        text = text[2:].strip()
    text = text.strip('"').strip().lower()
    return text if _SHA256.fullmatch(text) else None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a Content-Range header; None for what it does not say."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if match is None:
        return None, None
    first = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return first, total


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class _Staging:
    """The staging directory of one download and its record of verified files."""

    def __init__(self, path: Path, spec: ModelSpec) -> None:
        self.path = path
        self.spec = spec
        state = _read_json(path / _STATE) if path.is_dir() else None
        same = (
            isinstance(state, dict)
            and state.get("repo") == spec.repo
            and state.get("revision") == spec.revision
        )
        if path.exists() and not same:
            shutil.rmtree(path)  # another source, or an unreadable record: start afresh
        path.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, dict[str, Any]] = {}
        self.announced: dict[str, str] = {}
        if same and isinstance(state, dict):
            done = state.get("done")
            announced = state.get("announced")
            if isinstance(done, dict):
                self.done = {k: v for k, v in done.items() if isinstance(v, dict)}
            if isinstance(announced, dict):
                self.announced = {k: v for k, v in announced.items() if isinstance(v, str)}
        self.save()

    def save(self) -> None:
        _write_json(
            self.path / _STATE,
            {
                "repo": self.spec.repo,
                "revision": self.spec.revision,
                "done": self.done,
                "announced": self.announced,
            },
        )


@dataclass
class _Job:
    """One file being downloaded, across its attempts."""

    rel: str
    url: str
    part: Path
    timeout: float
    report: Callable[[int, int | None], None]
    announced: str | None = None
    total: int | None = None
    attempts_made: int = 0

    def note_sha256(self, digest: str | None) -> None:
        """Keep the sha256 the server announced; if it changed, the part is stale."""
        if digest is None:
            return
        if self.announced is not None and digest != self.announced:
            self.announced = digest
            _truncate(self.part)
            raise _Transient(f"{self.rel} changed on the server; starting it over")
        self.announced = digest


def _truncate(path: Path) -> None:
    with open(path, "wb"):
        pass


def _http_failure(exc: urllib.error.HTTPError, job: _Job, model: str) -> Exception:
    code = exc.code
    if code >= 500 or code in (408, 429):
        return _Transient(f"HTTP {code} {exc.reason} from the server")
    if code == 404:
        return ModelDownloadError(
            f"{job.rel} of model {model!r} was not found at {job.url} (HTTP 404);"
            " the mirror may not have it, or the repository has changed"
        )
    if code in (401, 403):
        return ModelDownloadError(
            f"access to {job.url} was refused (HTTP {code}); the repository may be gated or"
            " private: download it yourself and run `magray models import DIR`"
        )
    return ModelDownloadError(f"downloading {job.url} failed with HTTP {code} {exc.reason}")


def _attempt(job: _Job, model: str) -> None:
    """One try at completing ``job.part``: resumes it with a Range request if it has bytes."""
    job.attempts_made += 1
    offset = job.part.stat().st_size if job.part.exists() else 0
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(job.url, headers=headers)
    recorder = _RedirectRecorder()
    opener = urllib.request.build_opener(recorder)
    try:
        response = opener.open(request, timeout=job.timeout)
    except urllib.error.HTTPError as exc:
        with contextlib.closing(exc):
            if exc.code == 416 and offset:
                # Nothing after the bytes we hold: the part may already be complete.
                job.note_sha256(
                    recorder.linked_sha256
                    or _etag_sha256(exc.headers.get("X-Linked-Etag"))
                    or _etag_sha256(exc.headers.get("ETag"))
                )
                _first, total = _content_range(exc.headers.get("Content-Range"))
                if total is None or total == offset:
                    job.total = offset
                    job.report(offset, offset)
                    return
                _truncate(job.part)
                raise _Transient(
                    f"the partial {job.rel} is larger than the file on the server; starting over"
                ) from None
            raise _http_failure(exc, job, model) from None
    except http.client.HTTPException as exc:
        raise _Transient(f"bad HTTP reply ({type(exc).__name__}: {exc})") from exc
    with response:
        hdrs = response.headers
        job.note_sha256(
            recorder.linked_sha256
            or _etag_sha256(hdrs.get("X-Linked-Etag"))
            or _etag_sha256(hdrs.get("ETag"))
        )
        length = _int_header(hdrs.get("Content-Length"))
        status = response.status if response.status is not None else 200  # file:// mirrors
        if status == 206 and offset:
            first, total = _content_range(hdrs.get("Content-Range"))
            if first != offset:
                _truncate(job.part)
                raise _Transient(f"the server resumed {job.rel} at the wrong offset")
            mode, done = "ab", offset
            job.total = (
                total if total is not None else (offset + length if length is not None else None)
            )
        elif status == 200:
            mode, done = "wb", 0  # a fresh file, or a server that ignored the Range request
            job.total = length
        else:
            raise ModelDownloadError(
                f"unexpected HTTP {status} reply for {job.url}; expected the file's content"
            )
        received = 0
        job.report(done, job.total)
        with open(job.part, mode) as out:
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    done += len(chunk)
                    job.report(done, job.total)
            except http.client.HTTPException as exc:
                raise _Transient(f"the transfer broke off ({type(exc).__name__})") from exc
            finally:
                out.flush()
                os.fsync(out.fileno())
        if length is not None and received < length:
            raise _Transient(
                f"the connection closed after {received} of {length} bytes of {job.rel}"
            )


def _describe(exc: BaseException, timeout: float) -> str:
    reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "the host name could not be resolved"
    if isinstance(reason, ConnectionError):
        return "the connection was dropped"
    return str(reason) or type(reason).__name__


class _Progress:
    """Reports download progress to a callback, a rich progress bar on a terminal, or not."""

    def __init__(self, progress: bool | ProgressCallback) -> None:
        self._callback: ProgressCallback | None = None
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}
        if callable(progress):
            self._callback = progress
        elif progress is True and sys.stderr is not None and sys.stderr.isatty():
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    DownloadColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                    TransferSpeedColumn,
                )
            except ImportError:  # rich is optional: no bar without it
                return

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, rel: str, done: int, total: int | None) -> None:
        if self._callback is not None:
            self._callback(rel, done, total)
        elif self._bar is not None:
            task = self._tasks.get(rel)
            if task is None:
                task = self._tasks[rel] = self._bar.add_task(rel, total=total)
            self._bar.update(task, completed=done, total=total)


def pull(
    name: str,
    *,
    progress: bool | ProgressCallback = True,
    timeout: float = 20.0,
    attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    force: bool = False,
) -> Path:
    """Download the registry model ``name`` into :func:`models_dir` and return its directory.

    ``progress``: True shows a progress bar when stderr is a terminal; a callable is called
    as ``progress(file, done_bytes, total_bytes)``; False shows nothing. ``timeout`` bounds
    every connect and every read, in seconds; each file gets ``attempts`` tries, with
    exponential backoff between them (``sleep`` waits). An installed model whose manifest
    matches the registry entry is returned as it is unless ``force``.

    Raises :class:`ModelDownloadError` when the server cannot be reached, a file is refused,
    or a file fails its sha256 check (nothing is installed then), and :class:`ModelError`
    for an unknown name.
    """
    spec = get_spec(name)
    if not timeout > 0:
        raise InvalidInputError(f"timeout must be > 0 seconds, got {timeout!r}")
    if not force:
        current = installed(spec.name)
        if current is not None and _matches(current, spec):
            return current
    root = models_dir()
    root.mkdir(parents=True, exist_ok=True)
    hub = hub_url()
    final = root / spec.name
    with _name_lock(root, spec.name), _Progress(progress) as report:
        staging = _Staging(root / f".{spec.name}.download", spec)
        try:
            records = {
                rel: _pull_file(spec, rel, staging, hub, report, timeout, attempts, sleep)
                for rel in spec.files
            }
        except BaseException:
            if staging.path.is_dir() and not _worth_keeping(staging.path):
                shutil.rmtree(staging.path, ignore_errors=True)
            raise
        manifest = _manifest(
            name=spec.name,
            repo=spec.repo,
            revision=spec.revision,
            source="hub",
            onnx=spec.onnx_file,
            files=records,
            settings=spec.settings(),
        )
        manifest["hub"] = hub
        (staging.path / _STATE).unlink()
        _write_json(staging.path / MANIFEST, manifest)
        _install(staging.path, final)
    return final


def _worth_keeping(staging: Path) -> bool:
    """Does a stopped download hold any bytes that the next pull could reuse?"""
    for dirpath, _dirs, files in os.walk(staging):
        for fname in files:
            if fname != _STATE and (Path(dirpath) / fname).stat().st_size > 0:
                return True
    return False


def _matches(model_dir: Path, spec: ModelSpec) -> bool:
    """Is this install of the registry model current (same source, every file present)?"""
    try:
        manifest = _read_manifest(model_dir)
    except ModelError:
        return False
    files = manifest["files"]
    if manifest.get("repo") != spec.repo or manifest.get("revision") != spec.revision:
        return False
    for rel in spec.files:
        record = files.get(rel)
        if not isinstance(record, dict) or not (model_dir / rel).is_file():
            return False
        pinned = spec.sha256.get(rel)
        if pinned is not None and record.get("sha256") != pinned:
            return False
    return True


def _pull_file(
    spec: ModelSpec,
    rel: str,
    staging: _Staging,
    hub: str,
    report: _Progress,
    timeout: float,
    attempts: int,
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    """Download one file into the staging directory, verify it, and return its record."""
    dest = staging.path / rel
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    pinned = spec.sha256.get(rel)

    # Verified by an earlier, interrupted pull: keep it if it is intact.
    record = staging.done.get(rel)
    if record is not None and dest.is_file() and dest.stat().st_size == record.get("size"):
        digest = _sha256_file(dest)
        if digest == record.get("sha256") and pinned in (None, digest):
            report(rel, record["size"], record["size"])
            return record
    dest.unlink(missing_ok=True)
    if staging.done.pop(rel, None) is not None:
        staging.save()

    url = file_url(spec, rel, hub)
    job = _Job(
        rel=rel,
        url=url,
        part=part,
        timeout=timeout,
        report=lambda done, total: report(rel, done, total),
        announced=staging.announced.get(rel),
    )

    def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
        _log.info(
            "downloading %s of %s failed (%s); retry %d of %d in %.1f s",
            rel,
            spec.name,
            _describe(exc, timeout),
            attempt,
            attempts - 1,
            delay,
        )

    try:
        retry(
            lambda: _attempt(job, spec.name),
            attempts=attempts,
            retry_on=(OSError,),
            give_up_on=(ModelError,),
            sleep=sleep,
            on_retry=on_retry,
        )
    except OSError as exc:
        host = urllib.parse.urlsplit(url).netloc or hub
        raise ModelDownloadError(
            f"could not download {rel} of model {spec.name!r} from {host} after"
            f" {job.attempts_made} attempt{'s' if job.attempts_made != 1 else ''}"
            f" ({_describe(exc, timeout)}); {_OFFLINE_HINT}"
        ) from exc
    finally:
        if job.announced is not None and staging.announced.get(rel) != job.announced:
            staging.announced[rel] = job.announced
            with contextlib.suppress(OSError):
                staging.save()

    actual = _sha256_file(part)
    expected = pinned if pinned is not None else job.announced
    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        shutil.rmtree(staging.path, ignore_errors=True)
        where = "pinned in the registry" if pinned is not None else "announced by the server"
        raise ModelDownloadError(
            f"{rel} of model {spec.name!r} failed its checksum: expected sha256 {expected}"
            f" ({where}), got {actual}; the download was discarded and nothing was installed,"
            f" so run `magray models pull {spec.name}` again or use another mirror"
        )
    os.replace(part, dest)
    size = dest.stat().st_size
    record = {
        "size": size,
        "sha256": actual,
        "verified": "pinned"
        if pinned is not None
        else ("server" if expected is not None else "recorded"),
    }
    staging.done[rel] = record
    staging.save()
    report(rel, size, size)
    return record
