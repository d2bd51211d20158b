"""A Hugging Face hub stand-in on 127.0.0.1, serving what ``huggingface_hub`` downloads use.

``HEAD`` and ``GET`` on ``/{repo}/resolve/{revision}/{file}`` answer as the real hub does:
``X-Repo-Commit`` names the commit, a small file's ``ETag`` is its git blob id, and a large
("LFS") file is a redirect to a storage host of another origin, whose ``X-Linked-Etag`` is
the file's sha256 and ``X-Linked-Size`` its size. The storage host honours ``Range``.

A repository in ``gated`` answers 401 unless the request carries its token. Faults are
queued per file, one per content request: ``truncate`` sends half the body and
closes the connection, ``stall`` sends half the body and then waits (so that a client can be
killed mid-transfer), ``corrupt`` flips the first byte, ``503`` answers with a server error.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def git_blob_id(data: bytes) -> str:
    """The id git gives a blob: sha1 of ``blob {size}\\0`` and the bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Hub:
    """The state of the stand-in: its repositories, faults and a log of requests."""

    def __init__(self) -> None:
        self.url = ""  # the endpoint, for HF_ENDPOINT
        self.storage_url = ""  # where LFS redirects point
        self.repos: dict[tuple[str, str], dict[str, bytes]] = {}
        self.commits: dict[tuple[str, str], str] = {}
        self.lfs_min = 1024  # files at least this large are served as LFS files
        self.gated: dict[str, str] = {}  # repo -> the token that may read it
        self.queued: dict[str, list[str]] = {}
        self.log: list[tuple[str, str, str | None, int]] = []  # (method, path, Range, status)
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends every stall
        self.stalled = threading.Event()  # set once a stall has sent its half

    def add_repo(self, repo: str, files: dict[str, bytes], revision: str = "main") -> str:
        """Publish ``files`` as ``revision`` of ``repo``; returns the new commit id."""
        digest = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
        with self.lock:
            self.repos[(repo, revision)] = dict(files)
            self.commits[(repo, revision)] = digest
        return digest

    def fault(self, rel: str) -> str | None:
        with self.lock:
            queue = self.queued.get(rel)
            return queue.pop(0) if queue else None

    def record(self, method: str, path: str, rng: str | None, status: int) -> None:
        with self.lock:
            self.log.append((method, path, rng, status))

    def content_requests(self, rel: str) -> list[tuple[str | None, int]]:
        """(Range header, status) of each GET that asked for the bytes of ``rel``."""
        with self.lock:
            return [
                (rng, status)
                for method, path, rng, status in self.log
                if method == "GET" and re.fullmatch(rf"/.+/resolve/[^/]+/{re.escape(rel)}", path)
            ]

    def requests(self) -> int:
        """How many requests asked for a repository file (HEAD or GET)."""
        with self.lock:
            return sum("/resolve/" in path for _method, path, _rng, _status in self.log)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    hub: Hub
    storage: bool


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _lookup(self) -> tuple[str, str, str, bytes, str] | None:
        path = urllib.parse.urlsplit(self.path).path
        match = re.fullmatch(r"/(?:storage/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if match is None:
            return None
        repo, revision, rel = (urllib.parse.unquote(g) for g in match.groups())
        hub = self.server.hub
        with hub.lock:
            files = hub.repos.get((repo, revision))
            commit = hub.commits.get((repo, revision))
        if files is None or rel not in files or commit is None:
            return None
        return repo, revision, rel, files[rel], commit

    def _empty(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, *, body: bool) -> None:
        hub = self.server.hub
        method = "GET" if body else "HEAD"
        rng = self.headers.get("Range")
        found = self._lookup()
        if found is None:
            hub.record(method, self.path, rng, 404)
            self._empty(404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "no such file"})
            return
        repo, revision, rel, data, commit = found
        token = hub.gated.get(repo)
        authorized = self.headers.get("Authorization") == f"Bearer {token}"
        if token is not None and not self.server.storage and not authorized:
            hub.record(method, self.path, rng, 401)
            self._empty(401, {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated repo"})
            return
        lfs = len(data) >= hub.lfs_min
        common = {"X-Repo-Commit": commit}
        if lfs and not self.server.storage:
            target = f"{hub.storage_url}/storage/{repo}/resolve/{revision}/{rel}"
            hub.record(method, self.path, rng, 302)
            self._empty(
                302,
                {
                    **common,
                    "Location": target,
                    "X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"',
                    "X-Linked-Size": str(len(data)),
                    "ETag": f'"{git_blob_id(data)}"',
                },
            )
            return
        etag = hashlib.md5(data).hexdigest() if lfs else git_blob_id(data)
        fault = hub.fault(rel) if body else None
        if fault == "503":
            hub.record(method, self.path, rng, 503)
            self._empty(503, {})
            return
        payload = bytes([data[0] ^ 0xFF]) + data[1:] if fault == "corrupt" else data
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        status = 200
        if m is not None:
            start = int(m.group(1))
            if start >= len(payload):
                hub.record(method, self.path, rng, 416)
                self._empty(416, {"Content-Range": f"bytes */{len(payload)}"})
                return
            status = 206
        hub.record(method, self.path, rng, status)
        chunk = payload[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag}"')
        if not self.server.storage:
            self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if not body:
            return
        if fault in ("truncate", "stall"):
            self.wfile.write(chunk[: len(chunk) // 2])
            self.wfile.flush()
            if fault == "stall":
                hub.stalled.set()
                hub.release.wait(30)
            self.close_connection = True
            return
        self.wfile.write(chunk)
        self.wfile.flush()


@contextmanager
def serve() -> Iterator[Hub]:
    """Run the hub and its storage host on free loopback ports for the ``with`` block."""
    hub = Hub()
    servers = []
    threads = []
    for storage in (False, True):
        server = _Server(("127.0.0.1", 0), _Handler)
        server.hub = hub
        server.storage = storage
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append(server)
        threads.append(thread)
    hub.url = f"http://127.0.0.1:{servers[0].server_address[1]}"
    hub.storage_url = f"http://127.0.0.1:{servers[1].server_address[1]}"
    try:
        yield hub
    finally:
        hub.release.set()
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(5)
