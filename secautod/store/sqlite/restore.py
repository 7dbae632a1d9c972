"""Restoring a SQLite store file from a backup: verify, keep the old file aside, swap.

The caller holds the data directory's lock, so no daemon has the file open.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from secautod.errors import BackupError, StoreError
from secautod.files import DATABASE_FILE_MODE, fsync_directory
from secautod.store.records import DatabaseFileSummary
from secautod.store.sqlite.snapshot import checkpoint_database_file, verify_database_file

_COPY_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What `restore_database_file` did."""

    backup: DatabaseFileSummary
    database: Path
    previous: Path | None  # where the replaced database was kept, if there was one


def restore_database_file(
    backup: Path,
    database: Path,
    *,
    staged: Path,
    aside_name: str,
    on_progress: Callable[[int, int], None] | None = None,
    verified: DatabaseFileSummary | None = None,
) -> RestoreResult:
    """Replace `database` with a verified copy of `backup`, keeping the old file as `aside_name`.

    The caller must hold the data directory's lock and names the files: the
    copy is written to `staged` first. The backup is verified before
    anything is touched (pass `verified` if the caller just ran
    `verify_restore_source`); the swap itself is one atomic rename.
    """
    summary = verified if verified is not None else verify_restore_source(backup)
    directory = database.parent
    try:
        _copy_private(backup, staged, on_progress)
        previous = _set_aside(database, aside_name)
        os.replace(staged, database)
        fsync_directory(directory)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise StoreError(f"restore into {database} failed: {exc.strerror or exc}") from exc
    return RestoreResult(summary, database, previous)


def verify_restore_source(backup: Path) -> DatabaseFileSummary:
    """Check that `backup` is an intact job store that a copy of the file restores whole.

    Restore copies the file itself, so a non-empty WAL beside it is refused
    (`BackupError`): what only the WAL holds (a copied live database, a
    set-aside file whose checkpoint failed) would be lost while the
    verification, which SQLite runs through the WAL, still passed.
    """
    wal = backup.with_name(backup.name + "-wal")
    size = wal.stat().st_size if wal.exists() else 0
    if size > 0:
        raise BackupError(
            f"{backup} has a write-ahead log ({wal}, {size} bytes) that restore would not copy; "
            f"fold it in first with: sqlite3 {backup} 'PRAGMA wal_checkpoint(TRUNCATE)'"
        )
    return verify_database_file(backup)


def _set_aside(database: Path, aside_name: str) -> Path | None:
    """Keep the current database, with any WAL, under a new unique name.

    Companion files (-wal, -shm, -journal) are always moved away, even when
    the database itself is missing: left in place, SQLite would replay an
    old WAL onto the restored file.
    """
    kept = _unique_name(database.parent, aside_name) if database.exists() else None
    if kept is not None:
        # A damaged file cannot be checkpointed; its WAL is then kept beside it.
        with suppress(StoreError):
            checkpoint_database_file(database)
        _link_or_copy(database, kept)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = database.with_name(database.name + suffix)
        if not companion.exists():
            continue
        if kept is not None:
            os.replace(companion, kept.with_name(kept.name + suffix))
        else:
            companion.unlink()
    return kept


def _unique_name(directory: Path, name: str) -> Path:
    """Return `directory/name`, or `name-2`, `name-3`, ... if taken."""
    candidate, sequence = directory / name, 1
    while candidate.exists():
        sequence += 1
        candidate = directory / f"{name}-{sequence}"
    return candidate


def _link_or_copy(source: Path, target: Path) -> None:
    """Make `target` hold `source`'s content, never overwriting an existing file."""
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        _copy_private(source, target, None)


def _copy_private(
    source: Path, target: Path, on_progress: Callable[[int, int], None] | None
) -> None:
    """Copy `source` to a new owner-only file `target` and sync it."""
    total = source.stat().st_size
    copied = 0
    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, DATABASE_FILE_MODE)
    with open(fd, "wb") as out, source.open("rb") as src:
        while chunk := src.read(_COPY_CHUNK_BYTES):
            out.write(chunk)
            copied += len(chunk)
            if on_progress is not None:
                on_progress(copied, total)
        out.flush()
        os.fsync(out.fileno())
