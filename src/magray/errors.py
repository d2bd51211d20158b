"""Every error magray raises, in one hierarchy.

    MagrayError
    ├── InvalidInputError (also ValueError)   bad text, vector, layer, metadata, option
    ├── NotFoundError (also KeyError)         an id that does not exist
    ├── ModelError                            an embedding model: unknown, missing, invalid
    │   └── ModelDownloadError                a download that failed or did not verify
    └── StoreError                            the store as a whole
        ├── StoreLockedError                  another process writes to this store
        ├── ReadOnlyError                     a write on a store opened read_only=True
        ├── EmbedderMismatchError             the store's vectors come from another model
        ├── CorruptStoreError                 data that fails its checks
        └── BackupError                       a backup that is damaged or incomplete

Each message names the problem and the fix.
"""

from __future__ import annotations


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


class StoreError(MagrayError):
    """A problem with the store itself."""


class StoreLockedError(StoreError):
    """Another process holds the store's writer lock."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class ReadOnlyError(StoreError):
    """A write was attempted on a store opened with read_only=True."""


class EmbedderMismatchError(StoreError):
    """The store's vectors were made by a different model or have another dimension."""


class CorruptStoreError(StoreError):
    """Stored data failed a consistency or checksum test."""


class BackupError(StoreError):
    """A backup is damaged, incomplete or not a magray backup."""
