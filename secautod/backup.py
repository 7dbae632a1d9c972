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
import stat
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
from secautod.files import fsync_directory, prepare_directory, rename_no_replace
from secautod.log import get_logger
from secautod.timestamps import require_aware, utc_now

if TYPE_CHECKING:
    from secautod.config import Config
    from secautod.store import BackupCheck, JobStore
    from secautod.store.records import DatabaseFileSummary
    from secautod.store.sqlite.restore import RestoreResult

log = get_logger("secautod.backup")

_STAMP_FORMAT = "%Y%m%d-%H%M%S"
# The stamp (and sequence) after `<db>.backup.` or `<db>.pre-restore-`.
_STAMPED_NAME = re.compile(r"^(?P<stamp>\d{8}-\d{6})(?:-(?P<sequence>\d+))?$")
_PARTIAL_SUFFIX = ".partial"
# `restore` keeps the database it replaced as `<db>.pre-restore-STAMP`; the
# newest few are kept, older ones deleted.
PRE_RESTORE_KEEP = 3
STALE_PARTIAL_AGE = timedelta(minutes=10)


# A backup whose time lies further ahead than this is "from the future": a
# clock that ran ahead named it, or it was copied in. It is never pruned nor
# chosen by default, and it is reported.
FUTURE_TOLERANCE = timedelta(minutes=5)
# When secautod verified a backup, as its store recorded it (None: unrecorded).
VerifiedAt = Callable[[Path], datetime | None]


@dataclass(frozen=True, slots=True)
class BackupFile:
    """A backup found on disk."""

    path: Path
    taken_at: datetime
    sequence: int
    verified_at: datetime | None = None  # recorded by the store that wrote it

    @property
    def when(self) -> datetime:
        """The backup's time for ordering: when it was verified if recorded, else its name's."""
        return self.verified_at or self.taken_at

    @property
    def size_bytes(self) -> int:
        """The file's size now."""
        return self.path.stat().st_size

    def is_future(self, now: datetime) -> bool:
        """Tell whether the backup's time lies ahead of `now` (beyond a small tolerance)."""
        return self.when > now + FUTURE_TOLERANCE


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


def list_backups(
    directory: Path, database_name: str, verified_at: VerifiedAt | None = None
) -> list[BackupFile]:
    """Return the backups of `database_name` in `directory`, newest first.

    With `verified_at` (what the store recorded), a backup is ordered by
    when secautod verified it; otherwise, and for files it has no record
    of, by the time in its name.
    """
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    backups = []
    for entry in entries:
        parsed = parse_backup_name(database_name, entry.name)
        if parsed is not None and entry.is_file(follow_symlinks=False):
            path = Path(entry.path)
            recorded = verified_at(path) if verified_at is not None else None
            backups.append(BackupFile(path, *parsed, verified_at=recorded))
    backups.sort(key=lambda backup: (backup.when, backup.taken_at, backup.sequence), reverse=True)
    return backups


def recorded_verification(store: JobStore) -> VerifiedAt:
    """Return a lookup of when `store` recorded verifying a backup (None if unknown)."""

    def verified_at(path: Path) -> datetime | None:
        try:
            record = store.state.backup_record(path)
        except StoreError:
            return None
        return record.created_at if record is not None else None

    return verified_at


def future_backups(backups: list[BackupFile], now: datetime) -> list[BackupFile]:
    """Return the backups whose time lies in the future (see `FUTURE_TOLERANCE`)."""
    return [backup for backup in backups if backup.is_future(now)]


def newest_backup(
    directory: Path,
    database_name: str,
    verified_at: VerifiedAt | None = None,
    now: datetime | None = None,
) -> BackupFile | None:
    """Return the most recent backup that is not from the future, or None if there is none."""
    now = now or utc_now()
    backups = list_backups(directory, database_name, verified_at)
    return next((backup for backup in backups if not backup.is_future(now)), None)


def prune_backups(
    directory: Path,
    database_name: str,
    keep: int,
    protect: Path | None = None,
    verified_at: VerifiedAt | None = None,
    now: datetime | None = None,
) -> list[Path]:
    """Delete all but the newest `keep` backups, never `protect`; return what went.

    Backups from the future neither count towards `keep` nor are deleted:
    the operator is told about them instead (`future_backups`).
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    now = now or utc_now()
    backups = list_backups(directory, database_name, verified_at)
    removed = []
    for backup in [backup for backup in backups if not backup.is_future(now)][keep:]:
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


def publish_backup(
    partial: Path,
    directory: Path,
    database_name: str,
    taken_at: datetime,
    link: Callable[[Path, Path], None] = os.link,
) -> Path:
    """Give a verified, synced partial file its final name without overwriting one.

    Two backups in the same second get `-2`, `-3`, ...: always one more
    than the highest sequence of that second still on disk, so a name freed
    by pruning is never reused and names sort in the order taken. A hard
    link fails if the name exists; where the file system has no hard links
    (exFAT, vfat, some SMB and FUSE mounts) a rename that refuses to
    replace a file does the same.
    """
    stamp = backup_name(database_name, taken_at)
    sequence = 1 + max(
        (
            backup.sequence
            for backup in list_backups(directory, database_name)
            if backup_name(database_name, backup.taken_at) == stamp
        ),
        default=0,
    )
    while True:
        final = directory / backup_name(database_name, taken_at, sequence)
        try:
            _link_or_rename(partial, final, link)
        except FileExistsError:
            sequence += 1
            continue
        partial.unlink(missing_ok=True)  # gone already if it was renamed
        fsync_directory(directory)
        _warn_if_not_owner_only(final)
        return final


_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS)


def _link_or_rename(partial: Path, final: Path, link: Callable[[Path, Path], None]) -> None:
    """Link `partial` to `final`, or rename it there where hard links are not supported."""
    try:
        link(partial, final)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        log.warning(
            "backup_directory_without_hard_links",
            directory=str(final.parent),
            error=exc.strerror,
            fallback="rename without replacing",
        )
    try:
        rename_no_replace(partial, final)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "exists", str(final)) from exc
        raise OSError(
            exc.errno,
            f"the file system of {final.parent} lacks hard links, and renaming instead "
            f"failed too: {exc.strerror}",
        ) from exc


def _warn_if_not_owner_only(path: Path) -> None:
    """Log when the file system cannot keep a backup owner-only (vfat shows 0777)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "backup_not_owner_only",
            path=str(path),
            mode=f"{mode:04o}",
            hint="the file system ignores permissions; keep backups on one that does "
            "(the jobs carry security context)",
        )


def resolve_backup(
    name: str | None,
    directory: Path,
    database_name: str,
    working_directory: Path | None = None,
    now: datetime | None = None,
) -> Path:
    """Find the backup an operator named: a path, a name in `directory`, or the newest.

    The newest is never one from the future: those must be named.
    """
    if name is None:
        newest = newest_backup(directory, database_name, now=now)
        if newest is not None:
            return newest.path
        future = future_backups(list_backups(directory, database_name), now or utc_now())
        if future:
            raise NotFoundError(
                f"the only backups of {database_name} in {directory} are dated in the future "
                f"({', '.join(backup.path.name for backup in future)}): a clock ran ahead or "
                f"they were copied in; name the one to restore"
            )
        raise NotFoundError(f"no backups of {database_name} in {directory}")
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

    return restore_database_file(
        backup,
        database,
        staged=database.parent / f".{database.name}.restore.{os.getpid()}{_PARTIAL_SUFFIX}",
        aside_name=unused_path(database.parent, pre_restore_name(database.name, now)).name,
        on_progress=on_progress,
        verified=verified,
    )


def pre_restore_name(database_name: str, now: datetime) -> str:
    """Return the name `restore` keeps the replaced store under: `<db>.pre-restore-STAMP`."""
    return f"{database_name}.pre-restore-{require_aware(now, 'now').strftime(_STAMP_FORMAT)}"


def unused_path(directory: Path, name: str) -> Path:
    """Return `directory/name`, or `name-2`, `name-3`, ... if taken: a name never overwritten."""
    candidate, sequence = directory / name, 1
    while candidate.exists():
        sequence += 1
        candidate = directory / f"{name}-{sequence}"
    return candidate


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
    if "secautod restore" in str(exc):
        return exc
    return type(exc)(f"{exc}. {restore_hint(config)}")


def restore_hint(config: Config) -> str:
    """Name the newest backup and the command that restores it, or what to do without one."""
    url = config.storage.url
    if url is None:
        name = config.database_path.name
    else:
        from secautod.store.postgres.dump import database_name

        name = database_name(url)  # PostgreSQL backups are named after the database
    newest = newest_backup(config.backup_directory, name)
    if newest is None and url is not None:
        return (
            f"No backup found in {config.backup_directory}. Restore a copy from elsewhere "
            f"(secautod restore --config {config.path} PATH), or repair the database "
            f"with PostgreSQL's own tools"
        )
    if newest is None:
        database = config.database_path
        return (
            f"No backup found in {config.backup_directory}. Either move the damaged file "
            f"aside (mv {database} {database}.damaged; the daemon then starts with an "
            f"empty store) or restore a copy from elsewhere: "
            f"secautod restore --config {config.path} PATH"
        )
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
