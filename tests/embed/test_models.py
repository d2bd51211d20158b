"""Model management: installs through the Hugging Face hub and cache, imports, verification.

Downloads run against the hub stand-in of ``tests/hub_standin.py`` on 127.0.0.1, through the
real ``huggingface_hub`` library, into a Hugging Face cache under the test's own directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from magray.embed import models
from magray.embed.models import (
    DEFAULT_MODEL,
    MANIFEST,
    REGISTRY,
    ModelSpec,
    file_url,
    from_hf_cache,
    get_spec,
    hf_cache_dir,
    hub_url,
    import_dir,
    info,
    installed,
    list_models,
    model_settings,
    models_dir,
    pull,
    remove,
    resolve,
    verify,
)
from magray.errors import MagrayError, ModelDownloadError, ModelError
from tests.hub_standin import Hub, git_blob_id, serve

REPO = "acme/tiny-embed"
ONNX = "onnx/model.onnx"


def blob(seed: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def repo_files(dim: int = 384) -> dict[str, bytes]:
    """Stand-ins for every file the default registry model lists."""
    files = {
        ONNX: blob("onnx", 40_000),
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "WordPiece"}}).encode(),
        "modules.json": json.dumps(
            [
                {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        ).encode(),
        "1_Pooling/config.json": json.dumps(
            {"word_embedding_dimension": dim, "pooling_mode_mean_tokens": True}
        ).encode(),
        "sentence_bert_config.json": b'{"max_seq_length": 256}',
        "config.json": json.dumps({"hidden_size": dim, "model_type": "bert"}).encode(),
    }
    assert set(files) == set(REGISTRY[DEFAULT_MODEL].files)
    return files


TINY = ModelSpec(
    name="tiny-test",
    repo=REPO,
    files=REGISTRY[DEFAULT_MODEL].files,
    dim=8,
    pooling="mean",
    max_length=64,
    normalize=True,
    query_prefix="q: ",
    approx_size_mb=1,
    description="a tiny fake model for tests",
    license="mit",
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "models"
    monkeypatch.setenv("MAGRAY_MODELS_DIR", str(root))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("MAGRAY_HUB_URL", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: no network
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setitem(REGISTRY, TINY.name, TINY)
    return root


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    with serve() as fake:
        fake.add_repo(REPO, repo_files(dim=8))
        monkeypatch.setenv("HF_ENDPOINT", fake.url + "/")
        yield fake


def leftovers(root: Path) -> list[str]:
    """Entries of the models directory other than installed models and lock files."""
    if not root.exists():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if not p.name.endswith(".lock") and not (p / MANIFEST).is_file()
    )


def snapshot(repo: str, commit: str) -> Path:
    return hf_cache_dir() / f"models--{repo.replace('/', '--')}" / "snapshots" / commit


# -- registry and locations -----------------------------------------------------------------


def test_registry() -> None:
    assert DEFAULT_MODEL == "all-MiniLM-L6-v2"
    expected = {
        "all-MiniLM-L6-v2": ("sentence-transformers/all-MiniLM-L6-v2", 384, "mean", 256),
        "bge-small-en-v1.5": ("BAAI/bge-small-en-v1.5", 384, "cls", 512),
        "multilingual-e5-small": ("intfloat/multilingual-e5-small", 384, "mean", 512),
        "bge-m3": ("BAAI/bge-m3", 1024, "cls", 8192),
        "Qwen3-Embedding-0.6B": (None, 1024, "last_token", 32768),
    }
    for name, (repo, dim, pooling, max_length) in expected.items():
        spec = get_spec(name)
        assert spec.name == name
        if repo is not None:
            assert spec.repo == repo
        assert (spec.dim, spec.pooling, spec.max_length) == (dim, pooling, max_length)
        assert spec.files[0] == "onnx/model.onnx" == spec.onnx_file
        assert "tokenizer.json" in spec.files
        assert spec.revision == "main" and spec.approx_size_mb > 0 and spec.license
    assert "Qwen3-Embedding-0.6B" in REGISTRY["Qwen3-Embedding-0.6B"].repo
    assert REGISTRY[DEFAULT_MODEL].files == (
        "onnx/model.onnx",
        "tokenizer.json",
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
        "config.json",
    )
    assert REGISTRY[DEFAULT_MODEL].normalize is True
    assert REGISTRY["bge-small-en-v1.5"].query_prefix == (
        "Represent this sentence for searching relevant passages: "
    )
    e5 = REGISTRY["multilingual-e5-small"]
    assert (e5.query_prefix, e5.document_prefix) == ("query: ", "passage: ")
    assert "onnx/model.onnx_data" in REGISTRY["bge-m3"].files


def test_spec_validation() -> None:
    good: dict[str, Any] = dict(
        name="x",
        repo="a/b",
        files=("m.onnx", "tokenizer.json"),
        dim=4,
        pooling="mean",
        max_length=8,
    )
    ModelSpec(**good)
    for bad in (
        {"pooling": "max"},
        {"dim": 0},
        {"files": ("tokenizer.json", "m.onnx")},
        {"files": ("m.onnx",)},
        {"files": ("m.onnx", "../tokenizer.json", "tokenizer.json")},
        {"repo": "nope"},
        {"name": "../x"},
        {"sha256": {"m.onnx": "abc"}},
        {"sha256": {"other.onnx": "0" * 64}},
    ):
        with pytest.raises(ModelError):
            ModelSpec(**{**good, **bad})
    pinned = ModelSpec(**good, sha256={"m.onnx": "AB" * 32})
    assert pinned.sha256 == {"m.onnx": "ab" * 32}


def test_locations(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert models_dir() == tmp_path / "models"
    monkeypatch.delenv("MAGRAY_MODELS_DIR")
    default = models_dir()
    assert default.name == "models" and "magray" in default.parts

    monkeypatch.delenv("HF_ENDPOINT")
    assert hub_url() == "https://huggingface.co"
    assert file_url(REGISTRY[DEFAULT_MODEL], "onnx/model.onnx") == (
        "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main/onnx/model.onnx"
    )
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example/hf/")
    assert hub_url() == "http://mirror.example/hf"
    assert file_url(TINY, "1_Pooling/config.json") == (
        f"http://mirror.example/hf/{REPO}/resolve/main/1_Pooling/config.json"
    )
    monkeypatch.setenv("MAGRAY_HUB_URL", "http://older.example")  # magray's own name wins
    assert hub_url() == "http://older.example"

    # The Hugging Face cache, by the library's rules.
    assert hf_cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hf_cache_dir() == tmp_path / "elsewhere"
    for var in ("HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hf_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert hf_cache_dir() == Path.home() / ".cache" / "huggingface" / "hub"


# -- pull -----------------------------------------------------------------------------------


def test_pull_installs_links_into_the_hf_cache(hub: Hub, _isolated: Path) -> None:
    calls: list[tuple[str, int, int | None]] = []
    commit = hub.commits[(REPO, "main")]
    path = pull(TINY.name, progress=lambda f, d, t: calls.append((f, d, t)))
    files = repo_files(dim=8)

    assert path == _isolated / TINY.name
    snap = snapshot(REPO, commit)
    for rel, data in files.items():
        assert (path / rel).read_bytes() == data
        # The install links into the cache that other Hugging Face tools share.
        assert (path / rel).is_symlink() and os.readlink(path / rel) == str(snap / rel)
        blob_name = (snap / rel).resolve().name
        assert blob_name == (sha256(data) if rel == ONNX else git_blob_id(data))
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["name"] == TINY.name and manifest["source"] == "hub"
    assert (manifest["repo"], manifest["revision"], manifest["commit"]) == (REPO, "main", commit)
    assert manifest["hub"] == hub.url and manifest["hf_cache"] == str(hf_cache_dir())
    assert manifest["onnx"] == ONNX and manifest["installed_at"]
    assert set(manifest["files"]) == set(files)
    for rel, data in files.items():
        entry = manifest["files"][rel]
        # The LFS file against its announced sha256, the small ones against their git ids.
        assert entry == {"size": len(data), "sha256": sha256(data), "verified": "server"}
    assert manifest["spec"]["dim"] == 8 and manifest["spec"]["query_prefix"] == "q: "

    # Each file: one HEAD and one GET; progress ended at the full size of each.
    for rel, data in files.items():
        assert hub.content_requests(rel) == [(None, 200)]
        assert (rel, len(data), len(data)) in calls
    assert all(d <= t for _, d, t in calls if t is not None)

    assert installed(TINY.name) == path
    row = next(r for r in list_models() if r["name"] == TINY.name)
    assert row["installed"] is True and row["path"] == str(path) and row["dim"] == 8
    details = info(TINY.name)
    assert details["installed"] is True and details["dim"] == 8
    assert details["files"][ONNX]["sha256"] == sha256(files[ONNX])
    assert details["size_bytes"] == sum(len(d) for d in files.values())
    assert verify(TINY.name) == [(TINY.name, True, [])]
    assert resolve(TINY.name) == path
    assert model_settings(path)["onnx"] == ONNX
    assert leftovers(_isolated) == []

    # Pulling an installed, current model asks nothing of the hub; force downloads again.
    requests = hub.requests()
    assert pull(TINY.name, progress=False) == path
    assert hub.requests() == requests
    pull(TINY.name, progress=False, force=True)
    assert hub.content_requests(ONNX) == [(None, 200), (None, 200)]

    # Removing the install leaves the shared cache alone.
    remove(TINY.name)
    assert installed(TINY.name) is None and (snap / ONNX).read_bytes() == files[ONNX]


def test_newer_upstream_replaces_the_install_on_force(hub: Hub, _isolated: Path) -> None:
    files = repo_files()
    hub.add_repo("sentence-transformers/all-MiniLM-L6-v2", files)
    path = pull(DEFAULT_MODEL, progress=True)  # stderr is not a terminal here: no bar
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["spec"]["dim"] == 384 and manifest["spec"]["pooling"] == "mean"

    newer = dict(files, **{"tokenizer.json": b'{"version": "2.0"}'})
    commit = hub.add_repo("sentence-transformers/all-MiniLM-L6-v2", newer)
    assert pull(DEFAULT_MODEL, progress=False, force=True) == path
    assert (path / "tokenizer.json").read_bytes() == b'{"version": "2.0"}'
    assert json.loads((path / MANIFEST).read_text())["commit"] == commit
    assert verify(DEFAULT_MODEL) == [(DEFAULT_MODEL, True, [])]
    assert leftovers(_isolated) == []


def fill_cache_like_another_tool(hub: Hub, repo: str, files: dict[str, bytes]) -> None:
    """Download ``files`` the way transformers or sentence-transformers would."""
    from huggingface_hub import hf_hub_download

    hub.add_repo(repo, files)
    for rel in files:
        hf_hub_download(repo, rel, cache_dir=hf_cache_dir(), endpoint=hub.url)


@pytest.mark.parametrize("how", ["offline", "unreachable"])
def test_a_model_in_a_prefilled_cache_needs_no_network(
    how: str, _isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = repo_files(dim=8)
    with serve() as other:
        fill_cache_like_another_tool(other, REPO, files)
        before = other.requests()
        if how == "offline":
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        # else HF_ENDPOINT points at a closed port (the fixture's default)
        path = from_hf_cache(TINY.name)
        assert path == _isolated / TINY.name
        assert pull(TINY.name, progress=False) == path
        assert other.requests() == before  # the stand-in heard nothing more
    assert json.loads((path / MANIFEST).read_text())["files"][ONNX]["verified"] == "server"
    assert verify(TINY.name) == [(TINY.name, True, [])]

    # resolve() takes a cached model as it is, with no explicit pull.
    remove(TINY.name)
    assert resolve(TINY.name) == path and installed(TINY.name) == path

    # A cleaned cache leaves broken links: resolve says how to get the model back.
    import shutil

    shutil.rmtree(hf_cache_dir())
    with pytest.raises(ModelError, match=f"magray models pull {TINY.name} --force"):
        resolve(TINY.name)
    from magray.embed.select import load_embedder

    with pytest.raises(ModelError, match="Hugging Face cache cleaned"):
        load_embedder(TINY.name)  # an explicit choice says the same, not "no model.onnx"
    [(_name, ok, problems)] = verify(TINY.name)
    assert ok is False and len(problems) == len(set(problems)) == len(TINY.files)


def test_offline_force_and_a_damaged_install_recheck_the_cache(
    _isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = repo_files(dim=8)
    with serve() as other:
        fill_cache_like_another_tool(other, REPO, files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = pull(TINY.name, progress=False)

    # --force offline installs again from the cache, every file hashed again.
    again = pull(TINY.name, progress=False, force=True)
    assert again == path and verify(TINY.name) == [(TINY.name, True, [])]
    # (Taken after the forced install: it rewrites the manifest, in a later second or not.)
    first = json.loads((path / MANIFEST).read_text())["installed_at"]

    # A cached file cut short: a plain pull notices (sizes), re-checks the cache, rejects
    # and evicts the blob, and installs nothing new.
    blob_path = (path / ONNX).resolve()
    blob_path.write_bytes(files[ONNX][:1000])
    with pytest.raises(ModelDownloadError, match=r"onnx/model\.onnx.*failed its checksum"):
        pull(TINY.name, progress=False)
    assert not blob_path.exists()
    assert json.loads((path / MANIFEST).read_text())["installed_at"] == first
    with pytest.raises(ModelDownloadError, match="offline mode is on"):
        pull(TINY.name, progress=False, force=True)  # nothing left to install from


def test_an_incomplete_cache_is_not_used(hub: Hub, _isolated: Path) -> None:
    from huggingface_hub import hf_hub_download

    hf_hub_download(REPO, ONNX, cache_dir=hf_cache_dir(), endpoint=hub.url)  # one file of six
    assert from_hf_cache(TINY.name) is None
    assert from_hf_cache("not-a-registry-model") is None
    path = pull(TINY.name, progress=False)  # fetches the other five, not the graph again
    assert hub.content_requests(ONNX) == [(None, 200)]
    assert verify(TINY.name) == [(TINY.name, True, [])] and path.is_dir()


def test_offline_mode_without_a_cached_copy(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelDownloadError) as caught:
        pull(TINY.name, progress=False)
    message = str(caught.value)
    assert "offline mode is on" in message and "HF_HUB_OFFLINE" in message
    assert "magray models import DIR" in message
    assert hub.requests() == 0


def test_interrupted_transfer_is_resumed_with_range(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # The library writes a transfer in chunks of DOWNLOAD_CHUNK_SIZE: the file must be big
    # enough that a whole chunk arrives before the connection drops.
    chunk = constants.DOWNLOAD_CHUNK_SIZE
    big = blob("large", 2 * chunk + 12345)
    hub.add_repo(REPO, dict(repo_files(dim=8), **{ONNX: big}))
    hub.queued[ONNX] = ["truncate"]  # half the body, then the connection closes
    path = pull(TINY.name, progress=False)
    requests = hub.content_requests(ONNX)
    assert requests[0] == (None, 200) and len(requests) == 2
    rng, status = requests[1]
    assert status == 206 and rng is not None and rng.startswith("bytes=")
    assert int(rng[len("bytes=") : -1]) == chunk  # what arrived whole was kept
    assert (path / ONNX).read_bytes() == big
    assert json.loads((path / MANIFEST).read_text())["files"][ONNX]["sha256"] == sha256(big)


@pytest.mark.parametrize("rel", [ONNX, "tokenizer.json"])  # an LFS file, a small one
def test_a_corrupted_file_is_rejected_and_evicted(hub: Hub, _isolated: Path, rel: str) -> None:
    data = repo_files(dim=8)[rel]
    bad = bytes([data[0] ^ 0xFF]) + data[1:]
    hub.queued[rel] = ["corrupt"]
    with pytest.raises(ModelDownloadError) as caught:
        pull(TINY.name, progress=False)
    message = str(caught.value)
    expected, actual = (
        (sha256(data), sha256(bad)) if rel == ONNX else (git_blob_id(data), git_blob_id(bad))
    )
    assert rel in message and expected in message and actual in message
    assert "removed from the Hugging Face cache" in message
    assert installed(TINY.name) is None and leftovers(_isolated) == []
    assert from_hf_cache(TINY.name) is None  # the bad blob is gone from the cache

    # The next pull downloads that file again and succeeds.
    path = pull(TINY.name, progress=False)
    assert (path / rel).read_bytes() == data
    assert hub.content_requests(rel) == [(None, 200), (None, 200)]


def _spec_fields(spec: ModelSpec) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


def test_a_pinned_checksum_wins(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    data = repo_files(dim=8)["tokenizer.json"]
    wrong = ModelSpec(**{**_spec_fields(TINY), "sha256": {"tokenizer.json": "0" * 64}})
    monkeypatch.setitem(REGISTRY, TINY.name, wrong)
    with pytest.raises(ModelDownloadError, match="registry pins 0{64}.*changed upstream"):
        pull(TINY.name, progress=False)
    assert installed(TINY.name) is None
    # The file matched the hub: it stays in the cache other tools share.
    assert hub.content_requests("tokenizer.json") == [(None, 200)]

    right = ModelSpec(**{**_spec_fields(TINY), "sha256": {"tokenizer.json": sha256(data)}})
    monkeypatch.setitem(REGISTRY, TINY.name, right)
    path = pull(TINY.name, progress=False)
    entry = json.loads((path / MANIFEST).read_text())["files"]["tokenizer.json"]
    assert entry["verified"] == "pinned" and entry["sha256"] == sha256(data)
    assert hub.content_requests("tokenizer.json") == [(None, 200)]  # not downloaded again


def test_hub_refusals_are_one_clear_sentence(
    hub: Hub, _isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = pull(TINY.name, progress=False)

    # A missing file: the old install stays as it was.
    files = repo_files(dim=8)
    del files["modules.json"]
    hub.add_repo(REPO, files)
    with pytest.raises(ModelDownloadError, match=r"modules\.json.*not found.*404"):
        pull(TINY.name, progress=False, force=True)
    assert verify(TINY.name) == [(TINY.name, True, [])] and installed(TINY.name) == path

    # A server error on the transfer.
    hub.add_repo(REPO, repo_files(dim=8))
    hub.queued["config.json"] = ["503"]
    with pytest.raises(ModelDownloadError, match=r"config\.json.*HTTP 503.*HF_ENDPOINT"):
        pull(TINY.name, progress=False, force=True)

    # A gated repository: HF_TOKEN opens it.
    hub.gated[REPO] = "hf_secret"
    with pytest.raises(ModelDownloadError) as caught:
        pull(TINY.name, progress=False, force=True)
    assert "HTTP 401" in str(caught.value) and "HF_TOKEN" in str(caught.value)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert pull(TINY.name, progress=False, force=True) == path
    assert leftovers(_isolated) == []


def test_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch, _isolated: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: connections are refused
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(ModelDownloadError) as caught:
        pull(TINY.name, progress=False)
    assert time.monotonic() - start < 5  # not the library's half minute of retries
    message = str(caught.value)
    assert message.startswith(f"could not download {ONNX} of model '{TINY.name}'")
    assert "connection refused" in message
    for advice in ("check the network", "HF_ENDPOINT", "magray models import DIR"):
        assert advice in message
    assert ". " not in message  # one sentence
    assert isinstance(caught.value, ModelError) and isinstance(caught.value, MagrayError)
    assert installed(TINY.name) is None and leftovers(_isolated) == []
    # The advice names the variable that sets the hub now.
    monkeypatch.setenv("MAGRAY_HUB_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(ModelDownloadError, match="set MAGRAY_HUB_URL to a reachable mirror"):
        pull(TINY.name, progress=False)
    monkeypatch.delenv("MAGRAY_HUB_URL")

    # A hub that accepts connections and never answers: bounded by the timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        start = time.monotonic()
        with pytest.raises(ModelDownloadError, match="did not answer in time"):
            pull(TINY.name, progress=False, timeout=0.5)
        assert time.monotonic() - start < 5
    with pytest.raises(MagrayError, match="timeout must be > 0"):
        pull(TINY.name, timeout=0)


def test_progress_bar_only_on_a_terminal(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    pull(TINY.name, progress=True)
    shown = screen.getvalue()
    assert "model.onnx" in shown and "100%" in shown
    pull(TINY.name, progress=False, force=True)
    assert screen.getvalue() == shown


def test_a_real_model_from_a_prefilled_cache_embeds_offline(
    minilm_dir: Path, monkeypatch: pytest.MonkeyPatch, _isolated: Path
) -> None:
    import numpy as np

    from magray.embed.select import load_embedder

    spec = REGISTRY[DEFAULT_MODEL]
    layout = {rel: rel for rel in spec.files}
    layout[ONNX] = "model.onnx"  # the shared directory keeps its graph at the top
    files = {rel: (minilm_dir / src).read_bytes() for rel, src in layout.items()}
    with serve() as other:
        fill_cache_like_another_tool(other, spec.repo, files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = load_embedder(DEFAULT_MODEL, device="cpu")
    assert embedder is not None
    reference = json.loads((minilm_dir / "reference_embeddings.json").read_text())
    texts, expected = reference["sentences"], np.asarray(reference["embeddings"], dtype=np.float32)
    got = embedder.embed(texts[:4])
    assert np.allclose(got, expected[:4], atol=1e-4)
    assert installed(DEFAULT_MODEL) == _isolated / DEFAULT_MODEL


# -- import, verify, remove -----------------------------------------------------------------


def make_layout(root: Path, *, st_files: bool = True) -> Path:
    root.mkdir(parents=True)
    (root / "onnx").mkdir()
    (root / "onnx" / "model.onnx").write_bytes(blob("graph", 5000))
    (root / "tokenizer.json").write_text('{"model": {}}')
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    if st_files:
        (root / "modules.json").write_text(
            json.dumps(
                [
                    {"path": "", "type": "sentence_transformers.models.Transformer"},
                    {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                    {"path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
                ]
            )
        )
        (root / "1_Pooling").mkdir()
        (root / "1_Pooling" / "config.json").write_text(
            json.dumps({"word_embedding_dimension": 48, "pooling_mode_cls_token": True})
        )
        (root / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
        (root / "config.json").write_text('{"hidden_size": 999}')
    else:
        (root / "config.json").write_text('{"hidden_size": 24, "max_position_embeddings": 1024}')
        (root / "modules.json").write_text(
            '[{"path": "", "type": "sentence_transformers.models.Transformer"}]'
        )
    return root


def test_import_dir_fake_layout(tmp_path: Path, _isolated: Path) -> None:
    src = make_layout(tmp_path / "src" / "my-model")
    path = import_dir(src, name="mine")
    assert path == _isolated / "mine" and installed("mine") == path
    manifest = json.loads((path / MANIFEST).read_text())
    expected = {
        "onnx/model.onnx",
        "tokenizer.json",
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
        "config.json",
    }
    assert set(manifest["files"]) == expected  # hidden entries are not copied
    for rel in expected:
        data = (src / rel).read_bytes()
        assert (path / rel).read_bytes() == data
        assert manifest["files"][rel] == {"size": len(data), "sha256": sha256(data)}
    spec = manifest["spec"]
    assert (spec["dim"], spec["pooling"], spec["max_length"], spec["normalize"]) == (
        48,
        "cls",
        128,
        True,
    )
    assert manifest["onnx"] == "onnx/model.onnx" and manifest["source"] == "import"
    row = next(r for r in list_models() if r["name"] == "mine")
    assert row["installed"] and row["dim"] == 48 and row["source"] == "import"
    assert info("mine")["pooling"] == "cls"
    assert resolve("mine") == path
    assert resolve(src) == src.resolve()  # a raw model directory is usable as it is
    assert verify() == [("mine", True, [])]
    assert leftovers(_isolated) == []

    # Without pooling files: hidden_size gives the dimension; no Normalize module.
    other = import_dir(make_layout(tmp_path / "src" / "plain-model", st_files=False))
    assert other.name == "plain-model"
    spec = json.loads((other / MANIFEST).read_text())["spec"]
    assert (spec["dim"], spec["pooling"], spec["normalize"], spec["max_length"]) == (
        24,
        "mean",
        False,
        1024,
    )

    remove("mine")
    assert installed("mine") is None and not path.exists()
    with pytest.raises(ModelError, match="not installed"):
        remove("mine")
    assert [name for name, _ok, _p in verify()] == ["plain-model"]


def test_import_dir_rejects_incomplete_layouts(tmp_path: Path, _isolated: Path) -> None:
    src = make_layout(tmp_path / "m")
    (src / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"lacks tokenizer\.json"):
        import_dir(src)
    (src / "tokenizer.json").write_text("{}")
    (src / "onnx" / "model.onnx").unlink()
    with pytest.raises(ModelError, match=r"model\.onnx or onnx/model\.onnx"):
        import_dir(src)
    with pytest.raises(ModelError, match="not a directory"):
        import_dir(tmp_path / "absent")
    (src / "model.onnx").write_bytes(b"graph at the top level")
    with pytest.raises(ModelError, match="invalid model name"):
        import_dir(src, name="../escape")
    assert import_dir(src).name == "m"
    assert leftovers(_isolated) == []


def test_import_real_model_then_tamper(minilm_dir: Path, _isolated: Path) -> None:
    path = import_dir(minilm_dir)
    assert path.name == DEFAULT_MODEL and installed(DEFAULT_MODEL) == path
    manifest = json.loads((path / MANIFEST).read_text())
    spec = manifest["spec"]
    assert (spec["dim"], spec["pooling"], spec["max_length"], spec["normalize"]) == (
        384,
        "mean",
        256,
        True,
    )
    assert manifest["onnx"] == "model.onnx"
    lines = (minilm_dir / "SHA256SUMS").read_text().splitlines()
    sums = {name.lstrip("*"): digest for digest, name in (line.split() for line in lines)}
    assert "model.onnx" in sums
    for rel, digest in sums.items():
        assert manifest["files"][rel]["sha256"] == digest
    row = next(r for r in list_models() if r["name"] == DEFAULT_MODEL)
    assert row["installed"] is True and row["path"] == str(path)
    assert verify(DEFAULT_MODEL) == [(DEFAULT_MODEL, True, [])]

    tokenizer = path / "tokenizer.json"
    data = bytearray(tokenizer.read_bytes())
    data[100] ^= 0x01  # same size, different bytes
    tokenizer.write_bytes(bytes(data))
    (path / "vocab.txt").unlink()
    [(name, ok, problems)] = verify(DEFAULT_MODEL)
    assert name == DEFAULT_MODEL and ok is False
    assert any(p.startswith("tokenizer.json: sha256") for p in problems)
    assert "vocab.txt: missing" in problems
    remove(DEFAULT_MODEL)
    assert installed(DEFAULT_MODEL) is None


def test_unknown_names(_isolated: Path) -> None:
    for call in (
        lambda: pull("no-such-model", progress=False),
        lambda: get_spec("no-such-model"),
        lambda: info("no-such-model"),
    ):
        with pytest.raises(ModelError, match="no-such-model.*all-MiniLM-L6-v2, bge-small"):
            call()
    with pytest.raises(ModelError) as caught:
        resolve("no-such-model")
    assert "magray models pull NAME" in str(caught.value) and "bge-m3" in str(caught.value)
    with pytest.raises(ModelError, match=f"magray models pull {DEFAULT_MODEL}"):
        resolve(DEFAULT_MODEL)
    with pytest.raises(ModelError, match="not installed"):
        remove("no-such-model")
    with pytest.raises(ModelError, match="not installed"):
        verify("no-such-model")
    assert installed("no-such-model") is None and installed("../etc") is None
    assert info(DEFAULT_MODEL)["installed"] is False
    assert not models.installed(DEFAULT_MODEL)
