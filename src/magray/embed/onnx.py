"""Sentence embeddings with ONNX Runtime: tokenise, run, pool, normalise.

A model directory in the Hugging Face layout is read as sentence-transformers would:
``model.onnx`` (or ``onnx/model.onnx``), ``tokenizer.json``, and the optional
``modules.json`` / ``1_Pooling/config.json`` / ``sentence_bert_config.json`` for pooling
(mean, cls, last token), the maximum sequence length and whether to normalise.

Batching is dynamic: texts are sorted by token count, each batch is padded only to its
longest member, and results return in input order. Pooling and normalisation run in the
native kernels.

Devices: TensorRT or CUDA when ONNX Runtime offers them *and* a session can really be
created on them (a listed provider that cannot start, as CUDA on a machine without a GPU,
costs one failure at start-up, never one per call); the CPU otherwise. GPU inference runs
behind a circuit breaker: failures (or calls slower than the breaker's timeout) open it and
the work goes to the CPU session until a trial call succeeds after the cool-down. A GPU
out-of-memory error first halves the batch and retries before it counts as a failure.

Session options (set deliberately): full graph optimisation
(``ORT_ENABLE_ALL``), sequential execution with ``inter_op_num_threads=1``,
``intra_op_num_threads`` = the CPU count (override with ``threads=``), the memory pattern
and CPU arena on (batches repeat their shapes), worker threads that sleep rather than
spin between runs, and ORT's own logging at errors only.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from magray.errors import InvalidInputError, MagrayError

log = logging.getLogger("magray.embed")

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_OOM = re.compile(
    r"out of memory|failed to allocate|cudaErrorMemoryAllocation|CUDA failure 2\b", re.I
)

SessionFactory = Callable[[str, list[str], Any], Any]


class ModelLoadError(MagrayError):
    """A model directory that cannot be used (missing files, unreadable ONNX)."""


def weights_sha256(model_dir: Path, rel: str) -> str:
    """The sha256 of the graph ``model_dir / rel``: from the install manifest or SHA256SUMS
    when they list it (at its current size), else computed."""
    from magray.embed.models import MANIFEST, _read_json, _sha256_file

    onnx_path = model_dir / rel
    manifest = _read_json(model_dir / MANIFEST)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    entry = files.get(rel) if isinstance(files, dict) else None
    if isinstance(entry, dict) and entry.get("size") == onnx_path.stat().st_size:
        return str(entry["sha256"])
    sums = model_dir / "SHA256SUMS"
    if sums.is_file():
        for line in sums.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*") in (rel, onnx_path.name):
                return parts[0]
    return _sha256_file(onnx_path)


def _tensorrt_present() -> bool:
    import ctypes.util

    return ctypes.util.find_library("nvinfer") is not None


def _session_options(ort: Any, threads: int | None) -> Any:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    so.intra_op_num_threads = threads or (os.cpu_count() or 1)
    so.enable_mem_pattern = True
    so.enable_cpu_mem_arena = True
    so.log_severity_level = 3
    # Worker threads sleep when a run ends instead of spinning for more work: what
    # follows an embedding here is the caller's own work (a search, a write batch),
    # which a spinning thread would take a CPU from.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


# CUDA would use TF32 tensor cores for float32 products by default, which moves vectors by
# about 1e-4; full float32 keeps GPU results equal to the CPU's.
PROVIDER_OPTIONS: dict[str, dict[str, str]] = {"CUDAExecutionProvider": {"use_tf32": "0"}}


def _default_factory(path: str, providers: list[str], options: Any) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(
        path,
        sess_options=options,
        providers=providers,
        provider_options=[PROVIDER_OPTIONS.get(p, {}) for p in providers],
    )


class OnnxEmbedder:
    """Embeds text with an ONNX transformer on the best available device."""

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        name: str | None = None,
        device: str = "auto",
        batch_size: int = 32,
        threads: int | None = None,
        query_prefix: str | None = None,
        document_prefix: str | None = None,
        breaker: Any = None,
        session_factory: SessionFactory | None = None,
    ) -> None:
        if device not in ("auto", "cpu", "gpu"):
            raise InvalidInputError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be an int >= 1, got {batch_size!r}")
        from magray.embed.models import _find_onnx, model_settings

        self.model_dir = Path(model_dir).expanduser()
        if not self.model_dir.is_dir():
            raise ModelLoadError(f"model directory {self.model_dir} does not exist")
        if _find_onnx(self.model_dir) is None:
            raise ModelLoadError(
                f"{self.model_dir} has no model.onnx or onnx/model.onnx; pass a model directory"
                " in the Hugging Face layout, or get one with `magray models pull NAME`"
            )
        tok_path = self.model_dir / "tokenizer.json"
        if not tok_path.is_file():
            raise ModelLoadError(f"{self.model_dir} has no tokenizer.json; the model needs one")
        # The install manifest's settings when there is one (a pulled model's spec: its
        # pooling, prefixes, ...), else what the sentence-transformers files say.
        settings = model_settings(self.model_dir)
        self.onnx_path = self.model_dir / settings["onnx"]
        self.pooling: str = settings["pooling"]
        self.normalize: bool = settings["normalize"]
        self.max_length: int = settings["max_length"]
        self.batch_size = batch_size
        self.query_prefix: str = (
            settings.get("query_prefix") or "" if query_prefix is None else query_prefix
        )
        self.document_prefix: str = (
            settings.get("document_prefix") or "" if document_prefix is None else document_prefix
        )
        self._name = name or self.model_dir.name

        from tokenizers import Tokenizer

        try:
            self._tokenizer = Tokenizer.from_file(str(tok_path))
        except Exception as exc:  # tokenizers raises a bare Exception for a bad file
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelLoadError(
                f"{tok_path} cannot be read as a tokenizer ({detail}); the file is damaged or"
                " not a tokenizers JSON file: check it with `magray models verify`, then"
                " install the model again (`magray models pull NAME --force`)"
            ) from exc
        self._tokenizer.enable_truncation(max_length=self.max_length)
        self._tokenizer.no_padding()
        self._pad_id = 0
        pad = self._tokenizer.token_to_id("[PAD]")
        if pad is not None:
            self._pad_id = int(pad)

        import onnxruntime as ort

        from magray.resilience import CircuitBreaker

        self._ort = ort
        self._factory = session_factory or _default_factory
        self._options = _session_options(ort, threads)
        self.breaker = breaker or CircuitBreaker(
            "gpu-inference", failure_threshold=3, reset_timeout=60.0
        )
        self.gpu_provider: str | None = None
        self.gpu_error: str | None = None
        self._gpu: Any = None
        self._cpu: Any = None
        if device in ("auto", "gpu"):
            self._start_gpu(required=device == "gpu")
        if self._gpu is None:
            self._cpu = self._make_session(["CPUExecutionProvider"])
        session = self._gpu or self._cpu
        inputs = [i.name for i in session.get_inputs()]
        self._input_names = inputs
        out = session.get_outputs()
        self._output = out[0].name
        shape = out[0].shape
        self._dim = int(shape[-1]) if isinstance(shape[-1], int) else 0
        self._sentence_output = len(shape) == 2
        self._sha = weights_sha256(self.model_dir, settings["onnx"])
        if not self._dim:
            probe = self._tokenizer.encode_batch(["probe"])
            self._dim = int(self._run_session(session, probe).shape[1])
        spec = (
            f"{self._name}|{self._sha}|pooling={self.pooling}|max_length={self.max_length}|"
            f"normalize={self.normalize}|prefixes={self.query_prefix!r},{self.document_prefix!r}"
        )
        from magray.kernels import hash128

        self._fingerprint = "onnx-" + hash128(spec).hex()[:24]

    # -- sessions --------------------------------------------------------------------------

    def _make_session(self, providers: list[str]) -> Any:
        try:
            return self._factory(str(self.onnx_path), providers, self._options)
        except Exception as exc:
            if providers == ["CPUExecutionProvider"]:
                raise ModelLoadError(f"cannot load {self.onnx_path}: {exc}") from exc
            raise

    def _start_gpu(self, required: bool) -> None:
        available = self._ort.get_available_providers()
        for provider in GPU_PROVIDERS:
            if provider not in available:
                continue
            if provider == "TensorrtExecutionProvider" and not _tensorrt_present():
                continue  # listed by every GPU build; without libnvinfer it cannot start
            # A provider that cannot start logs errors of its own: keep them quiet here
            # and report one clear reason instead.
            self._ort.set_default_logger_severity(4)
            try:
                session = self._make_session([provider, "CPUExecutionProvider"])
            except Exception as exc:
                self._gpu_failed(provider, str(exc).strip().splitlines()[0])
                continue
            finally:
                self._ort.set_default_logger_severity(3)
            # ORT falls back to the CPU silently when a provider cannot start.
            if session.get_providers()[0] != provider:
                self._gpu_failed(
                    provider, f"{provider} is listed but could not start (no usable GPU)"
                )
                continue
            self._gpu, self.gpu_provider = session, provider
            return
        if required:
            reason = self.gpu_error or "none available"
            raise ModelLoadError(f"device='gpu' but no GPU provider could start: {reason}")

    def _gpu_failed(self, provider: str, message: str) -> None:
        self.gpu_error = message
        self.breaker.record_failure(f"{provider} at start-up: {message}")
        log.info("GPU provider %s unavailable: %s", provider, message)

    def _cpu_session(self) -> Any:
        if self._cpu is None:
            self._cpu = self._make_session(["CPUExecutionProvider"])
        return self._cpu

    @property
    def provider(self) -> str:
        """The provider the next call would use."""
        if self._gpu is not None and self.breaker.state.value != "open":
            return str(self.gpu_provider)
        return "CPUExecutionProvider"

    # -- the Embedder protocol -------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit float32 vectors of documents, in input order."""
        return self._embed(texts, self.document_prefix)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        """The same for search queries (models like e5 prefix queries differently)."""
        return self._embed(texts, self.query_prefix)

    def _embed(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        n = len(texts)
        out = np.zeros((n, self._dim), np.float32)
        if n == 0:
            return out
        items = [prefix + t for t in texts] if prefix else list(texts)
        encodings = self._tokenizer.encode_batch(items)
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, n, self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._infer([encodings[i] for i in rows])
        return out

    # -- inference -------------------------------------------------------------------------

    def _feeds(self, encodings: list[Any]) -> dict[str, np.ndarray]:
        b = len(encodings)
        s = max(1, max(len(e.ids) for e in encodings))
        ids = np.full((b, s), self._pad_id, np.int64)
        mask = np.zeros((b, s), np.int64)
        types = np.zeros((b, s), np.int64)
        for i, e in enumerate(encodings):
            m = len(e.ids)
            ids[i, :m] = e.ids
            mask[i, :m] = 1
            types[i, :m] = e.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {k: v for k, v in feeds.items() if k in self._input_names}

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from magray.kernels import l2_normalize, mean_pool

        if self._sentence_output:
            pooled = np.ascontiguousarray(hidden, dtype=np.float32)
            return l2_normalize(pooled) if self.normalize else pooled
        hidden = np.ascontiguousarray(hidden, dtype=np.float32)
        if self.pooling == "mean":
            return mean_pool(hidden, mask, normalize=self.normalize)
        if self.pooling == "cls":
            pooled = np.ascontiguousarray(hidden[:, 0, :])
        else:  # last token: the last position the mask keeps (right padding)
            last = np.maximum(mask.sum(axis=1) - 1, 0)
            pooled = np.ascontiguousarray(hidden[np.arange(len(hidden)), last, :])
        return l2_normalize(pooled) if self.normalize else pooled

    def _run_session(self, session: Any, encodings: list[Any]) -> np.ndarray:
        feeds = self._feeds(encodings)
        hidden = session.run([self._output], feeds)[0]
        return self._pool(hidden, feeds["attention_mask"])

    def _infer(self, encodings: list[Any]) -> np.ndarray:
        if self._gpu is not None:
            from magray.resilience import CircuitOpenError

            try:
                # The breaker admits the call, times it by its own clock and records the
                # verdict (a call over its call_timeout counts as a failure).
                return self.breaker.call(self._gpu_run, encodings)
            except CircuitOpenError:
                pass
            except Exception as exc:
                log.warning("GPU inference failed (%s); this batch runs on the CPU", exc)
        return self._run_session(self._cpu_session(), encodings)

    def _gpu_run(self, encodings: list[Any]) -> np.ndarray:
        """One GPU batch; on out-of-memory, halves it and retries before giving up."""
        try:
            return self._run_session(self._gpu, encodings)
        except Exception as exc:
            if not _OOM.search(str(exc)) or len(encodings) == 1:
                raise
            half = len(encodings) // 2
            log.info("GPU out of memory at batch %d; retrying in halves", len(encodings))
            return np.concatenate(
                [self._gpu_run(encodings[:half]), self._gpu_run(encodings[half:])]
            )

    def stats(self) -> dict[str, Any]:
        return {
            "name": self._name,
            "dim": self._dim,
            "fingerprint": self._fingerprint,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "normalize": self.normalize,
            "provider": self.provider,
            "gpu_provider": self.gpu_provider,
            "gpu_error": self.gpu_error,
            "breaker": self.breaker.stats(),
        }

    def __repr__(self) -> str:
        return f"<OnnxEmbedder {self._name} {self._dim}-d {self.provider}>"
