"""The backup policy: names, taking and publishing, pruning, choosing one, restoring it.

A backup is `<db>.backup.YYYYMMDD-HHMMSS` (UTC), with `-N` added when two are
taken in one second. The store writes a verified, synced snapshot under a
`.partial` name (`JobStore.write_snapshot`); only then is it linked to its
final name, so a final name always means a complete, verified copy.
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
from typing import TYPE_CHECKING

from secautod.errors import (
    BackupError,
    NotFoundError,
    StopCheck,
    StoreCorruptError,
    StoreError,
    StoreFullError,
)
from secautod.files import fsync_directory, prepare_directory
from secautod.timestamps import require_aware, utc_now

if TYPE_CHECKING:
    from secautod.config import Config
    from secautod.store import BackupCheck, JobStore
    from secautod.store.records import DatabaseFileSummary
    from secautod.store.sqlite.restore import RestoreResult

_STAMP_FORMAT = "%Y%m%d-%H%M%S"
# The stamp (and sequence) after `<db>.backup.` or `<db>.pre-restore-`.
_STAMPED_NAME = re.compile(r"^(?P<stamp>\d{8}-\d{6})(?:-(?P<sequence>\d+))?$")
_PARTIAL_SUFFIX = ".partial"
# `restore` keeps the database it replaced as `<db>.pre-restore-STAMP`; the
# newest few are kept, older ones deleted.
PRE_RESTORE_KEEP = 3
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
    match = _STAMPED_NAME.match(file_name[len(prefix) :])
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


def take_backup(
    store: JobStore,
    directory: Path,
    *,
    now: datetime | None = None,
    should_stop: StopCheck | None = None,
    check: BackupCheck = "integrity",
) -> Path:
    """Write a verified backup of `store` into `directory` and return its final path.

    On any failure no file is left under a final name (nor a partial one).
    """
    taken_at = require_aware(now, "now") if now is not None else utc_now()
    prepare_directory(directory)
    remove_stale_partials(directory, store.path.name)
    partial = partial_path(directory, store.path.name, taken_at)
    try:
        store.write_snapshot(partial, should_stop=should_stop, check=check)
        final = publish_backup(partial, directory, store.path.name, taken_at)
    except OSError as exc:
        _remove_database_files(partial)
        if exc.errno == errno.ENOSPC:
            raise StoreFullError(f"backup to {directory} failed: the disk is full") from exc
        raise BackupError(f"backup to {directory} failed: {exc.strerror or exc}") from exc
    except BaseException:
        _remove_database_files(partial)
        raise
    # The verified backup exists whatever happens now; if the bookkeeping
    # write fails, `status` merely shows it as not recorded.
    with suppress(StoreError):
        store.state.record_backup(final, taken_at, final.stat().st_size)
    return final


def restore_backup(
    backup: Path,
    database: Path,
    now: datetime,
    on_progress: Callable[[int, int], None] | None = None,
    verified: DatabaseFileSummary | None = None,
) -> RestoreResult:
    """Replace `database` with `backup`, keeping the replaced file as `<db>.pre-restore-STAMP`.

    The caller must hold the data directory's lock.
    """
    from secautod.store import restore_database_file

    stamp = require_aware(now, "now").strftime(_STAMP_FORMAT)
    return restore_database_file(
        backup,
        database,
        staged=database.parent / f".{database.name}.restore.{os.getpid()}{_PARTIAL_SUFFIX}",
        aside_name=f"{database.name}.pre-restore-{stamp}",
        on_progress=on_progress,
        verified=verified,
    )


def prune_pre_restore_files(database: Path, keep: int, protect: Path | None = None) -> list[Path]:
    """Delete all but the newest `keep` `<db>.pre-restore-*` files, never `protect`."""
    kept = []
    for entry in database.parent.glob(f"{database.name}.pre-restore-*"):
        match = _STAMPED_NAME.match(entry.name[len(database.name) + len(".pre-restore-") :])
        if match is not None and entry.is_file():
            kept.append((match["stamp"], int(match["sequence"] or 1), entry))
    kept.sort(reverse=True)
    removed = []
    for _, _, path in kept[keep:]:
        if path == protect:
            continue
        for suffix in ("", "-wal", "-shm", "-journal"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        removed.append(path)
    if removed:
        fsync_directory(database.parent)
    return removed


def with_restore_hint(exc: StoreCorruptError, config: Config) -> StoreCorruptError:
    """Return `exc` with the restore hint appended (once).

    Only damage to the file itself calls for a restore: a busy, full or
    foreign-written store does not, and a restore would lose newer jobs.
    """
    if "secautod restore" in str(exc) or "No backup found" in str(exc):
        return exc
    return type(exc)(f"{exc}. {restore_hint(config)}")


def restore_hint(config: Config) -> str:
    """Name the newest backup and the command that restores it."""
    newest = newest_backup(config.backup_directory, config.database_path.name)
    if newest is None:
        return f"No backup found in {config.backup_directory}"
    return (
        f"Newest backup: {newest.path}; restore it with: "
        f"secautod restore --config {config.path} {newest.path.name}"
    )


def _remove_database_files(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


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
