"""The SQLite side of a backup: copying one snapshot and verifying the copy.

`backup.py` names, publishes and prunes the files; this module fills one.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from secautod import queries
from secautod.database import (
    BackupCheck,
    ConnectionPool,
    connect,
    create_owner_only_file,
    describe_problems,
    integrity_problems,
    schema_version,
)
from secautod.errors import BackupAborted, BackupError, StopCheck

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
