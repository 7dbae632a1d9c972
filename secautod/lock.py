"""The data directory's exclusive lock: one daemon (or restore) at a time."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from secautod.errors import LockHeldError, StoreError

LOCK_FILE_NAME = "secautod.lock"
# `holder_pid` (e.g. `secautod status` as a health check) holds a shared lock
# for microseconds; a starting daemon retries this long before giving up.
PROBE_RETRIES = 10
PROBE_RETRY_SECONDS = 0.02


class DirectoryLock:
    """An `flock` on `<directory>/secautod.lock` holding the owner's pid.

    The lock dies with the process, so a crash never leaves a stale lock;
    the file itself stays (deleting lock files races with new lockers).
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE_NAME
        self._fd: int | None = None

    def acquire(self, purpose: str = "run") -> DirectoryLock:
        """Take the lock or raise `LockHeldError` naming the holder's pid."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open lock file {self.path}: {exc.strerror}") from exc
        try:
            _lock_with_patience(fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from exc
            holder = holder_pid(self.path.parent)
            who = f"pid {holder}" if holder else "another process"
            raise LockHeldError(
                f"cannot {purpose}: a secautod daemon ({who}) holds {self.path}; "
                f"stop it first (systemctl stop secautod)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (closing the descriptor drops the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _lock_with_patience(fd: int) -> None:
    """Take the exclusive lock, riding out `holder_pid`'s brief shared probes."""
    for _ in range(PROBE_RETRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(PROBE_RETRY_SECONDS)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def holder_pid(directory: Path) -> int | None:
    """Return the pid holding the lock (0 if unreadable), or None if nobody holds it."""
    path = directory / LOCK_FILE_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            content = os.read(fd, 32).decode(errors="replace").strip()
            return int(content) if content.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
