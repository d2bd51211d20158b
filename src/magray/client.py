"""``magray.connect()``: a Memory served by ``magray serve``, over gRPC.

:class:`RemoteMemory` has the methods, arguments, return values and exceptions of
:class:`magray.Memory`, so code written for ``magray.open`` runs unchanged against a
server. Differences, all documented on the methods: paths given to
``export_jsonl``/``import_jsonl`` are on the client's machine (the lines travel over the
wire), ``backup(name)`` writes under the server's root, and ``reembed`` is refused (run
it where the store lives).

Calls that are safe to repeat (search, get, recent, embed, stats, export) are retried by
gRPC itself on UNAVAILABLE, with exponential backoff; writes never are, so a write is
applied at most once.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc

from magray import wire
from magray.errors import InvalidInputError
from magray.memory.record import Hit, ImportReport, Layer, LifecycleReport, Record
from magray.v1 import memory_pb2 as pb
from magray.v1 import memory_pb2_grpc as pb_grpc

_UNSET: Any = object()
_RETRIED = ("Search", "Get", "Recent", "Embed", "Stats", "Export")
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "magray.v1.Memory", "method": m} for m in _RETRIED],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def parse_url(url: str) -> tuple[str, bool, dict[str, str]]:
    """(target, tls, query) of grpc://HOST:PORT or grpcs://HOST:PORT[?ca=FILE]."""
    parts = urlsplit(url)
    if parts.scheme not in ("grpc", "grpcs") or not parts.hostname or parts.port is None:
        raise InvalidInputError(f"server URL {url!r} is not grpc://HOST:PORT or grpcs://HOST:PORT")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return f"{host}:{parts.port}", parts.scheme == "grpcs", query


class RemoteMemory:
    """A namespace of a magray server, with the API of :class:`magray.Memory`.
    Thread-safe (one channel, shared). Use it as a context manager or call close()."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = wire.DEFAULT_NAMESPACE,
        token: str | None = None,
        timeout: float | None = 60.0,
        root_certificates: bytes | None = None,
        max_message_mb: int = 64,
    ) -> None:
        from magray.server.tenants import check_namespace

        target, tls, query = parse_url(url)
        self.url = url
        self.namespace = check_namespace(namespace)
        self.read_only = False
        self._timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = ((wire.NAMESPACE_KEY, namespace),)
        if token:
            self._metadata += (("authorization", f"Bearer {token}"),)
        limit = max_message_mb << 20
        options = [
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
        if tls:
            if root_certificates is None and "ca" in query:
                root_certificates = Path(query["ca"]).expanduser().read_bytes()
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = pb_grpc.MemoryStub(self._channel)  # type: ignore[no-untyped-call]
        self._closed = False
        self._inject = _trace_injector()

    # -- plumbing ---------------------------------------------------------------------------

    def _md(self) -> tuple[tuple[str, str], ...]:
        """The call's metadata: namespace, token, and the current trace context (W3C
        traceparent) when OpenTelemetry is installed and a span is active."""
        if self._inject is None:
            return self._metadata
        carrier: dict[str, str] = {}
        self._inject(carrier)
        return self._metadata + tuple(carrier.items())

    def _call(self, name: str, request: Any) -> Any:
        if self._closed:
            from magray.errors import StoreError

            raise StoreError("this RemoteMemory is closed; call magray.connect() again")
        try:
            return getattr(self._stub, name)(request, timeout=self._timeout, metadata=self._md())
        except grpc.RpcError as exc:
            raise _translate(exc) from None

    def _stream(self, name: str, request: Any) -> Iterator[Any]:
        try:
            yield from getattr(self._stub, name)(
                request, timeout=self._timeout, metadata=self._md()
            )
        except grpc.RpcError as exc:
            raise _translate(exc) from None

    def __enter__(self) -> RemoteMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel (the server keeps the store open for other clients)."""
        if not self._closed:
            self._closed = True
            self._channel.close()

    def __repr__(self) -> str:
        return f"<magray.RemoteMemory {self.url} namespace={self.namespace}>"

    # -- the Memory API ---------------------------------------------------------------------

    def add(
        self,
        text: str,
        *,
        layer: Layer | str = Layer.INTERACT,
        kind: str = "note",
        tags: Iterable[str] = (),
        project: str | None = None,
        session: str | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float = 0.0,
        vector: Any = None,
    ) -> str:
        """See :meth:`magray.Memory.add`."""
        return self.add_many(
            [text],
            vectors=None if vector is None else [vector],
            layer=layer,
            kind=kind,
            tags=tags,
            project=project,
            session=session,
            metadata=metadata,
            importance=importance,
        )[0]

    def add_many(
        self,
        texts: Sequence[str],
        *,
        vectors: Any = None,
        layer: Layer | str = Layer.INTERACT,
        kind: str = "note",
        tags: Iterable[str] = (),
        project: str | None = None,
        session: str | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float = 0.0,
        on_duplicate: str = "access",
    ) -> list[str]:
        """See :meth:`magray.Memory.add_many` (one durable batch on the server)."""
        request = self._add_request(
            texts, vectors, layer, kind, tags, project, session, metadata, importance, on_duplicate
        )
        reply = self._call("Add", request)
        return [i or None for i in reply.ids]  # type: ignore[misc]

    def add_stream(
        self,
        batches: Iterable[dict[str, Any]],
        *,
        on_ack: Callable[[list[str]], None] | None = None,
    ) -> list[str]:
        """Bulk ingest over one stream: each batch is a dict of :meth:`add_many`'s
        arguments (``texts`` required). Each batch is acknowledged once it is durable;
        returns every id in order (``on_ack`` sees each batch's ids as it is acked)."""
        signature = inspect.signature(self.add_many)

        def request(batch: dict[str, Any]) -> pb.AddRequest:
            try:  # add_many's own arguments and defaults
                bound = signature.bind(**batch)
            except TypeError as exc:
                raise InvalidInputError(
                    f"an add_stream batch takes add_many's arguments: {exc}"
                ) from None
            bound.apply_defaults()
            return self._add_request(**bound.arguments)

        feed = _Feed(request(b) for b in batches)
        out: list[str] = []
        try:
            for reply in self._stream("AddStream", iter(feed)):
                ids = [i or None for i in reply.ids]
                out.extend(ids)  # type: ignore[arg-type]
                if on_ack is not None:
                    on_ack(ids)  # type: ignore[arg-type]
        finally:
            feed.reraise()  # a bad batch: the ones before it are stored and acknowledged
        return out

    @staticmethod
    def _add_request(
        texts: Any,
        vectors: Any,
        layer: Any,
        kind: Any,
        tags: Any,
        project: Any,
        session: Any,
        metadata: Any,
        importance: Any,
        on_duplicate: Any,
    ) -> pb.AddRequest:
        if isinstance(texts, str):
            raise InvalidInputError("add_many takes a sequence of texts; use add() for one text")
        if not all(isinstance(t, str) for t in texts):
            bad = next(t for t in texts if not isinstance(t, str))
            raise InvalidInputError(f"every text must be a str, not {type(bad).__name__}")
        if isinstance(tags, str):
            tags = [tags]
        if isinstance(importance, bool) or not isinstance(importance, (int, float)):
            raise InvalidInputError(f"importance must be a number in [0, 1], got {importance!r}")
        for name, value in (("project", project), ("session", session), ("kind", kind)):
            if value is not None and not isinstance(value, str):
                raise InvalidInputError(f"{name} must be a str, got {value!r}")
        fields = pb.Fields(
            layer=Layer.parse(layer).value,
            kind=kind,
            tags=_strings("tags", tags),
            project=project,
            session=session,
            metadata=_metadata(metadata),
            importance=float(importance),
        )
        request = pb.AddRequest(texts=list(texts), fields=fields, on_duplicate=on_duplicate)
        if vectors is not None:
            request.vectors.CopyFrom(_vectors(vectors))
        return request

    def search(
        self,
        query: str | None = None,
        *,
        vector: Any = None,
        k: int = 10,
        mode: str | None = None,
        contains: str | None = None,
        layers: Iterable[Layer | str] | None = None,
        tags: Iterable[str] | None = None,
        project: str | None = None,
        session: str | None = None,
        kind: str | None = None,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
        min_score: float | None = None,
    ) -> list[Hit]:
        """See :meth:`magray.Memory.search`."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k >= 2**32:
            raise InvalidInputError(f"k must be an int >= 1, got {k!r}")
        if query is not None and not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, not {type(query).__name__}")
        request = pb.SearchRequest(query=query, k=k)
        if vector is not None:
            request.vector.CopyFrom(_vectors([vector]))
        if layers is not None:
            chosen = [layers] if isinstance(layers, (str, Layer)) else list(layers)
            if not chosen:
                raise InvalidInputError("layers is empty; pass None for all layers or name some")
            request.layers.extend(Layer.parse(x).value for x in chosen)
        if tags is not None:
            request.has_tags = True
            request.tags.extend(_strings("tags", [tags] if isinstance(tags, str) else tags))
        for name, value in (
            ("project", project),
            ("session", session),
            ("kind", kind),
            ("mode", mode),
            ("contains", contains),
        ):
            if value is not None:
                if not isinstance(value, str):
                    raise InvalidInputError(f"{name} must be a str or None, got {value!r}")
                setattr(request, name, value)
        for name, when in (("since", since), ("until", until)):
            if when is not None:
                setattr(request, name, _seconds(when, name))
        if min_score is not None:
            if isinstance(min_score, bool) or not isinstance(min_score, (int, float)):
                raise InvalidInputError(f"min_score must be a number, got {min_score!r}")
            request.min_score = float(min_score)
        reply = self._call("Search", request)
        return [wire.hit_from_pb(h) for h in reply.hits]

    def embed(self, texts: Sequence[str], *, query: bool = False) -> Any:
        """See :meth:`magray.Memory.embed`: float32 ``(len(texts), dim)``."""
        if isinstance(texts, str):
            raise InvalidInputError("embed takes a sequence of texts; wrap one text in a list")
        reply = self._call("Embed", pb.EmbedRequest(texts=list(texts), query=query))
        return wire.unpack_vectors(reply.vectors)

    def get(self, id: str) -> Record | None:
        """See :meth:`magray.Memory.get`."""
        if not isinstance(id, str):
            raise InvalidInputError(f"id must be a str, not {type(id).__name__}")
        reply = self._call("Get", pb.GetRequest(id=id))
        return wire.record_from_pb(reply.record) if reply.HasField("record") else None

    def recent(self, *, layer: Layer | str | None = None, limit: int = 20) -> list[Record]:
        """See :meth:`magray.Memory.recent`."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit < 2**32:
            raise InvalidInputError(f"limit must be an int >= 1, got {limit!r}")
        request = pb.RecentRequest(limit=limit)
        if layer is not None:
            request.layer = Layer.parse(layer).value
        return [wire.record_from_pb(r) for r in self._call("Recent", request).records]

    def update(
        self,
        id: str,
        *,
        text: str = _UNSET,
        tags: Iterable[str] = _UNSET,
        metadata: dict[str, Any] = _UNSET,
        importance: float = _UNSET,
        layer: Layer | str = _UNSET,
        kind: str = _UNSET,
        project: str | None = _UNSET,
        session: str | None = _UNSET,
        vector: Any = None,
    ) -> Record:
        """See :meth:`magray.Memory.update`."""
        request = pb.UpdateRequest(id=id)
        if text is not _UNSET:
            if not isinstance(text, str):
                raise InvalidInputError(f"text must be a str, not {type(text).__name__}")
            request.text = text
        if tags is not _UNSET:
            request.set_tags = True
            request.tags.extend(_strings("tags", [tags] if isinstance(tags, str) else tags))
        if metadata is not _UNSET:
            if metadata is not None and not isinstance(metadata, dict):
                raise InvalidInputError(f"metadata must be a dict, not {type(metadata).__name__}")
            request.metadata = _metadata(metadata)
        if importance is not _UNSET:
            if isinstance(importance, bool) or not isinstance(importance, (int, float)):
                raise InvalidInputError(
                    f"importance must be a number in [0, 1], got {importance!r}"
                )
            request.importance = float(importance)
        if layer is not _UNSET:
            request.layer = Layer.parse(layer).value
        if kind is not _UNSET:
            if not isinstance(kind, str):
                raise InvalidInputError(f"kind must be a non-empty str, got {kind!r}")
            request.kind = kind
        for name, value in (("project", project), ("session", session)):
            if value is not _UNSET:
                if value is not None and not isinstance(value, str):
                    raise InvalidInputError(
                        f"{name} must be a non-empty str or None, got {value!r}"
                    )
                getattr(request, name).SetInParent()
                if value is not None:
                    getattr(request, name).value = value
        if vector is not None:
            request.vector.CopyFrom(_vectors([vector]))
        return wire.record_from_pb(self._call("Update", request))

    def delete(self, ids: str | Iterable[str]) -> int:
        """See :meth:`magray.Memory.delete`."""
        id_list = [ids] if isinstance(ids, str) else list(ids)
        return int(self._call("Delete", pb.DeleteRequest(ids=_strings("ids", id_list))).deleted)

    def promote(self, now: float | None = None, *, dry_run: bool = False) -> LifecycleReport:
        """See :meth:`magray.Memory.promote`."""
        return wire.report_from_pb(self._call("Promote", _lifecycle(now, dry_run)))

    def expire(self, now: float | None = None, *, dry_run: bool = False) -> LifecycleReport:
        """See :meth:`magray.Memory.expire`."""
        return wire.report_from_pb(self._call("Expire", _lifecycle(now, dry_run)))

    def stats(self) -> dict[str, Any]:
        """See :meth:`magray.Memory.stats` (the server's view of the namespace)."""
        out: dict[str, Any] = json.loads(self._call("Stats", pb.Empty()).json)
        out["server"] = {"url": self.url, "namespace": self.namespace}
        return out

    def flush(self) -> None:
        self._call("Flush", pb.Empty())

    def compact(self) -> None:
        self._call("Compact", pb.Empty())

    def wait_ready(self, timeout: float | None = None) -> None:
        """A server answers searches exactly while it builds indexes: nothing to wait for."""

    def refresh(self) -> int:
        """A server is always current: nothing to refresh (returns 0)."""
        return 0

    def backup(self, dest: str | os.PathLike[str]) -> Path:
        """A backup on the server, under its root (``backups/<namespace>/<name>``); dest
        is used as a plain name. Returns the path on the server."""
        name = Path(os.fspath(dest)).name
        return Path(self._call("Backup", pb.BackupRequest(name=name)).path)

    def export_jsonl(self, path: str | os.PathLike[str], *, vectors: bool = False) -> int:
        """Write every record as JSON lines to path on this machine; returns how many."""
        target = Path(path).expanduser()
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                for chunk in self._stream("Export", pb.ExportRequest(vectors=vectors)):
                    f.write(chunk.data)
            with open(tmp, "rb") as f:
                n = sum(1 for line in f if line.strip())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return n

    def import_jsonl(self, path: str | os.PathLike[str]) -> ImportReport:
        """Send the JSON lines of a file on this machine to the server's import."""
        source = Path(path).expanduser()
        if not source.is_file():
            raise InvalidInputError(
                f"{source} is not a file; pass a .jsonl file made by export_jsonl"
            )

        def chunks() -> Iterator[pb.Chunk]:
            with open(source, "rb") as f:
                while data := f.read(1 << 20):
                    yield pb.Chunk(data=data)

        feed = _Feed(chunks())
        try:
            reply = self._stub.Import(iter(feed), timeout=self._timeout, metadata=self._md())
        except grpc.RpcError as exc:
            feed.reraise()
            raise _translate(exc) from None
        feed.reraise()
        return wire.import_from_pb(reply)

    def reembed(self, progress: Any = None, batch_size: int = 256) -> int:
        """Refused: re-embedding converts the whole store; run it where the store lives."""
        raise InvalidInputError(
            "reembed runs where the store lives: stop the server, then "
            "magray --store ROOT/NAMESPACE memory reembed"
        )


def connect(
    url: str,
    *,
    namespace: str = wire.DEFAULT_NAMESPACE,
    token: str | None = None,
    timeout: float | None = 60.0,
    root_certificates: bytes | None = None,
) -> RemoteMemory:
    """A namespace of a magray server, with the API of :class:`magray.Memory`.

    Args:
        url: ``grpc://HOST:PORT``, or ``grpcs://HOST:PORT`` for TLS (``?ca=FILE`` names
            a CA bundle; default: the system's roots).
        namespace: which of the server's stores (created by the first write).
        token: the bearer token, if the server has a tokens file (default:
            ``MAGRAY_TOKEN``).
        timeout: seconds per call (None: no limit).
        root_certificates: PEM CA bundle for TLS, instead of ``?ca=``.

    Raises:
        InvalidInputError: a malformed URL or namespace name.

    Nothing is sent until the first call; a server that cannot be reached then raises
    :class:`magray.ServerError`.
    """
    return RemoteMemory(
        url,
        namespace=namespace,
        token=token if token is not None else os.environ.get("MAGRAY_TOKEN") or None,
        timeout=timeout,
        root_certificates=root_certificates,
    )


class _Feed:
    """The requests of a client stream, built as gRPC asks for them. An error while
    building one ends the stream where it is, and :meth:`reraise` raises it in the
    caller (gRPC itself would only report "Exception iterating requests")."""

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = items
        self._error: BaseException | None = None

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._items
        except Exception as exc:
            self._error = exc

    def reraise(self) -> None:
        if self._error is not None:
            raise self._error


def _trace_injector() -> Callable[[dict[str, str]], None] | None:
    """OpenTelemetry's context injector, when it is installed (the otel extra)."""
    try:
        from opentelemetry import propagate
    except ImportError:
        return None
    inject: Callable[[dict[str, str]], None] = propagate.inject
    return inject


def _translate(exc: grpc.RpcError) -> BaseException:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    name = None
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == wire.ERROR_KEY:
            name = value
    return wire.error_from(code, name, details or "")


def _strings(name: str, values: Iterable[Any]) -> list[str]:
    out = list(values)
    for v in out:
        if not isinstance(v, str):
            raise InvalidInputError(f"every item of {name} must be a str, got {v!r}")
    return out


def _metadata(metadata: Any) -> bytes:
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInputError(f"metadata must be a dict, not {type(metadata).__name__}")
    return wire.pack_metadata(metadata)


def _vectors(vectors: Any) -> pb.Vectors:
    import numpy as np

    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"vectors must be numeric arrays: {exc}") from None
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    return wire.pack_vectors(arr)


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise InvalidInputError(f"{name} must be Unix seconds or a datetime, got {value!r}")


def _lifecycle(now: float | None, dry_run: bool) -> pb.LifecycleRequest:
    request = pb.LifecycleRequest(dry_run=bool(dry_run))
    if now is not None:
        request.now = float(now)
    return request
