"""The gRPC service: each RPC checks the caller, maps its request to one call of the
namespace's Memory, and maps the result (or the error, through
:data:`magray.wire.ERROR_CODES`) back. No memory logic lives here."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc

from magray import wire
from magray.errors import InvalidInputError, MagrayError
from magray.server.auth import Tokens
from magray.server.tenants import Tenants
from magray.v1 import memory_pb2 as pb
from magray.v1 import memory_pb2_grpc as pb_grpc

_LOG = logging.getLogger("magray.server")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_CHUNK = 1 << 20  # export chunks: 1 MiB
T = TypeVar("T")


def _abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    """End the call with the status of exc; the class name rides in trailing metadata."""
    code = wire.status_of(exc)
    if isinstance(exc, MagrayError):
        context.set_trailing_metadata(((wire.ERROR_KEY, type(exc).__name__),))
        message = str(exc)
    else:
        _LOG.exception("internal error in %s", type(exc).__name__)
        message = f"internal server error ({type(exc).__name__}); the server log has details"
    context.abort(code, message)


class MemoryService(pb_grpc.MemoryServicer):
    """magray.v1.Memory over a server's namespaces."""

    def __init__(self, tenants: Tenants, tokens: Tokens | None, root: Path) -> None:
        self.tenants = tenants
        self.tokens = tokens
        self.root = root

    # -- the one path every RPC takes -------------------------------------------------------

    def _caller(self, context: grpc.ServicerContext, write: bool) -> str:
        """The namespace of the call, once its token allows it."""
        md = dict(context.invocation_metadata())
        namespace = str(md.get(wire.NAMESPACE_KEY) or wire.DEFAULT_NAMESPACE)
        if self.tokens is not None:
            self.tokens.check(md.get("authorization"), namespace, write)
        return namespace

    def _call(self, context: grpc.ServicerContext, write: bool, fn: Callable[[Any], T]) -> T:
        try:
            namespace = self._caller(context, write)
            with self.tenants.use(namespace, create=write) as mem:
                return fn(mem)
        except grpc.RpcError:
            raise
        except Exception as exc:
            _abort(context, exc)
            raise  # abort raised already; this line is never reached

    # -- RPCs ------------------------------------------------------------------------------

    def Add(self, request: pb.AddRequest, context: grpc.ServicerContext) -> pb.AddReply:
        return self._call(context, True, lambda mem: _add(mem, request))

    def AddStream(
        self, request_iterator: Iterator[pb.AddRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.AddReply]:
        # Each batch is added (durably) before its reply is sent; a client that goes
        # away mid-stream leaves every acknowledged batch and nothing of the others.
        try:
            namespace = self._caller(context, True)
            with self.tenants.use(namespace, create=True) as mem:
                for request in request_iterator:
                    yield _add(mem, request)
        except grpc.RpcError:
            raise
        except Exception as exc:
            _abort(context, exc)

    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchReply:
        def run(mem: Any) -> pb.SearchReply:
            query = request.query if request.HasField("query") else None
            vector = wire.unpack_vectors(request.vector) if request.HasField("vector") else None
            if vector is not None and vector.shape[0] != 1:
                raise InvalidInputError(f"search takes one vector, got {vector.shape[0]}")
            hits = mem.search(
                query,
                vector=None if vector is None else vector[0],
                k=int(request.k) if request.k else 10,
                mode=_opt(request, "mode"),
                contains=_opt(request, "contains"),
                layers=list(request.layers) or None,
                tags=list(request.tags) if request.has_tags else None,
                project=_opt(request, "project"),
                session=_opt(request, "session"),
                kind=_opt(request, "kind"),
                since=_opt(request, "since"),
                until=_opt(request, "until"),
                min_score=_opt(request, "min_score"),
            )
            return pb.SearchReply(hits=[wire.hit_to_pb(h) for h in hits])

        return self._call(context, False, run)

    def Embed(self, request: pb.EmbedRequest, context: grpc.ServicerContext) -> pb.EmbedReply:
        def run(mem: Any) -> pb.EmbedReply:
            vecs = mem.embed(list(request.texts), query=request.query)
            return pb.EmbedReply(vectors=wire.pack_vectors(vecs.reshape(len(request.texts), -1)))

        return self._call(context, False, run)

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.GetReply:
        def run(mem: Any) -> pb.GetReply:
            rec = mem.get(request.id)
            return pb.GetReply() if rec is None else pb.GetReply(record=wire.record_to_pb(rec))

        return self._call(context, False, run)

    def Recent(self, request: pb.RecentRequest, context: grpc.ServicerContext) -> pb.Records:
        def run(mem: Any) -> pb.Records:
            recs = mem.recent(layer=_opt(request, "layer"), limit=int(request.limit) or 20)
            return pb.Records(records=[wire.record_to_pb(r) for r in recs])

        return self._call(context, False, run)

    def Update(self, request: pb.UpdateRequest, context: grpc.ServicerContext) -> pb.Record:
        def run(mem: Any) -> pb.Record:
            kw: dict[str, Any] = {}
            for name in ("text", "importance", "layer", "kind"):
                if request.HasField(name):
                    kw[name] = getattr(request, name)
            if request.set_tags:
                kw["tags"] = list(request.tags)
            if request.HasField("metadata"):
                kw["metadata"] = wire.unpack_metadata(request.metadata)
            for name in ("project", "session"):
                if request.HasField(name):
                    value = getattr(request, name)
                    kw[name] = value.value if value.HasField("value") else None
            if request.HasField("vector"):
                kw["vector"] = wire.unpack_vectors(request.vector)
            return wire.record_to_pb(mem.update(request.id, **kw))

        return self._call(context, True, run)

    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteReply:
        return self._call(
            context, True, lambda mem: pb.DeleteReply(deleted=mem.delete(list(request.ids)))
        )

    def Promote(
        self, request: pb.LifecycleRequest, context: grpc.ServicerContext
    ) -> pb.LifecycleReply:
        def run(mem: Any) -> pb.LifecycleReply:
            return wire.report_to_pb(mem.promote(_opt(request, "now"), dry_run=request.dry_run))

        return self._call(context, True, run)

    def Expire(
        self, request: pb.LifecycleRequest, context: grpc.ServicerContext
    ) -> pb.LifecycleReply:
        return self._call(
            context,
            True,
            lambda mem: wire.report_to_pb(
                mem.expire(_opt(request, "now"), dry_run=request.dry_run)
            ),
        )

    def Stats(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.JsonReply:
        return self._call(
            context, False, lambda mem: pb.JsonReply(json=json.dumps(mem.stats(), default=str))
        )

    def Flush(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.Empty:
        def run(mem: Any) -> pb.Empty:
            mem.flush()
            return pb.Empty()

        return self._call(context, True, run)

    def Compact(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.Empty:
        def run(mem: Any) -> pb.Empty:
            mem.compact()
            return pb.Empty()

        return self._call(context, True, run)

    def Backup(self, request: pb.BackupRequest, context: grpc.ServicerContext) -> pb.BackupReply:
        def run(mem: Any) -> pb.BackupReply:
            name = request.name
            if not _PLAIN_NAME.fullmatch(name) or ".." in name:
                raise InvalidInputError(
                    f"backup name {name!r} is not a plain name; the server keeps backups "
                    "under its root, so pass a name like 'nightly-2026-11-30'"
                )
            dest = self.root / ".backups" / Path(mem.path).name / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            return pb.BackupReply(path=str(mem.backup(dest)))

        return self._call(context, True, run)

    def Export(
        self, request: pb.ExportRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Chunk]:
        try:
            namespace = self._caller(context, False)
            with self.tenants.use(namespace, create=False) as mem, _scratch(self.root) as tmp:
                mem.export_jsonl(tmp, vectors=request.vectors)
                with open(tmp, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        yield pb.Chunk(data=chunk)
        except grpc.RpcError:
            raise
        except Exception as exc:
            _abort(context, exc)

    def Import(
        self, request_iterator: Iterator[pb.Chunk], context: grpc.ServicerContext
    ) -> pb.ImportReply:
        def run(mem: Any) -> pb.ImportReply:
            with _scratch(self.root) as tmp:
                with open(tmp, "wb") as f:
                    for chunk in request_iterator:
                        f.write(chunk.data)
                try:
                    return wire.import_to_pb(mem.import_jsonl(tmp))
                except MagrayError as exc:  # name what the client sent, not a server path
                    raise type(exc)(str(exc).replace(str(tmp), "the uploaded lines")) from None

        return self._call(context, True, run)


@contextlib.contextmanager
def _scratch(root: Path) -> Iterator[Path]:
    """A temporary file under the server's root (same file system as the stores),
    removed afterwards."""
    tmp_dir = root / ".tmp"
    tmp_dir.mkdir(exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, suffix=".jsonl")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _opt(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def _add(mem: Any, request: pb.AddRequest) -> pb.AddReply:
    f = request.fields
    vectors = wire.unpack_vectors(request.vectors) if request.HasField("vectors") else None
    ids = mem.add_many(
        list(request.texts),
        vectors=vectors,
        layer=f.layer or "interact",
        kind=f.kind or "note",
        tags=list(f.tags),
        project=_opt(f, "project"),
        session=_opt(f, "session"),
        metadata=wire.unpack_metadata(f.metadata),
        importance=f.importance,
        on_duplicate=request.on_duplicate or "access",
    )
    return pb.AddReply(ids=[i or "" for i in ids])
