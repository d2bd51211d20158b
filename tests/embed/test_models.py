"""Model management: downloads from a fake hub on 127.0.0.1, imports, verification, removal.

The fake hub serves small byte blobs in the Hugging Face ``resolve`` URL layout. Large
("LFS") files are redirected to a storage URL, with their sha256 in ``X-Linked-Etag`` on the
redirect, as the real hub does. Faults can be queued per file (one per request) or made
permanent.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import socket
import sys
import threading
import time
import urllib.parse
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
    get_spec,
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

REPO = "acme/tiny-embed"
ONNX = "onnx/model.onnx"


def blob(seed: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


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


# -- the fake hub ---------------------------------------------------------------------------


class FakeHub:
    def __init__(self) -> None:
        self.url = ""
        self.blobs: dict[str, bytes] = {}  # "/repo/resolve/rev/file" -> bytes
        self.lfs: set[str] = {ONNX}  # served through a redirect, like the real hub
        self.queued: dict[str, list[str]] = {}  # file -> faults for its next requests
        self.always: dict[str, str] = {}  # file -> a fault on every request
        self.log: list[tuple[str, str | None, int]] = []  # (path, Range header, status)
        self.lock = threading.Lock()

    def add_repo(self, repo: str, files: dict[str, bytes], revision: str = "main") -> None:
        for rel, data in files.items():
            self.blobs[f"/{repo}/resolve/{revision}/{rel}"] = data

    def fault(self, rel: str) -> str | None:
        with self.lock:
            queue = self.queued.get(rel)
            if queue:
                return queue.pop(0)
            return self.always.get(rel)

    def record(self, path: str, rng: str | None, status: int) -> None:
        with self.lock:
            self.log.append((path, rng, status))

    def content_requests(self, rel: str) -> list[tuple[str | None, int]]:
        """(Range header, status) of the requests that asked for the bytes of ``rel``."""
        with self.lock:
            return [
                (rng, status)
                for path, rng, status in self.log
                if path.endswith("/" + rel) and (rel not in self.lfs or path.startswith("/cdn/"))
            ]


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    hub: FakeHub


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        hub = self.server.hub
        path = urllib.parse.unquote(self.path)
        rng = self.headers.get("Range")
        storage = path.startswith("/cdn/")
        key = path[len("/cdn") :] if storage else path
        data = hub.blobs.get(key)
        if data is None:
            hub.record(path, rng, 404)
            self.send_error(404)
            return
        rel = key.split("/resolve/", 1)[1].split("/", 1)[1]
        if rel in hub.lfs and not storage:
            hub.record(path, rng, 302)
            self.send_response(302)
            self.send_header("Location", "/cdn" + key)
            self.send_header("X-Linked-Etag", f'"{sha256(data)}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        fault = hub.fault(rel)
        if fault == "503":
            hub.record(path, rng, 503)
            self.send_error(503)
            return
        body = bytes([data[0] ^ 0xFF]) + data[1:] if fault == "corrupt" else data
        headers: list[tuple[str, str]] = []
        if rel in hub.lfs:
            headers.append(("ETag", f'"{hashlib.md5(data).hexdigest()}"'))  # storage: no sha
        elif rel == "tokenizer.json":
            headers.append(("ETag", f'W/"{sha256(data)}"'))
        else:
            headers.append(("ETag", f'"{hashlib.sha1(data).hexdigest()}"'))  # a git blob id
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if match is not None and fault != "ignore_range":
            start = int(match.group(1))
            if start >= len(body):
                hub.record(path, rng, 416)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        else:
            status = 200
        hub.record(path, rng, status)
        chunk = body[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        declared = len(chunk) + (1 if fault == "overlong" else 0)
        self.send_header("Content-Length", str(declared))
        self.send_header("Accept-Ranges", "bytes")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if fault == "truncate":
            self.wfile.write(chunk[: len(chunk) // 2])  # then the connection closes
        else:
            self.wfile.write(chunk)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "models"
    monkeypatch.setenv("MAGRAY_MODELS_DIR", str(root))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setitem(REGISTRY, TINY.name, TINY)
    return root


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    fake = FakeHub()
    fake.add_repo(REPO, repo_files(dim=8))
    server = _Server(("127.0.0.1", 0), _Handler)
    server.hub = fake
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("MAGRAY_HUB_URL", fake.url + "/")
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def leftovers(root: Path) -> list[str]:
    """Entries of the models directory other than installed models and lock files."""
    if not root.exists():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if not p.name.endswith(".lock") and not (p / MANIFEST).is_file()
    )


def no_sleep() -> tuple[list[float], Any]:
    slept: list[float] = []
    return slept, slept.append


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
    monkeypatch.delenv("MAGRAY_HUB_URL", raising=False)
    assert hub_url() == "https://huggingface.co"
    assert file_url(REGISTRY[DEFAULT_MODEL], "onnx/model.onnx") == (
        "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main/onnx/model.onnx"
    )
    monkeypatch.setenv("MAGRAY_HUB_URL", "http://mirror.example/hf/")
    assert hub_url() == "http://mirror.example/hf"
    assert file_url(TINY, "1_Pooling/config.json") == (
        f"http://mirror.example/hf/{REPO}/resolve/main/1_Pooling/config.json"
    )


# -- pull -----------------------------------------------------------------------------------


def test_pull_installs_verifies_and_records(hub: FakeHub, _isolated: Path) -> None:
    calls: list[tuple[str, int, int | None]] = []
    slept, sleep = no_sleep()
    path = pull(TINY.name, progress=lambda f, d, t: calls.append((f, d, t)), sleep=sleep)
    files = repo_files(dim=8)

    assert path == _isolated / TINY.name
    for rel, data in files.items():
        assert (path / rel).read_bytes() == data
    assert not list(path.rglob("*.part"))
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["name"] == TINY.name
    assert (manifest["repo"], manifest["revision"]) == (REPO, "main")
    assert manifest["onnx"] == ONNX and manifest["installed_at"]
    assert set(manifest["files"]) == set(files)
    for rel, data in files.items():
        entry = manifest["files"][rel]
        assert (entry["size"], entry["sha256"]) == (len(data), sha256(data))
    # The redirect's X-Linked-Etag and a weak ETag are checked; a git blob id is not a sha256.
    assert manifest["files"][ONNX]["verified"] == "server"
    assert manifest["files"]["tokenizer.json"]["verified"] == "server"
    assert manifest["files"]["config.json"]["verified"] == "recorded"
    assert manifest["spec"]["dim"] == 8 and manifest["spec"]["query_prefix"] == "q: "
    assert slept == []

    # Every file was fetched once from its resolve URL; progress ended at the full size.
    for rel, data in files.items():
        assert (f"/{REPO}/resolve/main/{rel}", None, 302 if rel == ONNX else 200) in hub.log
        assert (rel, len(data), len(data)) in calls
    assert all(d <= t for _, d, t in calls if t is not None)

    assert installed(TINY.name) == path
    row = next(r for r in list_models() if r["name"] == TINY.name)
    assert row["installed"] is True and row["path"] == str(path) and row["dim"] == 8
    assert {r["name"] for r in list_models()} >= set(REGISTRY)
    details = info(TINY.name)
    assert details["installed"] is True and details["dim"] == 8
    assert details["files"][ONNX]["sha256"] == sha256(files[ONNX])
    assert details["size_bytes"] == sum(len(d) for d in files.values())
    assert verify(TINY.name) == [(TINY.name, True, [])]
    assert resolve(TINY.name) == path
    assert model_settings(path)["onnx"] == ONNX
    assert leftovers(_isolated) == []

    # Pulling an installed, current model does not download again; force does.
    requests = len(hub.log)
    assert pull(TINY.name, progress=False) == path
    assert len(hub.log) == requests
    pull(TINY.name, progress=False, force=True)
    assert len(hub.log) > requests


def test_pull_registry_model_and_replace(hub: FakeHub, _isolated: Path) -> None:
    files = repo_files()
    hub.add_repo("sentence-transformers/all-MiniLM-L6-v2", files)
    path = pull(DEFAULT_MODEL, progress=True)  # stderr is not a terminal here: no bar
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["spec"]["dim"] == 384 and manifest["spec"]["pooling"] == "mean"
    assert (path / "1_Pooling/config.json").read_bytes() == files["1_Pooling/config.json"]

    # A newer upstream file replaces the install only once the new copy is complete.
    newer = dict(files, **{"tokenizer.json": b'{"version": "2.0"}'})
    hub.add_repo("sentence-transformers/all-MiniLM-L6-v2", newer)
    assert pull(DEFAULT_MODEL, progress=False, force=True) == path
    assert (path / "tokenizer.json").read_bytes() == b'{"version": "2.0"}'
    assert verify(DEFAULT_MODEL) == [(DEFAULT_MODEL, True, [])]
    assert leftovers(_isolated) == []


def test_progress_bar_only_on_a_terminal(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    pull(TINY.name, progress=True)
    shown = screen.getvalue()
    assert ONNX in shown and "tokenizer.json" in shown
    pull(TINY.name, progress=False, force=True)
    assert screen.getvalue() == shown


def test_interrupted_transfer_is_resumed_with_range(hub: FakeHub) -> None:
    data = repo_files(dim=8)[ONNX]
    hub.queued[ONNX] = ["truncate"]
    slept, sleep = no_sleep()
    path = pull(TINY.name, progress=False, sleep=sleep)
    assert hub.content_requests(ONNX) == [(None, 200), (f"bytes={len(data) // 2}-", 206)]
    assert (path / ONNX).read_bytes() == data
    assert len(slept) == 1
    assert json.loads((path / MANIFEST).read_text())["files"][ONNX]["sha256"] == sha256(data)


def test_range_ignored_by_the_server_starts_over(hub: FakeHub) -> None:
    data = repo_files(dim=8)[ONNX]
    hub.queued[ONNX] = ["truncate", "ignore_range"]
    path = pull(TINY.name, progress=False, sleep=no_sleep()[1])
    assert hub.content_requests(ONNX) == [(None, 200), (f"bytes={len(data) // 2}-", 200)]
    assert (path / ONNX).read_bytes() == data


def test_complete_part_answered_with_416(hub: FakeHub) -> None:
    # The body arrives whole but the announced length is one byte longer: the retry asks for
    # the rest, the server says there is none (416), and the part is verified as it is.
    data = repo_files(dim=8)[ONNX]
    hub.queued[ONNX] = ["overlong"]
    path = pull(TINY.name, progress=False, sleep=no_sleep()[1])
    assert hub.content_requests(ONNX) == [(None, 200), (f"bytes={len(data)}-", 416)]
    assert (path / ONNX).read_bytes() == data


def test_resume_across_pulls(hub: FakeHub, _isolated: Path) -> None:
    data = repo_files(dim=8)[ONNX]
    hub.queued[ONNX] = ["truncate"]
    with pytest.raises(ModelDownloadError, match="after 1 attempt "):
        pull(TINY.name, progress=False, attempts=1, sleep=no_sleep()[1])
    assert installed(TINY.name) is None and not (_isolated / TINY.name).exists()
    path = pull(TINY.name, progress=False, attempts=1)
    assert hub.content_requests(ONNX)[-1] == (f"bytes={len(data) // 2}-", 206)
    assert (path / ONNX).read_bytes() == data
    assert leftovers(_isolated) == []


def test_server_errors_are_retried_and_404_is_not(hub: FakeHub) -> None:
    hub.queued["config.json"] = ["503", "503"]
    slept, sleep = no_sleep()
    path = pull(TINY.name, progress=False, sleep=sleep)
    assert len(slept) == 2 and (path / "config.json").is_file()

    del hub.blobs[f"/{REPO}/resolve/main/modules.json"]
    slept, sleep = no_sleep()
    with pytest.raises(ModelDownloadError, match=r"modules\.json.*404"):
        pull(TINY.name, progress=False, force=True, sleep=sleep)
    assert slept == []
    assert verify(TINY.name) == [(TINY.name, True, [])]  # the old install is untouched


@pytest.mark.parametrize("rel", [ONNX, "tokenizer.json"])  # the first file, and a later one
def test_corrupted_file_is_rejected(hub: FakeHub, _isolated: Path, rel: str) -> None:
    data = repo_files(dim=8)[rel]
    bad = bytes([data[0] ^ 0xFF]) + data[1:]
    hub.always[rel] = "corrupt"
    with pytest.raises(ModelDownloadError) as caught:
        pull(TINY.name, progress=False, sleep=no_sleep()[1])
    message = str(caught.value)
    assert rel in message and sha256(data) in message and sha256(bad) in message
    assert installed(TINY.name) is None
    assert not (_isolated / TINY.name).exists()
    assert leftovers(_isolated) == []


def test_pinned_checksum_wins(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    data = repo_files(dim=8)["tokenizer.json"]
    wrong = ModelSpec(**{**_spec_fields(TINY), "sha256": {"tokenizer.json": "0" * 64}})
    monkeypatch.setitem(REGISTRY, TINY.name, wrong)
    with pytest.raises(ModelDownloadError, match="0{64}.*pinned"):
        pull(TINY.name, progress=False)
    assert installed(TINY.name) is None

    right = ModelSpec(**{**_spec_fields(TINY), "sha256": {"tokenizer.json": sha256(data)}})
    monkeypatch.setitem(REGISTRY, TINY.name, right)
    path = pull(TINY.name, progress=False)
    entry = json.loads((path / MANIFEST).read_text())["files"]["tokenizer.json"]
    assert entry["verified"] == "pinned" and entry["sha256"] == sha256(data)


def _spec_fields(spec: ModelSpec) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


def test_unresponsive_server_times_out(monkeypatch: pytest.MonkeyPatch, _isolated: Path) -> None:
    # Connections complete in the listen backlog, but nothing ever answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        monkeypatch.setenv("MAGRAY_HUB_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        slept, sleep = no_sleep()
        start = time.monotonic()
        with pytest.raises(ModelDownloadError) as caught:
            pull(TINY.name, progress=False, timeout=0.5, attempts=2, sleep=sleep)
        elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 10.0
    assert len(slept) == 1  # one backoff between the two attempts, not actually slept
    message = str(caught.value)
    assert "no answer within 0.5 s" in message and "after 2 attempts" in message
    assert installed(TINY.name) is None and leftovers(_isolated) == []


def test_offline_gives_one_clear_sentence(monkeypatch: pytest.MonkeyPatch, _isolated: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: connections are refused
    monkeypatch.setenv("MAGRAY_HUB_URL", f"http://127.0.0.1:{port}")
    slept, sleep = no_sleep()
    with pytest.raises(ModelDownloadError) as caught:
        pull(TINY.name, progress=False, attempts=3, sleep=sleep)
    message = str(caught.value)
    assert message.startswith(f"could not download {ONNX} of model '{TINY.name}'")
    assert "connection refused" in message
    for advice in ("check the network", "MAGRAY_HUB_URL", "magray models import DIR"):
        assert advice in message
    assert ". " not in message  # one sentence
    assert len(slept) == 2
    assert isinstance(caught.value, ModelError) and isinstance(caught.value, MagrayError)
    assert installed(TINY.name) is None and leftovers(_isolated) == []


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
