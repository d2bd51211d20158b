"""One writer process per store: an advisory lock file holding the writer's pid."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from magray.errors import StoreLockedError, storage_error


class WriterLock:
    """Held for as long as a writable store is open; released by close or process exit
    (the kernel drops flock locks of dead processes, so a crash never leaves it stuck)."""

    def __init__(self, store_path: Path) -> None:
        self.path = store_path / "writer.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; StoreLockedError if another process holds it, and a StoreError
        (DiskFullError on a full device) if the lock file cannot be written."""
        try:
            self._acquire()
        except OSError as exc:
            raise storage_error(exc, self.path.parent, "taking the writer lock") from exc

    def _acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 32, 0).decode().strip()
            finally:
                os.close(fd)
            pid = int(holder) if holder.isdigit() else None
            who = f"process {pid}" if pid else "another process"
            raise StoreLockedError(
                f"store {self.path.parent} is open for writing by {who}; close it there, "
                "or open this one with read_only=True",
                pid=pid,
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
