"""Every error magray raises, in one hierarchy.

    MagrayError
    ├── InvalidInputError (also ValueError)   bad text, vector, layer, metadata, option
    ├── NotFoundError (also KeyError)         an id that does not exist
    ├── ModelError                            an embedding model: unknown, missing, invalid
    │   └── ModelDownloadError                a download that failed or did not verify
    ├── ServerError                           a magray server failed or cannot be reached
    │   ├── AuthError                         no bearer token, or a wrong one
    │   └── PermissionDeniedError             the token lacks that namespace or right
    └── StoreError                            the store as a whole
        ├── StoreLockedError                  another process writes to this store
        ├── DiskFullError                     no space left where the store lives
        ├── ReadOnlyError                     a write on a store opened read_only=True
        ├── EmbedderMismatchError             the store's vectors come from another model
        ├── CorruptStoreError                 data that fails its checks
        └── BackupError                       a backup that is damaged or incomplete

Each message names the problem and the fix.
"""

from __future__ import annotations

import errno


class MagrayError(Exception):
    """Base class of every magray error."""


class InvalidInputError(MagrayError, ValueError):
    """An argument is malformed; nothing was written."""


class NotFoundError(MagrayError, KeyError):
    """An id that is not in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelError(MagrayError):
    """An embedding model is unknown, not installed, or not a valid model directory."""


class ModelDownloadError(ModelError):
    """A model download failed, or a downloaded file did not match its checksum."""


class ServerError(MagrayError):
    """A magray server failed, or cannot be reached (the message says which)."""


class AuthError(ServerError):
    """The server needs a bearer token, and none or a wrong one was sent."""


class PermissionDeniedError(ServerError):
    """The token is valid but not for this namespace, or not for writing."""


class StoreError(MagrayError):
    """A problem with the store itself."""


class StoreLockedError(StoreError):
    """Another process holds the store's writer lock."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class DiskFullError(StoreError):
    """A write failed because the file system holding the store is full. Nothing that was
    acknowledged is lost; free space and retry (after a failed write the store must be
    closed and opened again)."""


class ReadOnlyError(StoreError):
    """A write was attempted on a store opened with read_only=True."""


class EmbedderMismatchError(StoreError):
    """The store's vectors were made by a different model or have another dimension."""


class CorruptStoreError(StoreError):
    """Stored data failed a consistency or checksum test."""


class BackupError(StoreError):
    """A backup is damaged, incomplete or not a magray backup."""


def storage_error(
    exc: BaseException,
    path: object,
    action: str,
    fix: str = "check the device and its permissions, then open the store again",
) -> StoreError:
    """The StoreError for a failed database or file operation on the store at path.

    The binding raises plain Exceptions whose text carries RocksDB's status; OSError
    carries an errno. A full device gives DiskFullError, read-only media a StoreError
    that says so, anything else a StoreError with the cause and ``fix``.
    """
    if isinstance(exc, StoreError):
        return exc
    msg = str(exc)
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or "No space left on device" in msg:
        return DiskFullError(
            f"{action} failed: no space left on the device holding {path}; free space "
            "there, then open the store again (nothing acknowledged was lost)"
        )
    if code == errno.EROFS or "Read-only file system" in msg:
        return StoreError(
            f"{action} failed: {path} is on a read-only file system; open it with "
            "read_only=True, or move the store to writable storage"
        )
    return StoreError(f"{action} failed for the store at {path}: {msg}; {fix}")
