"""Embedding models: a registry, installs from the Hugging Face hub and cache, local imports.

A model is a directory in the Hugging Face layout: an ONNX graph (``model.onnx`` or
``onnx/model.onnx``), ``tokenizer.json`` and, optionally, the sentence-transformers files that
say how to pool and normalise (``modules.json``, ``1_Pooling/config.json``,
``sentence_bert_config.json``) and ``config.json``. Installed models live in
:func:`models_dir`, one directory per name, each with a manifest ``magray-model.json`` that
records the size and sha256 of every file and the settings an embedder needs.

Where files come from
---------------------
:func:`pull` fetches a registry model with ``huggingface_hub`` into the Hugging Face cache
(:func:`hf_cache_dir`), the one that transformers, sentence-transformers and the ``hf``
command share, so a model any of them already downloaded is used with no network at all
(:func:`from_hf_cache`). ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HOME`` and ``HF_HUB_OFFLINE``
mean what they mean to those tools. Each file is checked against the registry's pinned
sha256, else against the id the hub announced and the cache names the blob by (the sha256
of a large file, the git blob id of a small one); the install is then a directory of links
into the cache plus the manifest, renamed into place only when complete, so an install is
either whole or absent. :func:`import_dir` copies a local directory instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from magray.errors import InvalidInputError, ModelDownloadError, ModelError

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
    "from_hf_cache",
    "get_spec",
    "hf_cache_dir",
    "hub_url",
    "import_dir",
    "info",
    "installed",
    "list_models",
    "model_settings",
    "models_dir",
    "offline",
    "pull",
    "remove",
    "resolve",
    "usable",
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
_GIT_ID = re.compile(r"[0-9a-f]{40}")
_TRUE = frozenset({"1", "ON", "YES", "TRUE"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
_ONNX_PATHS = ("model.onnx", "onnx/model.onnx")  # the embedder looks in this order


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
        or path == MANIFEST
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
    """The directory of a model: an installed name, a registry model in the Hugging Face
    cache (installed from there, see :func:`from_hf_cache`), or a model directory's path.

    Raises :class:`ModelError` saying how to install the model when it is neither.
    """
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, str):
        found = usable(name_or_path)
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


def usable(name: str) -> Path | None:
    """The directory of model ``name``: installed, or a registry model found in the Hugging
    Face cache (installed from there, see :func:`from_hf_cache`); None when neither.

    Raises :class:`ModelError` when the model is installed but its files are gone (links
    into a Hugging Face cache that was cleaned), saying how to get them back.
    """
    found = installed(name) or from_hf_cache(name)
    if found is None:
        return None
    missing = _missing_layout(found)
    if missing:
        raise ModelError(
            f"model {name!r} is installed but {' and '.join(missing)} is gone (was the"
            " Hugging Face cache cleaned?); install it again with"
            f" `magray models pull {name} --force`"
        )
    return found


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

    Keys: name, installed, in_hf_cache (not installed, but every file is in the Hugging Face
    cache, so the first use installs it with no download), path (None when not installed),
    dim, approx_size_mb, description, default (the default model), source ("registry" or
    "import").
    """
    rows: list[dict[str, Any]] = []
    cache = hf_cache_dir()
    for spec in REGISTRY.values():
        path = installed(spec.name)
        rows.append(
            {
                "name": spec.name,
                "installed": path is not None,
                "in_hf_cache": path is None and _cached_files(spec, cache) is not None,
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
                "in_hf_cache": False,
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
    if not problems:  # a manifest that does not list the graph or the tokenizer
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


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache that ``huggingface_hub`` and the tools built on it share.

    ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else
    ``~/.cache/huggingface/hub``: the library's own rules, read at each call so that a
    changed environment takes effect in a running process.
    """
    env = os.environ.get("HF_HUB_CACHE", "").strip()
    if env:
        return Path(os.path.expandvars(env)).expanduser()
    home = os.environ.get("HF_HOME", "").strip()
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip() or "~/.cache"
        home = os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hub_url() -> str:
    """The hub endpoint: ``MAGRAY_HUB_URL``, else ``HF_ENDPOINT`` (a mirror), else
    ``https://huggingface.co``."""
    for var in ("MAGRAY_HUB_URL", "HF_ENDPOINT"):
        env = os.environ.get(var, "").strip().rstrip("/")
        if env:
            return env
    return DEFAULT_HUB


def _hub_variable() -> str:
    """The variable that sets the hub now: the one a user should change."""
    return "MAGRAY_HUB_URL" if os.environ.get("MAGRAY_HUB_URL", "").strip() else "HF_ENDPOINT"


def offline() -> bool:
    """Is Hugging Face offline mode on (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)?"""
    return any(
        os.environ.get(var, "").strip().upper() in _TRUE
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _commit_of(pointer: Path, rel: str) -> str:
    """The commit of a snapshot file: ``.../snapshots/{commit}/{rel}``."""
    return pointer.parents[rel.count("/")].name


def _cached_files(spec: ModelSpec, cache_dir: Path) -> dict[str, Path] | None:
    """Every file of ``spec`` in the Hugging Face cache, or None if any is missing."""
    if not (cache_dir / f"models--{spec.repo.replace('/', '--')}").is_dir():
        return None  # not even the repository: skip importing the library
    from huggingface_hub import try_to_load_from_cache

    found: dict[str, Path] = {}
    for rel in spec.files:
        path = try_to_load_from_cache(
            spec.repo, rel, cache_dir=str(cache_dir), revision=spec.revision
        )
        if not isinstance(path, str) or not os.path.isfile(path):
            return None
        found[rel] = Path(path)
    if len({_commit_of(p, rel) for rel, p in found.items()}) != 1:
        return None  # files of different commits: not one coherent snapshot
    return found


def _hashes(path: Path, *, git: bool) -> tuple[int, str, str | None]:
    """Size, sha256 and (with ``git``) the git blob id of the file at ``path``."""
    size = path.stat().st_size
    sha = hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\0" % size) if git else None
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            if blob is not None:
                blob.update(chunk)
    return size, sha.hexdigest(), blob.hexdigest() if blob is not None else None


def _check_cached(spec: ModelSpec, rel: str, pointer: Path) -> dict[str, Any]:
    """Hash a file of the Hugging Face cache; its manifest record.

    The cache names each blob by the id the hub announced: the sha256 of a large (LFS)
    file, the git blob id of a small one. A blob whose content does not match its own name
    is damaged: it is removed from the cache, so that the next download fetches it afresh.
    A registry pin is checked as well; a file that matches the hub but not the pin (the
    repository changed upstream) stays in the cache, which other tools share, and is not
    installed.
    """
    blob = pointer.resolve()
    pinned = spec.sha256.get(rel)
    git = _GIT_ID.fullmatch(blob.name) is not None
    size, digest, git_id = _hashes(pointer, git=git)
    announced = _SHA256.fullmatch(blob.name) is not None or git
    actual = git_id if git else digest
    if announced and actual != blob.name:
        for path in (pointer, blob):
            with contextlib.suppress(OSError):
                path.unlink()
        kind = "git blob id" if git else "sha256"
        raise ModelDownloadError(
            f"{rel} of model {spec.name!r} failed its checksum: expected {kind} {blob.name}"
            f" (announced by the hub), got {actual}; the file was removed from the Hugging"
            f" Face cache and nothing was installed, so run `magray models pull {spec.name}`"
            f" again or use another mirror ({_hub_variable()})"
        )
    if pinned is not None and digest != pinned:
        raise ModelDownloadError(
            f"{rel} of model {spec.name!r} has sha256 {digest} where the registry pins"
            f" {pinned}: the repository {spec.repo} changed upstream; nothing was installed"
            " (the Hugging Face cache keeps the file), so use a magray release that pins the"
            " new file, or install a copy you trust with `magray models import DIR`"
        )
    how = "pinned" if pinned is not None else ("server" if announced else "recorded")
    return {"size": size, "sha256": digest, "verified": how}


def _link(target: Path, dest: Path) -> None:
    """Point ``dest`` at ``target``; a copy where the file system has no symbolic links."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(target, dest)
    except OSError:
        shutil.copyfile(target, dest)


def _reporter(progress: bool | ProgressCallback, rel: str) -> Any:
    """The ``tqdm_class`` for one file's download: the library's own bars on a terminal,
    else a silent bar that forwards the byte counts to ``progress`` when it is callable."""
    if progress is True and sys.stderr is not None and sys.stderr.isatty():
        return None
    from huggingface_hub.utils.tqdm import tqdm as hf_tqdm

    callback = progress if callable(progress) else None

    class _Report(hf_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
            total = kwargs.get("total")
            self.size: int | None = int(total) if total is not None else None
            self.count = int(kwargs.get("initial") or 0)
            if callback is not None:
                callback(rel, self.count, self.size)

        def update(self, n: float | None = 1) -> bool | None:
            self.count += int(n or 0)
            if callback is not None:
                callback(rel, self.count, self.size)
            return None

    return _Report


def _describe(exc: BaseException) -> str:
    """A short reason for a failed transfer, for one sentence of advice."""
    name = type(exc).__name__
    text = str(exc)
    if "Timeout" in name or isinstance(exc, TimeoutError):
        return "the hub did not answer in time"
    if "refused" in text.lower():
        return "connection refused"
    if "resolve" in text.lower() or "Name or service not known" in text:
        return "the host name could not be resolved"
    if "ConnectError" in name or "RemoteProtocolError" in name or isinstance(exc, ConnectionError):
        return "the connection failed or was dropped"
    return text.splitlines()[0] if text else name


def _download_error(exc: BaseException, spec: ModelSpec, rel: str, hub: str) -> ModelError:
    """The one-sentence error for a download of ``rel`` that failed with ``exc``."""
    from huggingface_hub import errors

    host = urllib.parse.urlsplit(hub).netloc or hub
    model = f"model {spec.name!r}"
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return ModelDownloadError(
            f"{model} is not in the Hugging Face cache and offline mode is on; unset"
            " HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to download it, or install a local"
            " copy with `magray models import DIR`"
        )
    if isinstance(exc, errors.GatedRepoError | errors.RepositoryNotFoundError):
        code = exc.response.status_code if exc.response is not None else "?"
        return ModelDownloadError(
            f"{host} refused access to {spec.repo} (HTTP {code}): the repository is gated,"
            " private or absent; set HF_TOKEN to a token that may read it, or download it"
            " yourself and run `magray models import DIR`"
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return ModelDownloadError(
            f"{host} has no revision {spec.revision!r} of {spec.repo}; the mirror may be out"
            " of date"
        )
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return ModelDownloadError(
            f"{rel} of {model} was not found on {host} (HTTP 404); the mirror may not have"
            " it, or the repository has changed"
        )
    if isinstance(exc, errors.HfHubHTTPError) and exc.response is not None:
        return ModelDownloadError(
            f"downloading {rel} of {model} from {host} failed with HTTP"
            f" {exc.response.status_code}; try again later, or set {_hub_variable()} to a mirror"
        )
    return ModelDownloadError(
        f"could not download {rel} of {model} from {host} ({_describe(exc)}); check the"
        f" network connection, set {_hub_variable()} to a reachable mirror, or install a"
        " local copy with `magray models import DIR`"
    )


def _download(
    spec: ModelSpec,
    cache_dir: Path,
    hub: str,
    progress: bool | ProgressCallback,
    timeout: float,
    force: bool,
) -> dict[str, Path]:
    """Download the files of ``spec`` into the Hugging Face cache with ``huggingface_hub``."""
    import httpx2
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    from magray import __version__

    found: dict[str, Path] = {}
    rel = spec.onnx_file
    # The library logs a multi-line warning for every resumed transfer; the progress bar
    # and the one-line error say what matters.
    library_log = logging.getLogger("huggingface_hub")
    level = library_log.level
    library_log.setLevel(logging.ERROR)
    try:
        # One metadata request without retries first: an unreachable hub fails within
        # `timeout`, where the library would back off and retry for half a minute.
        url = hf_hub_url(spec.repo, rel, revision=spec.revision, endpoint=hub)
        get_hf_file_metadata(
            url,
            timeout=timeout,
            endpoint=hub,
            library_name="magray",
            library_version=__version__,
        )
        for rel in spec.files:
            path = hf_hub_download(
                spec.repo,
                rel,
                revision=spec.revision,
                cache_dir=cache_dir,
                endpoint=hub,
                etag_timeout=timeout,
                force_download=force,
                tqdm_class=_reporter(progress, rel),
                library_name="magray",
                library_version=__version__,
            )
            found[rel] = Path(path)
    except (OSError, httpx2.HTTPError) as exc:  # the library's errors are OSErrors
        raise _download_error(exc, spec, rel, hub) from exc
    finally:
        library_log.setLevel(level)
    return found


def pull(
    name: str,
    *,
    progress: bool | ProgressCallback = True,
    timeout: float = 10.0,
    force: bool = False,
) -> Path:
    """Install the registry model ``name`` from the Hugging Face hub; its directory.

    Files come through the Hugging Face cache (:func:`hf_cache_dir`) that
    ``huggingface_hub``, transformers and sentence-transformers share: a model already there
    is used without touching the network, and a download lands there for the other tools.
    ``huggingface_hub`` resumes a transfer that breaks off with ``Range`` requests within
    this call (a partial file does not survive the process). Every file is then checked
    against the registry's pinned sha256, else the sha256 or git blob id the hub announced,
    and the install in :func:`models_dir` is a directory of links into the cache with a
    manifest, made atomically.

    ``progress``: True shows the library's progress bars when stderr is a terminal; a
    callable is called as ``progress(file, done_bytes, total_bytes)``; False shows nothing.
    ``timeout`` bounds each metadata request, in seconds (``HF_HUB_DOWNLOAD_TIMEOUT`` bounds
    each read of a transfer). ``HF_ENDPOINT`` picks a mirror, ``HF_TOKEN`` authenticates and
    ``HF_HUB_OFFLINE=1`` forbids the network. An installed model whose manifest matches the
    registry entry (every file present at its recorded size) is returned as it is unless
    ``force``, which downloads every file again; offline, ``force`` installs again from the
    cache, every file re-checked.

    Raises :class:`ModelDownloadError` when the hub cannot be reached, refuses a file, or a
    file fails its check (nothing is installed then), and :class:`ModelError` for an unknown
    name.
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
    cache_dir = hf_cache_dir()
    hub = hub_url()
    is_offline = offline()
    with _name_lock(root, spec.name):
        # force downloads again; offline, it installs again from the cache, re-checked.
        found = None if force and not is_offline else _cached_files(spec, cache_dir)
        if found is None:
            if is_offline:
                raise ModelDownloadError(
                    f"model {spec.name!r} is not in the Hugging Face cache {cache_dir} and"
                    " offline mode is on; unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to"
                    " download it, or install a local copy with `magray models import DIR`"
                )
            found = _download(spec, cache_dir, hub, progress, timeout, force)
        return _install_links(spec, found, root, hub, cache_dir, progress)


def _install_links(
    spec: ModelSpec,
    found: dict[str, Path],
    root: Path,
    hub: str,
    cache_dir: Path,
    progress: bool | ProgressCallback,
) -> Path:
    """Check the cached files of ``spec`` and install links to them as ``root/NAME``."""
    records: dict[str, dict[str, Any]] = {}
    for rel, pointer in found.items():
        records[rel] = _check_cached(spec, rel, pointer)
        if callable(progress):
            progress(rel, records[rel]["size"], records[rel]["size"])
    final = root / spec.name
    staging = root / f".{spec.name}.link-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        for rel, pointer in found.items():
            _link(pointer, staging / rel)
        manifest = _manifest(
            name=spec.name,
            repo=spec.repo,
            revision=spec.revision,
            source="hub",
            onnx=spec.onnx_file,
            files=records,
            settings=spec.settings(),
        )
        manifest.update(
            hub=hub,
            hf_cache=str(cache_dir),
            commit=_commit_of(found[spec.onnx_file], spec.onnx_file),
        )
        _write_json(staging / MANIFEST, manifest)
        _install(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def from_hf_cache(name: str) -> Path | None:
    """Install the registry model ``name`` from the Hugging Face cache if every file is there.

    No network: returns None when the model is not a registry model or any file is missing.
    The files are checked as :func:`pull` checks them.
    """
    spec = REGISTRY.get(name)
    if spec is None:
        return None
    cache_dir = hf_cache_dir()
    found = _cached_files(spec, cache_dir)
    if found is None:
        return None
    root = models_dir()
    root.mkdir(parents=True, exist_ok=True)
    with _name_lock(root, spec.name):
        current = installed(spec.name)
        if current is not None and _matches(current, spec):
            return current
        path = _install_links(spec, found, root, hub_url(), cache_dir, False)
    _log.info("using model %s from the Hugging Face cache %s", name, cache_dir)
    return path


def _matches(model_dir: Path, spec: ModelSpec) -> bool:
    """Is this install of the registry model current (same source, every file present at
    its recorded size)? Contents are re-hashed by :func:`verify`, not here."""
    try:
        manifest = _read_manifest(model_dir)
    except ModelError:
        return False
    files = manifest["files"]
    if manifest.get("repo") != spec.repo or manifest.get("revision") != spec.revision:
        return False
    for rel in spec.files:
        record = files.get(rel)
        try:
            size = (model_dir / rel).stat().st_size
        except OSError:
            return False  # missing, or a link into a cache that was cleaned
        if not isinstance(record, dict) or size != record.get("size"):
            return False
        pinned = spec.sha256.get(rel)
        if pinned is not None and record.get("sha256") != pinned:
            return False
    return True
