"""Settings: defaults < the TOML file < ``MAGRAY_*`` environment variables < explicit
arguments (command-line flags, or ``magray.open(...)``).

Two groups share one flat namespace of keys:

- application keys (``APP_KEYS``): where the store lives, which embedder, logging, device;
- the memory engine's keys (``MemoryConfig``): lifecycle rules, index parameters, limits.

The file is ``config.toml`` in the user config directory (``magray config path``), or the
one named by ``--config`` / ``MAGRAY_CONFIG``. Unknown keys and bad values fail with a
message naming the key, the value and what is allowed. ``load_settings`` remembers where
every value came from, for ``magray config show``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magray.errors import InvalidInputError

DAY = 86_400.0


@dataclass(frozen=True)
class MemoryConfig:
    """Lifecycle rules, index parameters and limits. Times are in seconds."""

    # Lifecycle: time to live without use, per layer (assets never expire).
    ttl_interact: float = 1 * DAY
    ttl_insights: float = 90 * DAY
    # interact -> insights when used this often, or this important (checked before expiry).
    promote_access_count: int = 3
    promote_importance: float = 0.8
    # insights -> assets when used this often and at least this old, or this important.
    assets_access_count: int = 10
    assets_min_age: float = 7 * DAY
    assets_importance: float = 0.95

    # hnswlib, one index per layer, inner product on unit vectors.
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 64  # at least k is always used; recall@10 >= 0.99 measured at 100k
    # Layers with fewer records than this are searched exactly (native top-k): faster there
    # and without recall loss; the crossover measured by bench/exact_threshold.py is ~3000.
    exact_threshold: int = 3000
    # Rebuild an index once more than this share of its elements are deleted.
    rebuild_deleted_fraction: float = 0.2
    # Save an index snapshot after this many changes to it (and always on close).
    index_save_every: int = 20_000
    # Threads hnswlib may use for bulk inserts (0: one per CPU).
    index_threads: int = 0

    # A BM25 full-text index beside the vectors (search modes "text" and "hybrid", and
    # contains=). Off: nothing is tokenised or indexed, and those modes are refused.
    full_text: bool = True

    # The embedding cache: L1 in memory, L2 in the store (both bounded in bytes).
    cache_l1_bytes: int = 64 << 20
    cache_l2_bytes: int = 1 << 30
    # L3, shared across processes and hosts: redis://, rediss:// or redis+cluster://
    # (empty: none), and each entry's time to live in seconds (0: none; let Redis evict).
    cache_redis_url: str = ""
    cache_redis_ttl: float = 0.0

    # Limits and durability.
    max_text_bytes: int = 1 << 20
    sync_writes: bool = True  # fsync the write-ahead log on every write: survives power loss
    # Access statistics of searches are batched in memory and written once no search has
    # run for access_flush_seconds, and under continuous search load at least every
    # access_flush_max_seconds (the write costs CPU that searches would wait for).
    access_flush_seconds: float = 1.0
    access_flush_max_seconds: float = 30.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("float", "int") and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise InvalidInputError(f"config {f.name}={value!r} must be a number")
        for f in dataclasses.fields(self):
            if f.type == "bool" and not isinstance(getattr(self, f.name), bool):
                raise InvalidInputError(
                    f"config {f.name}={getattr(self, f.name)!r} must be true or false"
                )
        positive = (
            "ttl_interact",
            "ttl_insights",
            "hnsw_m",
            "hnsw_ef_construction",
            "hnsw_ef_search",
            "max_text_bytes",
            "index_save_every",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"config {name}={getattr(self, name)!r} must be > 0")
        for name in ("promote_importance", "assets_importance", "rebuild_deleted_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"config {name}={value!r} must be in [0, 1]")
        for name in (
            "promote_access_count",
            "assets_access_count",
            "exact_threshold",
            "index_threads",
            "assets_min_age",
            "access_flush_seconds",
            "access_flush_max_seconds",
            "cache_l1_bytes",
            "cache_l2_bytes",
            "cache_redis_ttl",
        ):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"config {name}={getattr(self, name)!r} must be >= 0")

    def replace(self, **changes: Any) -> MemoryConfig:
        """A copy with some values changed (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            valid = ", ".join(sorted(f.name for f in dataclasses.fields(self)))
            raise InvalidInputError(f"unknown config key(s) {sorted(unknown)}; valid keys: {valid}")
        return dataclasses.replace(self, **changes)

    @property
    def threads(self) -> int:
        return self.index_threads or (os.cpu_count() or 1)


def coerce_config(config: MemoryConfig | dict[str, Any] | None) -> MemoryConfig:
    if config is None:
        return MemoryConfig()
    if isinstance(config, MemoryConfig):
        return config
    if isinstance(config, dict):
        return MemoryConfig().replace(**config)
    raise InvalidInputError(f"config must be a MemoryConfig or a dict, not {type(config).__name__}")


# -- application settings and their sources ------------------------------------------------

APP_KEYS: dict[str, tuple[type, Any, str]] = {
    # key: (type, default, what it is)
    "store": (str, "", "store directory (empty: MAGRAY_HOME or the user data directory)"),
    "embedder": (
        str,
        "auto",
        "auto, hash, a model name from `magray models list`, or a model directory",
    ),
    "device": (str, "auto", "auto, cpu or gpu for ONNX inference"),
    "batch_size": (int, 32, "texts per inference batch"),
    "log_format": (str, "text", "text or json"),
    "log_level": (str, "warning", "debug, info, warning or error"),
    "log_file": (str, "", "also write logs to this file (empty: stderr only)"),
    "rss_limit_mb": (int, 0, "memory pressure above this process RSS in MiB (0: no limit)"),
    "server": (str, "", "a magray server (grpc://HOST:PORT) that memory commands use"),
    "namespace": (str, "default", "the namespace on that server"),
}
# The smallest value each numeric application setting takes.
_MINIMUM = {"batch_size": 1, "rss_limit_mb": 0}
_CHOICES = {
    "device": ("auto", "cpu", "gpu"),
    "log_format": ("text", "json"),
    "log_level": ("debug", "info", "warning", "error"),
}


@functools.cache  # built once: callers only read it
def _memory_fields() -> dict[str, tuple[type, Any]]:
    out: dict[str, tuple[type, Any]] = {}
    for f in dataclasses.fields(MemoryConfig):
        kind = {"int": int, "float": float, "bool": bool}.get(str(f.type), str)
        out[f.name] = (kind, f.default)
    return out


@functools.cache  # built once: callers only read it
def all_keys() -> dict[str, tuple[type, Any, str]]:
    keys = dict(APP_KEYS)
    for name, (kind, default) in _memory_fields().items():
        keys[name] = (kind, default, "memory engine setting (see MemoryConfig)")
    return keys


def default_config_file() -> Path:
    env = os.environ.get("MAGRAY_CONFIG")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("magray", appauthor=False)) / "config.toml"


def coerce_value(key: str, value: Any, origin: str) -> Any:
    """value converted to key's type, or InvalidInputError naming key, value and what is allowed."""
    keys = all_keys()
    if key not in keys:
        raise InvalidInputError(
            f"unknown config key {key!r} (from {origin}); valid keys: {', '.join(sorted(keys))}"
        )
    kind = keys[key][0]
    try:
        if kind is bool:
            if isinstance(value, bool):
                out: Any = value
            elif str(value).strip().lower() in ("1", "true", "yes", "on"):
                out = True
            elif str(value).strip().lower() in ("0", "false", "no", "off"):
                out = False
            else:
                raise ValueError
        elif kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out = int(value)
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        else:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            out = str(value)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"config {key}={value!r} (from {origin}) is not a valid {kind.__name__}"
        ) from None
    choices = _CHOICES.get(key)
    if choices and out not in choices:
        raise InvalidInputError(
            f"config {key}={value!r} (from {origin}) must be one of: {', '.join(choices)}"
        )
    minimum = _MINIMUM.get(key)
    if minimum is not None and out < minimum:
        raise InvalidInputError(f"config {key}={value!r} (from {origin}) must be >= {minimum}")
    return out


@dataclass
class Settings:
    """Effective settings with the source of each value."""

    values: dict[str, Any]
    sources: dict[str, str]
    file: Path

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def memory_config(self) -> MemoryConfig:
        fields = {name: self.values[name] for name in _memory_fields()}
        return MemoryConfig(**fields)

    def rows(self) -> list[tuple[str, Any, str]]:
        return [(k, self.values[k], self.sources[k]) for k in sorted(self.values)]


def read_config_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    if path.is_dir():
        raise InvalidInputError(f"config file {path} is a directory; pass a TOML file")
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"config file {path} is not valid TOML: {exc}") from None
    data = dict(data)
    nested = [k for k, v in data.items() if isinstance(v, dict)]
    if nested:
        raise InvalidInputError(
            f"config file {path} has a table [{nested[0]}]; magray keys are top-level (key = value)"
        )
    return data


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    *,
    env: dict[str, str] | None = None,
    flags: dict[str, Any] | None = None,
) -> Settings:
    """Defaults < file < MAGRAY_* environment < flags (None values in flags are ignored)."""
    env = dict(os.environ) if env is None else env
    path = config_path(config_file)
    keys = all_keys()
    values = {k: v[1] for k, v in keys.items()}
    sources = {k: "default" for k in keys}
    for key, raw in read_config_file(path).items():
        values[key] = coerce_value(key, raw, f"file {path}")
        sources[key] = f"file {path}"
    for key in keys:
        name = "MAGRAY_" + key.upper()
        if name in env:
            values[key] = coerce_value(key, env[name], f"environment {name}")
            sources[key] = f"environment {name}"
    if "MAGRAY_HOME" in env and sources["store"] == "default":
        values["store"] = env["MAGRAY_HOME"]
        sources["store"] = "environment MAGRAY_HOME"
    for key, raw in (flags or {}).items():
        if raw is not None:
            values[key] = coerce_value(key, raw, "command line")
            sources[key] = "command line"
    settings = Settings(values, sources, path)
    settings.memory_config()  # validates ranges now, naming the key
    return settings


def config_path(config_file: str | os.PathLike[str] | None = None) -> Path:
    """The settings file: ``config_file`` (``~`` expanded) when given, else the default."""
    return Path(config_file).expanduser() if config_file else default_config_file()


def set_config_value(
    key: str, value: str, config_file: str | os.PathLike[str] | None = None
) -> tuple[Path, Any]:
    """Validate key=value and write it into the TOML file (other keys kept); returns the
    file and the typed value."""
    path = config_path(config_file)
    typed = coerce_value(key, value, "config set")
    data = read_config_file(path)
    data[key] = typed
    memory_fields = _memory_fields()
    if key in memory_fields:
        MemoryConfig().replace(**{k: v for k, v in data.items() if k in memory_fields})
    lines = ["# magray settings (see `magray config show`)"]
    for k in sorted(data):
        v = data[k]
        if isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, (int, float)):
            text = repr(v)
        else:
            import json

            text = json.dumps(str(v), ensure_ascii=False)
        lines.append(f"{k} = {text}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path, typed
