"""Backup files on disk: their names, listing, pruning, publishing and restore.

A backup is `<db>.backup.YYYYMMDD-HHMMSS` (UTC), with `-N` added when two are
taken in one second. Files are written under a `.partial` name and only
linked to their final name once verified, so a final name always means a
complete, verified copy. The SQLite side (the copy itself, the integrity
check) is the store's; this module only moves files.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from secautod.database import (
    DATABASE_FILE_MODE,
    DatabaseFileSummary,
    checkpoint_database_file,
    verify_database_file,
)
from secautod.errors import BackupError, NotFoundError, StoreError
from secautod.timestamps import require_aware

_STAMP_FORMAT = "%Y%m%d-%H%M%S"
_BACKUP_NAME = re.compile(r"^(?P<stamp>\d{8}-\d{6})(?:-(?P<sequence>\d+))?$")
_PARTIAL_SUFFIX = ".partial"
_COPY_CHUNK_BYTES = 4 * 1024 * 1024
STALE_PARTIAL_AGE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class BackupFile:
    """A backup found on disk."""

    path: Path
    taken_at: datetime
    sequence: int

    @property
    def size_bytes(self) -> int:
        """The file's size now."""
        return self.path.stat().st_size


def backup_name(database_name: str, taken_at: datetime, sequence: int = 1) -> str:
    """Return the final file name of a backup taken at `taken_at`."""
    stamp = require_aware(taken_at, "taken_at").strftime(_STAMP_FORMAT)
    return f"{database_name}.backup.{stamp}" + (f"-{sequence}" if sequence > 1 else "")


def parse_backup_name(database_name: str, file_name: str) -> tuple[datetime, int] | None:
    """Return (time taken, sequence) of a backup file name, or None if it is not one."""
    prefix = f"{database_name}.backup."
    if not file_name.startswith(prefix):
        return None
    match = _BACKUP_NAME.match(file_name[len(prefix) :])
    if match is None:
        return None
    try:
        taken_at = datetime.strptime(match["stamp"], _STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
    return taken_at, int(match["sequence"] or 1)


def list_backups(directory: Path, database_name: str) -> list[BackupFile]:
    """Return the backups of `database_name` in `directory`, newest first."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    backups = []
    for entry in entries:
        parsed = parse_backup_name(database_name, entry.name)
        if parsed is not None and entry.is_file(follow_symlinks=False):
            backups.append(BackupFile(Path(entry.path), *parsed))
    backups.sort(key=lambda backup: (backup.taken_at, backup.sequence), reverse=True)
    return backups


def newest_backup(directory: Path, database_name: str) -> BackupFile | None:
    """Return the most recent backup, or None if there is none."""
    backups = list_backups(directory, database_name)
    return backups[0] if backups else None


def prune_backups(
    directory: Path, database_name: str, keep: int, protect: Path | None = None
) -> list[Path]:
    """Delete all but the newest `keep` backups, never `protect`; return what went."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    removed = []
    for backup in list_backups(directory, database_name)[keep:]:
        if protect is not None and backup.path == protect:
            continue
        backup.path.unlink(missing_ok=True)
        removed.append(backup.path)
    if removed:
        fsync_directory(directory)
    return removed


def partial_path(directory: Path, database_name: str, taken_at: datetime) -> Path:
    """Return a fresh temporary name for a backup: the writer's pid and a random token."""
    token = secrets.token_hex(4)
    name = backup_name(database_name, taken_at)
    return directory / f".{name}.{os.getpid()}-{token}{_PARTIAL_SUFFIX}"


def remove_stale_partials(
    directory: Path, database_name: str, now: datetime | None = None
) -> list[Path]:
    """Delete `.partial` files left behind by backups that died.

    A file counts as left behind when its writer's pid is not running here
    and it has not changed for `STALE_PARTIAL_AGE` (pids mean nothing across
    containers sharing a volume; a backup in progress keeps writing).
    """
    removed = []
    cutoff = (now or datetime.now(UTC)).timestamp() - STALE_PARTIAL_AGE.total_seconds()
    for path in directory.glob(f".{database_name}.*{_PARTIAL_SUFFIX}*"):
        owner = _partial_owner_pid(path.name)
        try:
            idle = path.stat().st_mtime < cutoff
        except FileNotFoundError:
            continue
        if idle and (owner is None or not _process_exists(owner)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def publish_backup(partial: Path, directory: Path, database_name: str, taken_at: datetime) -> Path:
    """Give a verified, synced partial file its final name without overwriting one.

    A hard link fails if the name exists, so two backups in the same second
    get `-2`, `-3`, ... instead of replacing each other.
    """
    sequence = 1
    while True:
        final = directory / backup_name(database_name, taken_at, sequence)
        try:
            os.link(partial, final)
        except FileExistsError:
            sequence += 1
            continue
        partial.unlink()
        fsync_directory(directory)
        return final


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


def resolve_backup(
    name: str | None, directory: Path, database_name: str, working_directory: Path | None = None
) -> Path:
    """Find the backup an operator named: a path, a name in `directory`, or the newest."""
    if name is None:
        newest = newest_backup(directory, database_name)
        if newest is None:
            raise NotFoundError(f"no backups of {database_name} in {directory}")
        return newest.path
    candidate = (working_directory or Path.cwd()) / name
    if candidate.is_file():
        return candidate.absolute()
    in_directory = directory / name
    if in_directory.is_file():
        return in_directory
    raise NotFoundError(
        f"backup {name!r} not found (looked in the current directory and {directory})"
    )


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What `restore_backup` did."""

    backup: DatabaseFileSummary
    database: Path
    previous: Path | None  # where the replaced database was kept, if there was one


def restore_backup(
    backup: Path,
    database: Path,
    now: datetime,
    on_progress: Callable[[int, int], None] | None = None,
    verified: DatabaseFileSummary | None = None,
) -> RestoreResult:
    """Replace `database` with a verified copy of `backup`, keeping the old file aside.

    The caller must hold the data directory's lock. The backup is verified
    before anything is touched (pass `verified` if the caller just ran
    `verify_restore_source`); the swap itself is one atomic rename.
    """
    summary = verified if verified is not None else verify_restore_source(backup)
    directory = database.parent
    stamp = require_aware(now, "now").strftime(_STAMP_FORMAT)
    staged = directory / f".{database.name}.restore.{os.getpid()}{_PARTIAL_SUFFIX}"
    try:
        _copy_private(backup, staged, on_progress)
        previous = _set_aside(database, f"{database.name}.pre-restore-{stamp}")
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


def _partial_owner_pid(file_name: str) -> int | None:
    stem = file_name.split(_PARTIAL_SUFFIX)[0]
    _, _, owner = stem.rpartition(".")
    pid = owner.partition("-")[0]
    return int(pid) if pid.isdigit() else None


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
