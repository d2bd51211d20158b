from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from magray.embed.onnx import ModelLoadError, OnnxEmbedder
from magray.resilience import CircuitBreaker, CircuitState

from ..fakes import FakeClock


@pytest.fixture(scope="module")
def cpu(minilm_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder(minilm_dir, device="cpu")


@pytest.mark.parametrize("batch_size", [1, 16])
def test_parity_with_the_reference_model(minilm_dir: Path, batch_size: int) -> None:
    ref = json.loads((minilm_dir / "reference_embeddings.json").read_text())
    assert "" in ref["sentences"]  # the empty string and a truncated text are included
    e = OnnxEmbedder(minilm_dir, device="cpu", batch_size=batch_size)
    got = e.embed(ref["sentences"])
    want = np.asarray(ref["embeddings"], np.float32)
    assert got.shape == want.shape == (len(ref["sentences"]), 384)
    assert np.abs(got - want).max() <= 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_layout_is_read_from_the_sentence_transformers_files(cpu: OnnxEmbedder) -> None:
    assert (cpu.pooling, cpu.normalize, cpu.max_length, cpu.dim) == ("mean", True, 256, 384)


def test_dynamic_batching_restores_input_order(cpu: OnnxEmbedder) -> None:
    texts = [("word " * n).strip() + f" {n}" for n in (1, 40, 3, 200, 7, 2, 90, 5, 11, 300)]
    cpu.batch_size = 3
    together = cpu.embed(texts)
    alone = np.stack([cpu.embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=2e-6)
    cpu.batch_size = 32


def test_fingerprint_tracks_what_changes_vectors(
    minilm_dir: Path, tmp_path: Path, cpu: OnnxEmbedder
) -> None:
    again = OnnxEmbedder(minilm_dir, device="cpu")
    assert again.fingerprint == cpu.fingerprint
    other = tmp_path / "m"
    other.mkdir()
    for f in minilm_dir.iterdir():
        if f.is_file():
            (other / f.name).symlink_to(f)
    shutil.copytree(minilm_dir / "1_Pooling", other / "1_Pooling")
    (other / "sentence_bert_config.json").unlink()
    (other / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    changed = OnnxEmbedder(other, device="cpu", name=cpu.name)
    assert changed.max_length == 128 and changed.fingerprint != cpu.fingerprint


def test_settings_come_from_the_install_manifest(
    minilm_dir: Path, tmp_path: Path, cpu: OnnxEmbedder
) -> None:
    # A pulled model's manifest records its spec (pooling, prefixes); the embedder must use
    # it even where the model's own files say otherwise or say nothing (no 1_Pooling, as
    # with last-token models).
    model = tmp_path / "m"
    model.mkdir()
    for f in minilm_dir.iterdir():
        if f.is_file():
            (model / f.name).symlink_to(f)
    spec = {
        "dim": 384,
        "pooling": "cls",
        "max_length": 128,
        "normalize": True,
        "query_prefix": "query: ",
        "document_prefix": "passage: ",
    }
    (model / "magray-model.json").write_text(
        json.dumps({"files": {}, "spec": spec, "onnx": "model.onnx"})
    )
    e = OnnxEmbedder(model, device="cpu")
    assert (e.pooling, e.max_length, e.query_prefix, e.document_prefix) == (
        "cls",
        128,
        "query: ",
        "passage: ",
    )
    assert e.fingerprint != cpu.fingerprint
    explicit = OnnxEmbedder(model, device="cpu", query_prefix="", document_prefix="")
    assert explicit.query_prefix == "" and explicit.document_prefix == ""
    text = "where is the deploy key"
    # The prefixes are applied...
    np.testing.assert_allclose(e.embed([text]), explicit.embed(["passage: " + text]), atol=1e-6)
    np.testing.assert_allclose(e.embed_query([text]), explicit.embed(["query: " + text]), atol=1e-6)
    # ...and the pooling is the manifest's CLS, not the mean that 1_Pooling/ would give.
    assert np.abs(e.embed([text]) - cpu.embed(["passage: " + text])).max() > 1e-2


def test_bad_model_directories(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        OnnxEmbedder(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="no model.onnx"):
        OnnxEmbedder(tmp_path)


# -- the GPU path by fault injection -----------------------------------------------------


class FakeGpu:
    """A 'CUDA' session backed by a real CPU session, failing on command."""

    def __init__(self, real: Any, script: dict[str, Any]) -> None:
        self.real = real
        self.script = script
        self.calls = 0
        self.rows_done = 0

    def get_providers(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def get_inputs(self) -> Any:
        return self.real.get_inputs()

    def get_outputs(self) -> Any:
        return self.real.get_outputs()

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> Any:
        self.calls += 1
        rows = len(feeds["input_ids"])
        if self.calls in self.script.get("fail_calls", ()):
            raise RuntimeError(f"CUDA error: injected failure on call {self.calls}")
        if rows > self.script.get("oom_above", 10**9):
            raise RuntimeError("CUDA failure 2: out of memory (injected)")
        out = self.real.run(names, feeds)
        self.rows_done += rows
        return out


def gpu_embedder(
    minilm_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    script: dict[str, Any],
    breaker: CircuitBreaker | None = None,
    batch_size: int = 8,
) -> tuple[OnnxEmbedder, FakeGpu, list[int]]:
    import onnxruntime as ort

    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    made: dict[str, Any] = {}
    cpu_rows = [0]

    class CountingCpu:
        def __init__(self, real: Any) -> None:
            self.real = real

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def run(self, names: Any, feeds: dict[str, np.ndarray]) -> Any:
            cpu_rows[0] += len(feeds["input_ids"])
            return self.real.run(names, feeds)

    def factory(path: str, providers: list[str], options: Any) -> Any:
        real = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        if providers[0] == "CUDAExecutionProvider":
            if script.get("startup_fails"):
                raise RuntimeError("CUDA driver not found (injected)")
            made["gpu"] = FakeGpu(real, script)
            return made["gpu"]
        return CountingCpu(real)

    e = OnnxEmbedder(
        minilm_dir, device="auto", batch_size=batch_size, session_factory=factory, breaker=breaker
    )
    return e, made.get("gpu"), cpu_rows  # type: ignore[return-value]


TEXTS = [f"memory number {i} about {'gpus ' * (i % 9)}and fallbacks" for i in range(40)]


def test_breaker_trips_mid_batch_without_losing_or_duplicating_text(
    minilm_dir: Path, monkeypatch: pytest.MonkeyPatch, cpu: OnnxEmbedder
) -> None:
    e, gpu, cpu_rows = gpu_embedder(minilm_dir, monkeypatch, {"fail_calls": {2, 3, 4}})
    assert e.provider == "CUDAExecutionProvider"
    got = e.embed(TEXTS)
    np.testing.assert_allclose(got, cpu.embed(TEXTS), atol=1e-6)  # fallback equals the CPU
    assert e.breaker.state is CircuitState.OPEN
    assert gpu.rows_done + cpu_rows[0] == len(TEXTS)  # every text exactly once
    assert gpu.rows_done == 8 and e.provider == "CPUExecutionProvider"
    assert e.stats()["breaker"]["failures"] == 3


def test_breaker_states_with_a_fake_clock(
    minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(100.0)
    breaker = CircuitBreaker("gpu", failure_threshold=3, reset_timeout=60.0, clock=clock)
    e, gpu, _ = gpu_embedder(
        minilm_dir, monkeypatch, {"fail_calls": {1, 2, 3, 5}}, breaker, batch_size=40
    )
    for _ in range(3):
        e.embed(TEXTS[:4])
    assert breaker.state is CircuitState.OPEN
    e.embed(TEXTS[:4])  # open: straight to the CPU, the GPU is not called
    assert gpu.calls == 3
    clock.now += 61
    assert breaker.state is CircuitState.HALF_OPEN
    e.embed(TEXTS[:4])  # trial call 4 succeeds
    assert breaker.state is CircuitState.CLOSED and gpu.calls == 4
    for _ in range(3):
        e.embed(TEXTS[:4])  # call 5 fails, 6 and 7 succeed
    assert breaker.state is CircuitState.CLOSED
    gpu.script["fail_calls"] = {8, 9, 10, 11}
    for _ in range(3):
        e.embed(TEXTS[:4])
    assert breaker.state is CircuitState.OPEN
    clock.now += 61
    e.embed(TEXTS[:4])  # the trial fails: open again, with a fresh cool-down
    assert breaker.state is CircuitState.OPEN and breaker.stats()["retry_after"] == pytest.approx(
        60.0
    )


def test_out_of_memory_halves_the_batch_before_counting_a_failure(
    minilm_dir: Path, monkeypatch: pytest.MonkeyPatch, cpu: OnnxEmbedder
) -> None:
    e, gpu, cpu_rows = gpu_embedder(minilm_dir, monkeypatch, {"oom_above": 3}, batch_size=16)
    got = e.embed(TEXTS[:16])
    np.testing.assert_allclose(got, cpu.embed(TEXTS[:16]), atol=1e-6)
    assert gpu.rows_done == 16 and cpu_rows[0] == 0
    assert e.breaker.stats()["failures"] == 0


def test_a_gpu_that_cannot_start_costs_one_failure_not_one_per_call(
    minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    e, gpu, cpu_rows = gpu_embedder(minilm_dir, monkeypatch, {"startup_fails": True})
    assert gpu is None and e.provider == "CPUExecutionProvider"
    assert "injected" in (e.gpu_error or "")
    for _ in range(5):
        e.embed(TEXTS[:3])
    assert e.breaker.stats()["failures"] == 1 and cpu_rows[0] == 15


def test_slow_gpu_calls_count_as_failures(
    minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    breaker = CircuitBreaker("gpu", failure_threshold=2, reset_timeout=60.0, call_timeout=1e-9)
    e, gpu, _ = gpu_embedder(minilm_dir, monkeypatch, {}, breaker, batch_size=40)
    e.embed(TEXTS[:2])
    e.embed(TEXTS[:2])
    assert breaker.state is CircuitState.OPEN and gpu.calls == 2


def test_a_damaged_tokenizer_is_one_clear_error(tmp_path: Path) -> None:
    model = tmp_path / "broken-model"
    model.mkdir()
    (model / "model.onnx").write_bytes(b"not read: the tokenizer fails first")
    (model / "tokenizer.json").write_text('{"version": "1.0", "truncation": {"max_length": 1}}')
    (model / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(ModelLoadError) as caught:
        OnnxEmbedder(model)
    message = str(caught.value)
    assert "tokenizer.json cannot be read as a tokenizer" in message
    assert "magray models verify" in message and "\n" not in message


def test_session_threads_sleep_between_runs() -> None:
    # A spinning worker would take a CPU from the search or write that follows each
    # embedding; the options are what every session of the embedder is made with.
    import onnxruntime as ort

    from magray.embed.onnx import _session_options

    so = _session_options(ort, 2)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
