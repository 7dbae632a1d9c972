"""Owner-only files and directories, and syncing them to disk.

Jobs carry security context, so the data directory is created 0700 and the
database, its WAL and every backup 0600 (SPEC §1).
"""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile
from pathlib import Path

from secautod.errors import ConfigError, StoreError

DATA_DIRECTORY_MODE = 0o700
DATABASE_FILE_MODE = 0o600


def prepare_directory(directory: Path) -> None:
    """Create `directory` (owner-only) if it does not exist yet, durably.

    Each directory created is synced into its parent: otherwise a power
    loss could take the new directory, and the backups written into it,
    away although each file was synced.
    """
    missing = [path for path in (directory, *directory.parents) if not path.exists()]
    try:
        directory.mkdir(mode=DATA_DIRECTORY_MODE, parents=True, exist_ok=True)
        for created in reversed(missing):
            fsync_directory(created.parent)
    except OSError as exc:
        raise StoreError(f"cannot create directory {directory}: {exc.strerror}") from exc


def probe_directory(directory: Path, key: str) -> None:
    """Prove that `directory` can be created (or written), leaving nothing behind.

    Raises `ConfigError` naming `key`: `check` refuses what `run` would
    fail on, even where permission bits say yes (read-only mounts, root).
    """
    existing = next((path for path in (directory, *directory.parents) if path.exists()), None)
    if existing is None or not existing.is_dir():
        raise ConfigError(f"{key}: {directory} cannot be created ({existing} is not a directory)")
    try:
        probe = tempfile.mkdtemp(prefix=".secautod-check-", dir=existing)
        os.rmdir(probe)
    except OSError as exc:
        where = "" if existing == directory else f" (in {existing})"
        raise ConfigError(
            f"{key}: {directory} cannot be {'written' if existing == directory else 'created'}"
            f"{where}: {exc.strerror} (uid {os.getuid()})"
        ) from None


def create_owner_only_file(path: Path) -> None:
    """Create an empty file readable by the owner only, unless it exists.

    SQLite gives the WAL and shared-memory files the database file's mode, so
    creating the database 0600 keeps all three private.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, DATABASE_FILE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from exc
    os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: Path) -> None:
    """Flush a directory's entries (creations, renames) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_NOREPLACE = 1  # linux/fs.h
_AT_FDCWD = -100


def rename_no_replace(source: Path, target: Path) -> None:
    """Rename `source` to `target`, failing with EEXIST instead of replacing a file.

    Uses renameat2(RENAME_NOREPLACE); where the kernel or file system lacks
    it, checks first and renames (only secautod creates these names).
    """
    libc = _libc()
    renameat2 = getattr(libc, "renameat2", None) if libc is not None else None
    if renameat2 is not None:
        result = renameat2(
            _AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE
        )
        if result == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(target))
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(source, target)


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)  # the C library the interpreter uses
    except OSError:
        return None
