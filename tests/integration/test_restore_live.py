"""Restore goes through SQLite into the live file, so connected engines never write into a ghost."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from secautod import JobStore
from secautod.backup import prune_pre_restore_files, restore_backup

NAMED_AT = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
INSERT = (
    "INSERT INTO jobs (id, status, playbook, context, created_at) "
    "VALUES (?, 'pending', '{}', '{}', '2026-11-01 00:00:00.000')"
)

BULK_INSERT = (
    "INSERT INTO jobs (id, status, playbook, context, created_at) "
    "VALUES (?, 'completed', '{}', ?, '2026-10-01 00:00:00.000')"
)


def engine(path: Path) -> sqlite3.Connection:
    """A connection as the engine keeps one open: WAL, a busy timeout, autocommit."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def ids_in(path: Path) -> set[str]:
    with JobStore(path) as store:
        return {job.id for job in store.list_jobs()}


def test_an_engine_connected_during_restore_writes_into_the_restored_database(
    tmp_path: Path,
) -> None:
    """Inserts acknowledged after the restore land in the live jobs.db, not in the set-aside file."""
    path = tmp_path / "jobs.db"
    JobStore(path).close()
    writer = engine(path)
    for n in range(5):
        writer.execute(INSERT, (f"in-backup-{n}",))
    with JobStore(path) as store:
        backup = store.backup_jobs(now=NAMED_AT)
    writer.execute(INSERT, ("only-before-restore",))

    result = restore_backup(backup, path, NAMED_AT)
    writer.execute(INSERT, ("after-restore",))  # the engine never noticed the restore
    writer.close()

    assert ids_in(path) == {*(f"in-backup-{n}" for n in range(5)), "after-restore"}
    assert result.previous is not None
    assert "only-before-restore" in ids_in(result.previous)
    assert "after-restore" not in ids_in(result.previous)


def test_restoring_a_wal_mode_file_leaves_no_wal_or_shm_beside_it(tmp_path: Path) -> None:
    """A backup file in WAL mode (a copied, checkpointed store) is restored without litter."""
    source = tmp_path / "elsewhere" / "copy.db"
    with JobStore(source) as store:
        store.checkpoint()
    assert source.read_bytes()[18:19] == b"\x02"  # WAL mode in the header
    assert not source.with_name("copy.db-wal").exists()
    live = tmp_path / "data" / "jobs.db"
    JobStore(live).close()
    restore_backup(source, live, NAMED_AT)
    assert sorted(path.name for path in source.parent.iterdir()) == ["copy.db"]


def test_a_live_file_too_damaged_to_open_is_swapped_for_the_backup(
    tmp_path: Path, make_job: Any
) -> None:
    """When SQLite cannot write through the damaged live file, restore replaces the file."""
    path = tmp_path / "jobs.db"
    with JobStore(path) as store:
        store.save_job(make_job(id="kept"))
        backup = store.backup_jobs(now=NAMED_AT)
    path.write_bytes(b"this is not a database at all" * 200)
    result = restore_backup(backup, path, NAMED_AT)
    assert result.swapped
    assert ids_in(path) == {"kept"}
    assert result.previous is not None
    assert result.previous.read_bytes().startswith(b"this is not a database")


def test_only_the_newest_pre_restore_files_are_kept(tmp_path: Path) -> None:
    """Old jobs.db.pre-restore-* files (with their companions) go; the newest `keep` stay."""
    database = tmp_path / "jobs.db"
    names = [f"jobs.db.pre-restore-2026110{day}-120000" for day in range(1, 6)]
    for name in [*names, names[4] + "-2"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / (names[0] + "-wal")).write_bytes(b"x")
    removed = prune_pre_restore_files(database, keep=3)
    assert sorted(path.name for path in removed) == names[:3]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        names[3],
        names[4],
        names[4] + "-2",
    ]


def test_no_acknowledged_write_falls_between_the_kept_copy_and_the_restore(
    tmp_path: Path,
) -> None:
    """An engine inserting throughout a restore: every acknowledged insert is kept somewhere.

    Each insert is in the pre-restore copy or in the restored database, and
    every one acknowledged after restore returned is in the live database.
    """
    import threading

    path = tmp_path / "jobs.db"
    JobStore(path).close()
    filler = engine(path)
    filler.execute("BEGIN")
    for n in range(3000):
        filler.execute(BULK_INSERT, (f"bulk-{n}", '{"pad":"' + "x" * 3000 + '"}'))
    filler.execute("COMMIT")
    filler.close()
    with JobStore(path) as store:
        backup = store.backup_jobs(now=NAMED_AT)

    acknowledged: list[str] = []
    restored = threading.Event()
    after_restore: list[str] = []
    stop = threading.Event()

    def write() -> None:
        conn = engine(path)
        n = 0
        while not stop.is_set():
            job_id = f"live-{n}"
            conn.execute(INSERT, (job_id,))
            (after_restore if restored.is_set() else acknowledged).append(job_id)
            n += 1
        conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while len(acknowledged) < 20:
            threading.Event().wait(0.005)
        result = restore_backup(backup, path, NAMED_AT)
        restored.set()
        while len(after_restore) < 20:
            threading.Event().wait(0.005)
    finally:
        stop.set()
        writer.join(30)
    assert result.previous is not None
    live, kept = ids_in(path), ids_in(result.previous)
    assert set(after_restore) <= live
    missing = [job_id for job_id in acknowledged if job_id not in live | kept]
    assert missing == []
