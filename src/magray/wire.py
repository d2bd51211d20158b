"""Conversions between the library's values and the ``magray.v1`` wire messages, shared by
the client (:mod:`magray.client`) and the server (:mod:`magray.server`).

- Vectors travel packed: ``rows x dim`` little-endian float32 in one bytes field.
- Metadata travels as msgpack (the store's own encoding), so bytes, ints and floats
  arrive exactly as they were sent.
- :data:`ERROR_CODES` is the one table from exceptions to gRPC status codes; the server
  sends the exception's class name in the trailing metadata ``x-magray-error`` and
  :func:`error_from` turns it back into the same exception on the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from magray import errors
from magray.memory.record import Hit, ImportReport, Layer, LifecycleReport, Move, Record
from magray.v1 import memory_pb2 as pb

if TYPE_CHECKING:
    import numpy as np

NAMESPACE_KEY = "x-magray-namespace"
ERROR_KEY = "x-magray-error"
DEFAULT_NAMESPACE = "default"

# Most specific first: the first class an exception is an instance of decides its code.
ERROR_CODES: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (errors.InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.ReadOnlyError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.EmbedderMismatchError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.StoreLockedError, grpc.StatusCode.UNAVAILABLE),
    (errors.DiskFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.CorruptStoreError, grpc.StatusCode.DATA_LOSS),
    (errors.BackupError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ModelError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.AuthError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ServerError, grpc.StatusCode.UNAVAILABLE),
    (errors.StoreError, grpc.StatusCode.INTERNAL),
    (errors.MagrayError, grpc.StatusCode.INTERNAL),
]
# Every class of the hierarchy, by the name the server sends.
_BY_NAME: dict[str, type[BaseException]] = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, errors.MagrayError)
}


def status_of(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code for an exception (INTERNAL for anything not magray's)."""
    for cls, code in ERROR_CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def error_from(code: grpc.StatusCode, name: str | None, message: str) -> BaseException:
    """The exception a client raises for a failed call: the class the server named, or
    one chosen by the status code (a ConnectionError when the server cannot be reached)."""
    cls = _BY_NAME.get(name or "")
    if cls is not None:
        return cls(message)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return errors.ServerError(f"magray server unavailable ({code.name}): {message}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return errors.InvalidInputError(message)
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFoundError(message)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return errors.AuthError(message)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return errors.PermissionDeniedError(message)
    return errors.ServerError(f"{code.name}: {message}")


# -- vectors ----------------------------------------------------------------------------


def pack_vectors(arr: Any) -> pb.Vectors:
    """A float32 ``(rows, dim)`` (or ``(dim,)``) array as a Vectors message."""
    import numpy as np

    a = np.ascontiguousarray(arr, dtype="<f4")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise errors.InvalidInputError(f"vectors must be 1-D or 2-D, got shape {a.shape}")
    return pb.Vectors(data=a.tobytes(), rows=a.shape[0], dim=a.shape[1])


def unpack_vectors(msg: pb.Vectors) -> np.ndarray:
    """A Vectors message as float32 ``(rows, dim)``; InvalidInputError if the sizes
    disagree with the data."""
    import numpy as np

    if msg.dim == 0 or msg.rows == 0:
        raise errors.InvalidInputError("vectors: rows and dim must both be at least 1")
    if len(msg.data) != 4 * msg.rows * msg.dim:
        raise errors.InvalidInputError(
            f"vectors: {len(msg.data)} bytes of data, but rows x dim x 4 = "
            f"{4 * msg.rows * msg.dim}; send packed little-endian float32"
        )
    return np.frombuffer(msg.data, dtype="<f4").reshape(msg.rows, msg.dim).astype(np.float32)


# -- metadata ---------------------------------------------------------------------------


def pack_metadata(metadata: Any) -> bytes:
    """Metadata as msgpack; InvalidInputError for what msgpack cannot hold."""
    if metadata is None or (isinstance(metadata, dict) and not metadata):
        return b""
    import msgpack

    try:
        packed: bytes = msgpack.packb(metadata, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise errors.InvalidInputError(
            f"metadata cannot be sent ({exc}); use str keys and str, int, float, bool, "
            "None, bytes, lists and dicts"
        ) from None
    return packed


def unpack_metadata(data: bytes) -> Any:
    if not data:
        return {}
    import msgpack

    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise errors.InvalidInputError(f"metadata is not valid msgpack ({exc})") from None


# -- records, hits and reports -------------------------------------------------------------


def record_to_pb(rec: Record) -> pb.Record:
    return pb.Record(
        id=rec.id,
        text=rec.text,
        layer=rec.layer.value,
        kind=rec.kind,
        tags=list(rec.tags),
        project=rec.project,
        session=rec.session,
        metadata=pack_metadata(rec.metadata),
        created_at=rec.created_at,
        updated_at=rec.updated_at,
        last_access=rec.last_access,
        access_count=rec.access_count,
        importance=rec.importance,
        fingerprint=rec.fingerprint,
        layer_since=rec.layer_since,
    )


def record_from_pb(m: pb.Record) -> Record:
    return Record(
        id=m.id,
        text=m.text,
        layer=Layer(m.layer),
        kind=m.kind,
        tags=tuple(m.tags),
        project=m.project if m.HasField("project") else None,
        session=m.session if m.HasField("session") else None,
        metadata=unpack_metadata(m.metadata),
        created_at=m.created_at,
        updated_at=m.updated_at,
        last_access=m.last_access,
        access_count=m.access_count,
        importance=m.importance,
        fingerprint=m.fingerprint,
        layer_since=m.layer_since,
    )


def hit_to_pb(hit: Hit) -> pb.Hit:
    return pb.Hit(
        id=hit.id,
        score=hit.score,
        layer=hit.layer.value,
        record=record_to_pb(hit.record),
        scores=hit.scores,
    )


def hit_from_pb(m: pb.Hit) -> Hit:
    return Hit(m.id, m.score, Layer(m.layer), record_from_pb(m.record), dict(m.scores))


def _move_to_pb(m: Move) -> pb.Move:
    return pb.Move(
        id=m.id,
        from_layer=m.from_layer.value,
        to_layer=None if m.to_layer is None else m.to_layer.value,
        reason=m.reason,
        at=m.at,
    )


def _move_from_pb(m: pb.Move) -> Move:
    to = Layer(m.to_layer) if m.HasField("to_layer") else None
    return Move(m.id, Layer(m.from_layer), to, m.reason, m.at)


def report_to_pb(r: LifecycleReport) -> pb.LifecycleReply:
    return pb.LifecycleReply(
        moved=[_move_to_pb(m) for m in r.moved],
        expired=[_move_to_pb(m) for m in r.expired],
        dry_run=r.dry_run,
    )


def report_from_pb(m: pb.LifecycleReply) -> LifecycleReport:
    return LifecycleReport(
        moved=[_move_from_pb(x) for x in m.moved],
        expired=[_move_from_pb(x) for x in m.expired],
        dry_run=m.dry_run,
    )


def import_to_pb(r: ImportReport) -> pb.ImportReply:
    return pb.ImportReply(
        added=r.added,
        skipped=r.skipped,
        errors=[pb.LineError(line=n, message=msg) for n, msg in r.errors],
    )


def import_from_pb(m: pb.ImportReply) -> ImportReport:
    return ImportReport(
        added=m.added, skipped=m.skipped, errors=[(e.line, e.message) for e in m.errors]
    )
