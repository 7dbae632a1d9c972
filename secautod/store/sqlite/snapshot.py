"""Snapshots of a SQLite store: an online copy of one snapshot, and verifying a file.

`backup.py` names, publishes and prunes the files; this module fills one
and checks files for damage (backups, restore sources, the live database).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from secautod.errors import BackupAborted, BackupError, StopCheck, StoreCorruptError
from secautod.files import create_owner_only_file
from secautod.store.base import BackupCheck
from secautod.store.records import DatabaseFileSummary, describe_problems
from secautod.store.sqlite import queries
from secautod.store.sqlite.connection import ConnectionPool, connect, translate_error
from secautod.store.sqlite.schema import check_jobs_table, check_not_newer, schema_version

BACKUP_PAGES_PER_STEP = 1024
BACKUP_SYNC_EVERY_STEPS = 4  # fdatasync the copy every 16 MiB (4 KiB pages)
STOP_POLL_SECONDS = 0.05


def copy_verified(
    pool: ConnectionPool,
    partial: Path,
    schema: int,
    *,
    should_stop: StopCheck | None = None,
    check: BackupCheck = "integrity",
) -> None:
    """Copy one snapshot of `pool`'s database into `partial` and verify it.

    The copy must pass `check` and carry schema version `schema`; otherwise
    `BackupError` (`BackupAborted` once `should_stop` says so). The caller
    removes `partial` on failure.
    """
    create_owner_only_file(partial)

    sync_fd = os.open(partial, os.O_RDONLY)
    steps = 0

    def check_stop(_status: int, _remaining: int, _total: int) -> None:
        nonlocal steps
        if should_stop is not None and should_stop():
            raise BackupAborted()
        # Write the copy out as it grows: gigabytes of dirty pages flushed at
        # the end would stall every other fsync on the disk (the engine's commits).
        steps += 1
        if steps % BACKUP_SYNC_EVERY_STEPS == 0:
            os.fdatasync(sync_fd)

    source = pool.open_connection("backing up")
    try:
        with pool.translating(f"writing backup {partial}"):
            target = connect(partial, wal=False)
        try:
            with pool.translating(f"writing backup {partial}"):
                # An open read transaction pins one snapshot for every step,
                # so concurrent writers never force the copy to restart.
                source.execute(queries.BEGIN_READ)
                source.execute(queries.PING).fetchone()
                source.backup(target, pages=BACKUP_PAGES_PER_STEP, progress=check_stop)
                source.execute(queries.COMMIT)
                # The snapshot held back every checkpoint: fold the WAL now,
                # before an engine commit inherits the whole backlog.
                source.execute(queries.CHECKPOINT_PASSIVE).fetchone()
                target.execute(queries.USE_ROLLBACK_JOURNAL)
                try:
                    with _interrupted_on_stop(target, should_stop):
                        problems = integrity_problems(target, check=check)
                except sqlite3.OperationalError:
                    if should_stop is not None and should_stop():
                        raise BackupAborted() from None
                    raise
                # A stop requested at any point before publishing aborts, even
                # if the check finished before the interrupt could land.
                if should_stop is not None and should_stop():
                    raise BackupAborted()
                version = schema_version(target)
            if problems:
                raise BackupError(
                    f"the backup copy failed its integrity check "
                    f"({describe_problems(problems)}); the database itself may be "
                    f"damaged: run 'secautod check'"
                )
            if version != schema:
                raise BackupError(f"backup {partial} has schema version {version}")
        finally:
            target.close()
    finally:
        source.close()
        os.close(sync_fd)


@contextmanager
def _interrupted_on_stop(conn: sqlite3.Connection, should_stop: StopCheck | None) -> Iterator[None]:
    """Interrupt `conn`'s running statement as soon as `should_stop` says so.

    `PRAGMA integrity_check` runs as one VM step, so a progress handler never
    gets a say; `interrupt()` from another thread does.
    """
    if should_stop is None:
        yield
        return
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if should_stop():
                conn.interrupt()
                return
            finished.wait(STOP_POLL_SECONDS)

    watcher = threading.Thread(target=watch, name="backup-stop-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        watcher.join()


def integrity_problems(
    conn: sqlite3.Connection, limit: int = 20, check: BackupCheck = "integrity"
) -> list[str]:
    """Run `PRAGMA integrity_check` (or `quick_check`); return its complaints (empty when ok)."""
    pragma = "quick_check" if check == "quick" else "integrity_check"
    rows = [str(row[0]) for row in conn.execute(f"PRAGMA {pragma}({int(limit)})")]
    if rows == ["ok"]:
        return []
    # One row may hold several newline-separated complaints.
    return [line.strip(" *") for row in rows for line in row.splitlines() if line.strip(" *")]


def verify_database_file(path: Path, *, immutable: bool = False) -> DatabaseFileSummary:
    """Check that `path` is an intact secautod job store this version can open.

    Opens the file read-only, runs `PRAGMA integrity_check`, and checks the
    schema version and the `jobs` table. Raises `StoreCorruptError` or
    `SchemaVersionError` naming the file and the problem. `immutable` is for
    a file nobody writes and whose WAL is known empty: SQLite then reads the
    file alone and leaves no -wal or -shm beside it.
    """
    if not path.is_file():
        raise StoreCorruptError(f"{path} does not exist or is not a regular file")
    uri = f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise translate_error(exc, path, "verifying") from exc
    try:
        problems = integrity_problems(conn)
        if problems:
            raise StoreCorruptError(
                f"{path} failed its integrity check: {describe_problems(problems)}"
            )
        version = schema_version(conn)
        check_not_newer(version, path)
        check_jobs_table(conn, path)
        (jobs,) = conn.execute(queries.COUNT_ALL_JOBS).fetchone()
    except sqlite3.Error as exc:
        raise translate_error(exc, path, "verifying") from exc
    finally:
        conn.close()
    return DatabaseFileSummary(path, version, int(jobs), path.stat().st_size)


def checkpoint_database_file(path: Path) -> None:
    """Fold the WAL of a database nobody else has open into the main file."""
    try:
        conn = connect(path)
    except sqlite3.Error as exc:
        raise translate_error(exc, path, "checkpointing") from exc
    try:
        conn.execute(queries.CHECKPOINT_TRUNCATE)
    except sqlite3.Error as exc:
        raise translate_error(exc, path, "checkpointing") from exc
    finally:
        conn.close()
