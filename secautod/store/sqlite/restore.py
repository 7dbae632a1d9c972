"""Restoring a SQLite store from a backup: verify, keep a copy of the current one, copy in.

The restore goes through SQLite's backup API into the live database, as the
`sqlite3` shell's `.restore` does: an engine that has the file open sees the
restored jobs in its next transaction, and what it writes afterwards lands in
the restored database (a file swapped under it would take its writes into
the set-aside file). Only a live file too damaged to be written through
SQLite is swapped instead. The caller holds the data directory's lock, so
no secautod daemon has the file open.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from secautod.errors import BackupError, StoreCorruptError, StoreError
from secautod.files import DATABASE_FILE_MODE, create_owner_only_file, fsync_directory, fsync_file
from secautod.store.records import DatabaseFileSummary
from secautod.store.sqlite import queries
from secautod.store.sqlite.connection import connect, translate_error
from secautod.store.sqlite.snapshot import checkpoint_database_file, verify_database_file

_COPY_CHUNK_BYTES = 4 * 1024 * 1024
RESTORE_PAGES_PER_STEP = 4096
COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What `restore_database_file` did."""

    backup: DatabaseFileSummary
    database: Path
    previous: Path | None  # where the replaced database was kept, if there was one
    swapped: bool = False  # the live file was too damaged to restore into: it was replaced


def restore_database_file(
    backup: Path,
    database: Path,
    *,
    staged: Path,
    aside_name: str,
    on_progress: Callable[[int, int], None] | None = None,
    verified: DatabaseFileSummary | None = None,
) -> RestoreResult:
    """Restore `backup` into `database`, keeping a copy of the current content as `aside_name`.

    `aside_name` must not be in use in the database's folder (`backup.unused_path`).

    The caller must hold the data directory's lock. The backup is verified
    before anything is touched (pass `verified` if the caller just ran
    `verify_restore_source`). The backup is copied into the database in
    one transaction; once that holds the write lock, the last committed
    content is copied aside, so no acknowledged write is in neither file.
    Other processes with the file open see all of the old content or all
    of the restored one. A live file that
    SQLite cannot read is moved aside whole and replaced by a copy of the
    backup (through `staged`) in one atomic rename.
    """
    summary = verified if verified is not None else verify_restore_source(backup)
    if not database.exists():
        _discard_companions(database)  # an old WAL would be replayed onto the restored file
        _restore_online(backup, database, on_progress)
        return RestoreResult(summary, database, None)
    aside = database.parent / aside_name
    try:
        _restore_online(backup, database, on_progress, lambda: _copy_online(database, aside))
    except StoreCorruptError:
        _remove_with_companions(aside)
        return _swap_in(backup, database, staged, aside_name, summary, on_progress)
    return RestoreResult(summary, database, aside)


def _restore_online(
    backup: Path,
    database: Path,
    on_progress: Callable[[int, int], None] | None,
    keep_aside: Callable[[], None] | None = None,
) -> None:
    """Copy `backup` into the (maybe live) `database` through SQLite's backup API.

    `keep_aside` runs once the copy holds the live database's write lock and
    before anything is committed: what it copies through another connection
    is then exactly what the restore replaces, with no write slipping in
    between (writers wait on their busy timeout meanwhile).
    """
    create_owner_only_file(database)
    try:
        source = sqlite3.connect(_read_only_uri(backup, immutable=True), uri=True)
    except sqlite3.Error as exc:
        raise translate_error(exc, backup, "reading the backup") from exc
    try:
        try:
            target = connect(database)
        except sqlite3.Error as exc:
            raise translate_error(exc, database, "opening the database to restore into") from exc
        try:
            (page_size,) = source.execute("PRAGMA page_size").fetchone()
            (page_count,) = source.execute("PRAGMA page_count").fetchone()
            # The first step must leave pages over: the write lock is held from
            # it until the last one commits, and `keep_aside` runs after it.
            pages = max(1, min(RESTORE_PAGES_PER_STEP, int(page_count) // 2))
            waiting = [keep_aside] if keep_aside is not None else []

            def progress(status: int, remaining: int, total: int) -> None:
                # Called after every step, also one that found the database busy
                # (and took no lock): only after a step that copied pages is the
                # write lock held.
                if waiting and status == sqlite3.SQLITE_DONE:
                    raise StoreError(f"restore into {database}: committed before the copy")
                if waiting and status == sqlite3.SQLITE_OK:
                    waiting.pop()()
                if on_progress is not None:
                    on_progress((total - remaining) * page_size, total * page_size)

            source.backup(target, pages=pages, progress=progress)
            # Fold the restored pages into the file now: a WAL the size of the
            # whole database would otherwise wait for the next checkpoint.
            with suppress(sqlite3.Error):
                target.execute(queries.CHECKPOINT_PASSIVE).fetchone()
        except sqlite3.Error as exc:
            if "page size" in str(exc).lower() or getattr(exc, "sqlite_errorcode", 0) & 0xFF == 8:
                raise StoreError(
                    f"restore into {database} failed: the backup's page size differs from the "
                    f"live database's, which SQLite cannot change in WAL mode ({exc}); stop "
                    f"every program using {database}, move it aside, and restore again"
                ) from exc
            raise translate_error(exc, database, "restoring") from exc
        finally:
            target.close()
    finally:
        source.close()


def _copy_online(database: Path, aside: Path) -> None:
    """Write a consistent, synced single-file copy of `database` (its last commit) to `aside`."""
    create_owner_only_file(aside)
    try:
        # Read-only: the restore holds the write lock; this reads the last commit.
        source = sqlite3.connect(_read_only_uri(database), uri=True)
        try:
            target = connect(aside, wal=False)
            try:
                source.backup(target)
                target.execute(queries.USE_ROLLBACK_JOURNAL)
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        _remove_with_companions(aside)
        raise translate_error(exc, database, "keeping a copy of the current database") from exc
    except BaseException:
        _remove_with_companions(aside)
        raise
    fsync_file(aside)
    fsync_directory(aside.parent)


def _swap_in(
    backup: Path,
    database: Path,
    staged: Path,
    aside_name: str,
    summary: DatabaseFileSummary,
    on_progress: Callable[[int, int], None] | None,
) -> RestoreResult:
    """Replace a damaged `database` file by a copy of `backup`, keeping the old file aside."""
    directory = database.parent
    try:
        _copy_private(backup, staged, on_progress)
        previous = _set_aside(database, aside_name)
        os.replace(staged, database)
        fsync_directory(directory)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise StoreError(f"restore into {database} failed: {exc.strerror or exc}") from exc
    return RestoreResult(summary, database, previous, swapped=True)


def _read_only_uri(path: Path, *, immutable: bool = False) -> str:
    """Return a read-only URI; `immutable` also keeps SQLite from creating -wal/-shm files."""
    return f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")


def _discard_companions(database: Path) -> None:
    for suffix in COMPANION_SUFFIXES:
        database.with_name(database.name + suffix).unlink(missing_ok=True)


def _remove_with_companions(path: Path) -> None:
    path.unlink(missing_ok=True)
    _discard_companions(path)


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
    return verify_database_file(backup, immutable=True)


def _set_aside(database: Path, aside_name: str) -> Path | None:
    """Keep the current database, with any WAL, under a new unique name.

    Companion files (-wal, -shm, -journal) are always moved away, even when
    the database itself is missing: left in place, SQLite would replay an
    old WAL onto the restored file.
    """
    kept = database.parent / aside_name if database.exists() else None
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
