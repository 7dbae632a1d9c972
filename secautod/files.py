"""Owner-only files and directories, and syncing them to disk.

Jobs carry security context, so the data directory is created 0700 and the
database, its WAL and every backup 0600 (SPEC §1).
"""

from __future__ import annotations

import os
from pathlib import Path

from secautod.errors import StoreError

DATA_DIRECTORY_MODE = 0o700
DATABASE_FILE_MODE = 0o600


def prepare_directory(directory: Path) -> None:
    """Create `directory` (owner-only) if it does not exist yet."""
    try:
        directory.mkdir(mode=DATA_DIRECTORY_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create directory {directory}: {exc.strerror}") from exc


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
