"""Verified online backups: naming, consistency, failure cleanliness, disk full, restore."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from secautod import JobStore
from secautod.backup import list_backups, restore_backup
from secautod.errors import BackupAborted, BackupError, StoreCorruptError, StoreFullError
from secautod.store.sqlite.snapshot import integrity_problems

# Tests that assert file names pass this instant rather than the `now` fixture.
NAMED_AT = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def fill(store: JobStore, make_job: Any, count: int, payload: int = 0) -> None:
    for _ in range(count):
        store.save_job(make_job(context={"blob": "x" * payload}))


def test_backup_is_a_verified_self_contained_copy(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """The backup has the UTC name, 0600 mode, every job, rollback-journal mode and no side files."""
    store = make_store()
    fill(store, make_job, 20)
    path = store.backup_jobs(now=NAMED_AT)
    assert path.name == "jobs.db.backup.20261122-120000"
    assert path.parent == store.path.parent
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 20
    conn.close()
    leftovers = [
        name
        for name in files_in(path.parent)
        if name.startswith(".") or ("backup" in name and name != path.name)
    ]
    assert leftovers == []
    record = store.state.backup_record(path)
    assert record is not None
    assert record.integrity == "ok"
    assert record.size_bytes == path.stat().st_size


def test_quick_checked_backup_is_a_complete_copy(
    make_store: Any, make_job: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With check="quick" the copy is verified by PRAGMA quick_check and is still complete and sound."""
    import secautod.store.sqlite.snapshot as backup_copy

    checks: list[str] = []
    real = backup_copy.integrity_problems

    def recording(conn: sqlite3.Connection, limit: int = 20, check: str = "integrity") -> Any:
        checks.append(check)
        return real(conn, limit, check)  # type: ignore[arg-type]

    monkeypatch.setattr(backup_copy, "integrity_problems", recording)
    store = make_store()
    fill(store, make_job, 20)
    path = store.backup_jobs(now=now, check="quick")
    assert checks == ["quick"]
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 20
    conn.close()


def test_quick_check_still_finds_a_damaged_page(tmp_path: Path) -> None:
    """PRAGMA quick_check, like integrity_check, reports a table page whose layout is broken."""
    path = tmp_path / "d.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(200)])
    conn.commit()
    conn.close()
    data = bytearray(path.read_bytes())
    data[4096 * 3 + 1 : 4096 * 3 + 3] = b"\x0f\xf0"  # page 4's first-freeblock pointer
    path.write_bytes(bytes(data))
    conn = sqlite3.connect(path)
    try:
        assert integrity_problems(conn, check="quick") != []
        assert integrity_problems(conn, check="integrity") != []
    finally:
        conn.close()


def test_two_backups_in_one_second_do_not_collide(make_store: Any) -> None:
    """A second backup within the same second gets -2 instead of replacing the first."""
    store = make_store()
    first = store.backup_jobs(now=NAMED_AT)
    second = store.backup_jobs(now=NAMED_AT)
    third = store.backup_jobs(now=NAMED_AT)
    assert [first.name, second.name, third.name] == [
        "jobs.db.backup.20261122-120000",
        "jobs.db.backup.20261122-120000-2",
        "jobs.db.backup.20261122-120000-3",
    ]
    assert all(path.exists() for path in (first, second, third))


def test_backup_to_another_directory_creates_it_owner_only(
    make_store: Any, tmp_path: Path, now: datetime
) -> None:
    """backup_jobs(directory) writes there, creating the directory 0700."""
    store = make_store()
    target = tmp_path / "offsite" / "backups"
    path = store.backup_jobs(target, now=now)
    assert path.parent == target
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_aborted_backup_leaves_nothing(make_store: Any, make_job: Any, now: datetime) -> None:
    """A backup stopped midway raises BackupAborted and leaves no file, final or temporary."""
    store = make_store()
    fill(store, make_job, 300, payload=20_000)  # several backup steps
    before = files_in(store.path.parent)
    with pytest.raises(BackupAborted):
        store.backup_jobs(now=now, should_stop=lambda: True)
    assert files_in(store.path.parent) == before


def test_stale_partial_files_of_dead_processes_are_removed(make_store: Any, now: datetime) -> None:
    """A .partial left by a dead backup process and idle for 10 minutes is removed; fresh ones stay."""
    store = make_store()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = dead.stdout.strip()
    directory = store.path.parent
    stale = directory / f".jobs.db.backup.20261121-000000.{dead_pid}-ab12cd34.partial"
    fresh = directory / f".jobs.db.backup.20261121-000001.{dead_pid}-ef56ab78.partial"
    alive = directory / f".jobs.db.backup.20261121-000002.{os.getpid()}-0badc0de.partial"
    for path in (stale, fresh, alive):
        path.write_bytes(b"half a backup")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    os.utime(alive, (an_hour_ago, an_hour_ago))
    store.backup_jobs(now=now)
    assert not stale.exists()
    assert fresh.exists()  # maybe another container's backup in progress
    assert alive.exists()  # its writer still runs


def test_backup_is_consistent_while_another_process_writes(
    make_store: Any, make_job: Any, tmp_path: Path, now: datetime
) -> None:
    """A backup taken while another process inserts passes integrity_check and holds a prefix of the inserts."""
    store = make_store()
    fill(store, make_job, 500, payload=4000)
    script = tmp_path / "writer.py"
    script.write_text(
        textwrap.dedent(
            """
            import sqlite3, sys
            conn = sqlite3.connect(sys.argv[1], timeout=5, isolation_level=None)
            print("ready", flush=True)
            for i in range(3000):
                conn.execute("INSERT INTO jobs (id, status, playbook, context, created_at) VALUES (?, 'pending', '{}', '{}', '2026-11-22 00:00:00.000')", (f"w{i:05d}",))
            """
        )
    )
    command = [sys.executable, str(script), str(store.path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        backups = [store.backup_jobs(now=now + timedelta(seconds=index)) for index in range(3)]
        assert writer.wait(timeout=60) == 0
    for path in backups:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = [row[0] for row in conn.execute("SELECT id FROM jobs WHERE id LIKE 'w%' ORDER BY id")]
        conn.close()
        assert ids == [f"w{index:05d}" for index in range(len(ids))]  # a prefix: no gaps


def test_backup_on_a_full_disk_fails_cleanly_then_succeeds(
    make_store: Any, make_job: Any, tmp_path: Path, small_tmpfs: Any, now: datetime
) -> None:
    """ENOSPC gives StoreFullError, no final name, no temporary file; once space is freed it works."""
    store = make_store()
    fill(store, make_job, 200, payload=5000)  # a database of about 1 MB
    target = small_tmpfs(tmp_path / "small", "4m")
    ballast = target / "ballast"
    ballast.write_bytes(b"\0" * (4 * 1024 * 1024 - 256 * 1024))  # leave 256 KiB free
    with pytest.raises(StoreFullError, match="full"):
        store.backup_jobs(target, now=now)
    assert files_in(target) == ["ballast"]
    assert store.integrity_check() == []
    ballast.unlink()
    path = store.backup_jobs(target, now=now)
    assert [backup.path for backup in list_backups(target, "jobs.db")] == [path]
    assert files_in(target) == [path.name]


def test_write_on_a_full_disk_raises_store_full_and_keeps_data(
    make_job: Any, tmp_path: Path, small_tmpfs: Any
) -> None:
    """A save that hits ENOSPC raises StoreFullError; committed jobs stay intact and readable."""
    directory = small_tmpfs(tmp_path / "tiny", "1m")
    store = JobStore(directory / "jobs.db")
    try:
        saved = 0

        def save_until_full() -> None:
            nonlocal saved
            for _ in range(10_000):
                store.save_job(make_job(context={"blob": "y" * 8000}))
                saved += 1

        with pytest.raises(StoreFullError, match="full"):
            save_until_full()
        assert saved > 0
        assert store.get_stats().total == saved
        assert store.integrity_check() == []
    finally:
        store.close()
    with JobStore(directory / "jobs.db") as reopened:
        assert reopened.get_stats().total == saved


def test_restore_swaps_in_the_backup_and_keeps_the_old_file(make_store: Any, make_job: Any) -> None:
    """restore_backup replaces the database atomically and keeps the previous one as pre-restore."""
    store = make_store()
    fill(store, make_job, 5)
    backup = store.backup_jobs(now=NAMED_AT)
    fill(store, make_job, 7)
    store.close()
    result = restore_backup(backup, store.path, NAMED_AT)
    assert result.previous is not None
    assert result.previous.name == "jobs.db.pre-restore-20261122-120000"
    with JobStore(store.path) as restored:
        assert restored.get_stats().total == 5
    with JobStore(result.previous) as previous:
        assert previous.get_stats().total == 12


def test_restore_of_a_corrupt_backup_touches_nothing(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """A backup that fails verification is refused before the live database is touched."""
    store = make_store()
    fill(store, make_job, 3)
    store.close()
    before = files_in(store.path.parent)
    bad = store.path.parent / "jobs.db.backup.20261101-000000"
    bad.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(StoreCorruptError):
        restore_backup(bad, store.path, now)
    assert files_in(store.path.parent) == sorted([*before, bad.name])
    with JobStore(store.path) as intact:
        assert intact.get_stats().total == 3


def test_restore_refuses_a_source_whose_wal_holds_jobs(
    make_store: Any, make_job: Any, now: datetime, tmp_path: Path
) -> None:
    """A copied live database whose jobs sit in its -wal is refused, not restored without them."""
    store = make_store()
    fill(store, make_job, 3)
    store.close()
    live = tmp_path / "live.db"
    with JobStore(live) as source:
        source.close()
    writer = sqlite3.connect(live)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute(
        "INSERT INTO jobs (id, status, playbook, context, created_at)"
        " VALUES ('only-in-wal', 'pending', '{}', '{}', '2026-01-01')"
    )
    writer.commit()
    copy = tmp_path / "copy.db"
    copy.write_bytes(live.read_bytes())
    (tmp_path / "copy.db-wal").write_bytes((tmp_path / "live.db-wal").read_bytes())
    writer.close()
    before = files_in(store.path.parent)
    with pytest.raises(BackupError, match="write-ahead log"):
        restore_backup(copy, store.path, now)
    assert files_in(store.path.parent) == before
    with JobStore(store.path) as intact:
        assert intact.get_stats().total == 3


def test_stop_during_the_integrity_check_aborts_it(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """A stop requested after the copy, while the copy is being verified, aborts and leaves nothing."""
    store = make_store()
    fill(store, make_job, 400, payload=5000)
    before = files_in(store.path.parent)
    calls: list[bool] = []

    def copy_finished() -> bool:
        # Byte 18 of the header turns from 2 (WAL) to 1 once the finished copy is
        # switched to rollback-journal mode, just before its integrity check.
        partials = list(store.path.parent.glob(".jobs.db.backup.*.partial"))
        done = bool(partials) and partials[0].read_bytes()[18:19] == b"\x01"
        calls.append(done)
        return done

    with pytest.raises(BackupAborted):
        store.backup_jobs(now=now, should_stop=copy_finished)
    assert calls[-1] is True, calls
    assert False in calls, calls  # it copied first, then stopped
    assert files_in(store.path.parent) == before


def test_restore_without_a_database_discards_a_leftover_wal(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """With jobs.db deleted but its WAL left behind, restore must not replay that WAL onto the backup."""
    store = make_store()
    fill(store, make_job, 1)
    backup = store.backup_jobs(now=now)
    script = (
        "import sqlite3, os, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA wal_autocheckpoint = 0')\n"
        "for i in range(300):\n"
        "    c.execute(\"INSERT INTO jobs (id, status, playbook, context, created_at) VALUES (?, 'pending', '{}', ?, '2026-11-01 00:00:00.000')\", (f'x{i}', 'y' * 2000))\n"
        "os._exit(0)\n"
    )
    store.close()
    subprocess.run([sys.executable, "-c", script, str(store.path)], check=True)
    assert store.path.with_name("jobs.db-wal").stat().st_size > 100_000
    store.path.unlink()  # the operator removed the damaged file, not its WAL
    restore_backup(backup, store.path, now)
    assert not store.path.with_name("jobs.db-wal").exists()
    with JobStore(store.path) as restored:
        assert restored.integrity_check() == []
        assert restored.get_stats().total == 1


def test_two_restores_in_one_second_keep_both_previous_files(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """The second restore within the same second keeps its previous database as ...-2, overwriting nothing."""
    store = make_store()
    fill(store, make_job, 2)
    backup = store.backup_jobs(now=now)
    fill(store, make_job, 3)
    store.close()
    first = restore_backup(backup, store.path, now)
    with JobStore(store.path) as live:
        live.save_job(make_job(id="only-in-live-db"))
    second = restore_backup(backup, store.path, now)
    assert first.previous is not None
    assert second.previous is not None
    assert second.previous.name == first.previous.name + "-2"
    with JobStore(first.previous) as kept_first, JobStore(second.previous) as kept_second:
        assert kept_first.get_stats().total == 5
        assert kept_second.load_job("only-in-live-db") is not None
