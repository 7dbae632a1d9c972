"""The database file: pragmas, permissions, migrations, damage, foreign writers."""

from __future__ import annotations

import sqlite3
import stat
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from secautod import JobStatus, JobStore
from secautod.errors import (
    EX_IOERR,
    SchemaVersionError,
    StoreCorruptError,
    StoreError,
    UnreadableJobError,
)
from secautod.recovery import recover, unclaimed_now
from secautod.store.sqlite.connection import connect
from secautod.store.sqlite.schema import LATEST_SCHEMA_VERSION, MIGRATIONS, migrate

BARE_TABLE = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    playbook TEXT NOT NULL,
    context TEXT NOT NULL,
    results TEXT,
    error TEXT,
    created_at DATETIME NOT NULL,
    started_at DATETIME,
    completed_at DATETIME,
    updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
"""


def written_by_another_client(tmp_path: Path, sql: str, params: Any = ()) -> Path:
    """Create a store, then run one statement on it with plain sqlite3 (another writer)."""
    path = tmp_path / "jobs.db"
    JobStore(path).close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(sql, params)
    return path


def pragma(conn: sqlite3.Connection, name: str) -> Any:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


@pytest.mark.parametrize(("level", "value"), [("FULL", 2), ("NORMAL", 1)])
def test_every_connection_sets_the_pragmas(tmp_path: Path, level: str, value: int) -> None:
    """connect() sets WAL, a busy timeout, the synchronous level, foreign keys and secure delete."""
    store = JobStore(tmp_path / "jobs.db", synchronous=level, busy_timeout=2.5)  # type: ignore[arg-type]
    store.close()
    conn = connect(tmp_path / "jobs.db", synchronous=level, busy_timeout=2.5)  # type: ignore[arg-type]
    try:
        assert pragma(conn, "journal_mode") == "wal"
        assert pragma(conn, "busy_timeout") == 2500
        assert pragma(conn, "synchronous") == value
        assert pragma(conn, "foreign_keys") == 1
        assert pragma(conn, "secure_delete") == 1
    finally:
        conn.close()


def test_store_connections_in_threads_use_the_pragmas(make_store: Any) -> None:
    """The store's own per-thread connections carry the same settings."""
    import threading

    store = make_store(synchronous="NORMAL", busy_timeout=1.0)
    seen: dict[str, Any] = {}

    def inspect() -> None:
        conn = store._pool.connection()
        seen.update(
            journal=pragma(conn, "journal_mode"),
            sync=pragma(conn, "synchronous"),
            busy=pragma(conn, "busy_timeout"),
            secure_delete=pragma(conn, "secure_delete"),
        )

    thread = threading.Thread(target=inspect)
    thread.start()
    thread.join()
    assert seen == {"journal": "wal", "sync": 1, "busy": 1000, "secure_delete": 1}


def test_files_are_owner_only(tmp_path: Path, make_job: Any) -> None:
    """The data directory is created 0700; the database and its WAL are 0600."""
    directory = tmp_path / "fresh" / "data"
    with JobStore(directory / "jobs.db") as store:
        store.save_job(make_job())
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert stat.S_IMODE((directory / "jobs.db").stat().st_mode) == 0o600
        assert stat.S_IMODE((directory / "jobs.db-wal").stat().st_mode) == 0o600


def test_schema_has_the_shared_table_and_named_indexes(make_store: Any) -> None:
    """The jobs table and its three contract indexes exist exactly as SPEC §1 names them."""
    store = make_store()
    conn = sqlite3.connect(store.path)
    columns = [(row[1], row[2], row[3]) for row in conn.execute("PRAGMA table_info(jobs)")]
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert columns == [
        ("id", "TEXT", 0),
        ("status", "TEXT", 1),
        ("playbook", "TEXT", 1),
        ("context", "TEXT", 1),
        ("results", "TEXT", 0),
        ("error", "TEXT", 0),
        ("created_at", "DATETIME", 1),
        ("started_at", "DATETIME", 0),
        ("completed_at", "DATETIME", 0),
        ("updated_at", "DATETIME", 0),
    ]
    assert {"idx_jobs_status", "idx_jobs_created_at", "idx_jobs_updated_at"} <= indexes


def test_bare_table_from_another_client_is_upgraded_keeping_rows(tmp_path: Path) -> None:
    """A file with only the engine's bare jobs table (and rows) opens, migrates, keeps every row."""
    path = tmp_path / "engine.db"
    conn = sqlite3.connect(path)
    conn.executescript(BARE_TABLE)
    rows = [
        (
            f"e{index}",
            "completed",
            '{"p":1}',
            '{"c":2}',
            None,
            None,
            f"2026-01-{index + 1:02d} 00:00:00",
        )
        for index in range(25)
    ]
    conn.executemany(
        "INSERT INTO jobs (id, status, playbook, context, results, error, created_at) VALUES (?,?,?,?,?,?,?)",
        rows,
    )
    conn.commit()
    conn.close()
    with JobStore(path) as store:
        assert store.schema_version == LATEST_SCHEMA_VERSION
        jobs = store.list_jobs()
    assert len(jobs) == 25
    assert jobs[0].id == "e24"
    assert jobs[0].playbook == {"p": 1}


@pytest.mark.parametrize("version", range(1, LATEST_SCHEMA_VERSION))
def test_files_of_every_earlier_version_upgrade(
    tmp_path: Path, version: int, make_job: Any
) -> None:
    """A file left at any earlier schema version is migrated to the latest on open."""
    path = tmp_path / "old.db"
    path.touch()
    conn = connect(path)
    migrate(conn, path, datetime.now(UTC), target=version)
    conn.execute(
        "INSERT INTO jobs (id, status, playbook, context, created_at) VALUES ('old', 'pending', '{}', '{}', '2026-01-01 00:00:00.000')"
    )
    conn.close()
    with JobStore(path) as store:
        assert store.schema_version == LATEST_SCHEMA_VERSION
        assert store.get_job("old").status is JobStatus.PENDING
        store.state.record_task_success("cleanup", datetime.now(UTC), {"deleted": 0})
    recorded = sqlite3.connect(path).execute("SELECT version FROM schema_migrations").fetchall()
    assert [row[0] for row in recorded] == [migration.version for migration in MIGRATIONS]


def test_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    """A file migrated past what this secautod knows is refused, naming both versions."""
    path = tmp_path / "future.db"
    JobStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO schema_migrations VALUES (?, 'from the future', '2030-01-01')",
        (LATEST_SCHEMA_VERSION + 1,),
    )
    conn.commit()
    conn.close()
    with pytest.raises(
        SchemaVersionError, match=f"schema version {LATEST_SCHEMA_VERSION + 1}"
    ) as caught:
        JobStore(path)
    assert "upgrade secautod" in str(caught.value)
    assert caught.value.exit_status == EX_IOERR


def test_not_a_database_is_refused_as_corrupt(tmp_path: Path) -> None:
    """A file that is not SQLite gives StoreCorruptError (exit 74), never a traceback."""
    path = tmp_path / "jobs.db"
    path.write_bytes(b"this is not a database, just text " * 200)
    with pytest.raises(StoreCorruptError, match="damaged or not a database") as caught:
        JobStore(path)
    assert caught.value.exit_status == EX_IOERR


def test_table_missing_contract_columns_is_refused(tmp_path: Path) -> None:
    """A jobs table without the contract's columns is named and refused."""
    path = tmp_path / "odd.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at DATETIME NOT NULL)"
    )
    conn.close()
    with pytest.raises(StoreCorruptError, match="lacks the column"):
        JobStore(path)


def test_missing_file_without_create_is_an_error(tmp_path: Path) -> None:
    """create=False refuses to invent an empty store where none exists."""
    with pytest.raises(StoreError, match="no job store at"):
        JobStore(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-21T10:00:00Z", datetime(2026, 1, 21, 10, 0, tzinfo=UTC)),
        (
            "2026-01-21 10:00:00.123456789-07:00",
            datetime(2026, 1, 21, 17, 0, 0, 123456, tzinfo=UTC),
        ),
        ("2026-01-21 10:00:00", datetime(2026, 1, 21, 10, 0, tzinfo=UTC)),
        ("2026-01-21T10:00", datetime(2026, 1, 21, 10, 0, tzinfo=UTC)),
        (2461061.9166666665, datetime(2026, 1, 21, 10, 0, tzinfo=UTC)),
        ("2461061.9166666665", datetime(2026, 1, 21, 10, 0, tzinfo=UTC)),
    ],
)
def test_foreign_timestamp_forms_read_as_aware_utc(
    tmp_path: Path, text: object, expected: datetime
) -> None:
    """Rows written by plain sqlite3 in other writers' forms read back as the right UTC instant."""
    path = written_by_another_client(
        tmp_path,
        "INSERT INTO jobs (id, status, playbook, context, created_at, started_at) VALUES ('f', 'running', '{}', '{}', ?, ?)",
        (text, text),
    )
    with JobStore(path) as store:
        job = store.get_job("f")
    assert abs(job.created_at - expected) < timedelta(milliseconds=1)
    assert job.started_at is not None
    assert abs(job.started_at - expected) < timedelta(milliseconds=1)
    assert job.created_at.tzinfo is UTC


def test_go_zero_time_reads_as_unset(tmp_path: Path) -> None:
    """Go's zero time in an optional column means 'not set' and reads as None."""
    path = written_by_another_client(
        tmp_path,
        "INSERT INTO jobs (id, status, playbook, context, created_at, started_at) VALUES ('z', 'pending', '{}', '{}', '2026-01-01T00:00:00Z', '0001-01-01T00:00:00Z')",
    )
    with JobStore(path) as store:
        assert store.get_job("z").started_at is None


def test_listing_orders_and_filters_mixed_forms_by_instant(tmp_path: Path) -> None:
    """Newest-first order and since/until compare instants, not text, across timestamp forms."""
    path = tmp_path / "jobs.db"
    JobStore(path).close()
    conn = sqlite3.connect(path)
    rows = [
        ("ours", "2026-01-21 10:00:00.000"),  # 10:00 UTC
        ("rfc3339", "2026-01-21T10:30:00Z"),  # 10:30 UTC (sorts after 'ours' as text: 'T' > ' ')
        ("go", "2026-01-21 04:00:00.5-07:00"),  # 11:00:00.5 UTC
        ("plus", "2026-01-21T11:45:00+02:00"),  # 09:45 UTC
    ]
    conn.executemany(
        "INSERT INTO jobs (id, status, playbook, context, created_at) VALUES (?, 'pending', '{}', '{}', ?)",
        rows,
    )
    conn.commit()
    conn.close()
    with JobStore(path) as store:
        assert [job.id for job in store.list_jobs()] == ["go", "rfc3339", "ours", "plus"]
        window = store.list_jobs(
            since=datetime(2026, 1, 21, 10, 0, tzinfo=UTC),
            until=datetime(2026, 1, 21, 11, 0, tzinfo=UTC),
        )
        assert [job.id for job in window] == ["rfc3339", "ours"]


def test_unreadable_foreign_values_are_named(tmp_path: Path) -> None:
    """Garbage a foreign writer left in a row gives an error naming the job and column."""
    path = tmp_path / "jobs.db"
    JobStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO jobs (id, status, playbook, context, created_at) VALUES ('g', 'pending', 'not json', '{}', '2026-01-01')"
    )
    conn.execute(
        "INSERT INTO jobs (id, status, playbook, context, created_at) VALUES ('t', 'pending', '{}', '{}', 'soon')"
    )
    conn.commit()
    conn.close()
    with JobStore(path) as store:
        with pytest.raises(UnreadableJobError, match="job g: playbook is not valid JSON"):
            store.get_job("g")
        with pytest.raises(UnreadableJobError, match="job t: created_at holds 'soon'"):
            store.get_job("t")


def test_json_and_error_bound_as_blobs_read_as_text(tmp_path: Path) -> None:
    """A Go writer binding json.Marshal's []byte stores BLOBs: they read as the JSON they hold."""
    path = written_by_another_client(
        tmp_path,
        "INSERT INTO jobs (id, status, playbook, context, results, error, created_at)"
        " VALUES ('b', 'failed', ?, ?, ?, ?, '2026-01-01')",
        (b'{"name":"triage"}', b'{"host":"h1"}', b"[1,2]", b"step 2 failed"),
    )
    with JobStore(path) as store:
        (listed,) = store.list_jobs()
        job = store.get_job("b")
    assert job == listed
    assert (job.playbook, job.context, job.results) == ({"name": "triage"}, {"host": "h1"}, [1, 2])
    assert job.error == "step 2 failed"


@pytest.mark.parametrize("value", [0, "9999-12-31T23:00:00-05:00"])
def test_timestamps_outside_pythons_years_are_named(tmp_path: Path, value: object) -> None:
    """Julian day 0 (4713 BC) or a time past year 9999 in UTC is an UnreadableJobError, not a crash."""
    path = written_by_another_client(
        tmp_path,
        "INSERT INTO jobs (id, status, playbook, context, created_at) VALUES ('y', 'pending', '{}', '{}', ?)",
        (value,),
    )
    with (
        JobStore(path) as store,
        pytest.raises(UnreadableJobError, match="job y: created_at holds"),
    ):
        store.get_job("y")


def test_opening_a_current_store_needs_no_write_lock(tmp_path: Path) -> None:
    """Read commands open the store while another process holds the write lock (no migration to do)."""
    path = tmp_path / "jobs.db"
    JobStore(path).close()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with JobStore(path, busy_timeout=0.2, create=False) as store:
            assert store.list_jobs() == []
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_rows_other_programs_broke_are_unreadable_not_corrupt(tmp_path: Path) -> None:
    """An empty id or bad JSON in a row is UnreadableJobError (74) and suggests no restore."""
    path = written_by_another_client(
        tmp_path,
        "INSERT INTO jobs (id, status, playbook, context, created_at) VALUES ('', 'pending', '{}', '{}', '2026-01-01')",
    )
    with (
        JobStore(path) as store,
        pytest.raises(UnreadableJobError, match="not usable") as caught,
    ):
        store.list_jobs()
    assert caught.value.exit_status == EX_IOERR
    assert not isinstance(caught.value, StoreCorruptError)


def test_recovery_handles_rows_it_cannot_read(tmp_path: Path) -> None:
    """Running rows with broken JSON, an odd time or an empty id are recovered and notified all the same."""
    import json

    path = tmp_path / "jobs.db"
    JobStore(path).close()
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO jobs (id, status, playbook, context, created_at) VALUES (?, 'running', ?, '{}', ?)",
        [("bad", "not json", "2026-01-01T10:00:00+02:00"), ("", "{}", "garbage")],
    )
    conn.commit()
    conn.close()
    with JobStore(path) as store:
        now = datetime.now(UTC)
        recovered = recover(store, unclaimed_now(now), now, ["http://h.invalid/"], boot_id="boot-x")
        assert sorted(job.id for job in recovered) == [
            "",
            "bad",
        ]
        now = datetime.now(UTC)  # after recovery, so the notifications are simply due
        notifications = store.state.due_notifications("http://h.invalid/", now, 10, now)
    bodies = {json.loads(n.body)["job"]["id"]: json.loads(n.body) for n in notifications}
    assert bodies["bad"]["job"]["created_at"] == "2026-01-01T08:00:00.000Z"
    assert bodies["bad"]["job"]["status"] == "failed"
    assert bodies[""]["job"]["created_at"] == "garbage"  # passed on as stored
    assert bodies["bad"]["boot_id"] == "boot-x"
    assert bodies["bad"]["id"] != bodies[""]["id"]


def test_go_zero_completion_time_does_not_expire_a_new_job(tmp_path: Path) -> None:
    """A completed_at of Go's zero time means 'unset': the job ages by its creation time."""
    path = tmp_path / "jobs.db"
    JobStore(path).close()
    now = datetime.now(UTC)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO jobs (id, status, playbook, context, created_at, completed_at) VALUES ('z', 'completed', '{}', '{}', ?, '0001-01-01T00:00:00Z')",
        (now.strftime("%Y-%m-%dT%H:%M:%SZ"),),
    )
    conn.commit()
    conn.close()
    with JobStore(path) as store:
        assert store.cleanup_old_jobs(timedelta(days=30), now=now) == 0
        assert store.cleanup_old_jobs(timedelta(days=30), now=now + timedelta(days=31)) == 1


def test_a_forked_child_gets_its_own_connections(tmp_path: Path, make_job: Any) -> None:
    """After fork() the child opens fresh connections; the parent's keep working and the file stays sound."""
    import os

    store = JobStore(tmp_path / "jobs.db")
    store.save_job(make_job(id="parent-before"))
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            store.save_job(make_job(id="child"))
            status = 0 if store.load_job("parent-before") is not None else 2
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    store.save_job(make_job(id="parent-after"))
    assert {job.id for job in store.list_jobs()} == {"parent-before", "child", "parent-after"}
    assert store.integrity_check() == []
    store.close()


def test_recovery_notification_body_names_the_job_and_its_times(
    make_store: Any, make_job: Any
) -> None:
    """A job_recovered body carries the notification id, boot, time and the job's id, status, error and times."""
    import json

    store = make_store()
    created = datetime(2026, 1, 21, 10, 0, tzinfo=UTC)
    store.save_job(make_job(id='quo"te', status="running", created_at=created))
    now = datetime(2026, 2, 1, 12, 30, 0, 250000, tzinfo=UTC)
    recover(store, unclaimed_now(now), now, ["http://h.invalid/"], boot_id="boot-7")
    (notification,) = store.state.due_notifications("http://h.invalid/", now, 10, now)
    body = json.loads(notification.body)
    job = store.get_job('quo"te')
    assert list(body) == ["id", "event", "reason", "session", "boot_id", "timestamp", "job"]
    assert (body["reason"], body["session"]) == ("engine_stopped", None)
    assert len(body["id"]) == 32
    assert body["event"] == "job_recovered"
    assert (body["boot_id"], body["timestamp"]) == ("boot-7", "2026-02-01T12:30:00.250Z")
    assert body["job"] == {
        "id": 'quo"te',
        "rowid": 1,
        "status": "failed",
        "error": job.error,
        "created_at": "2026-01-21T10:00:00.000Z",
        "started_at": job.to_dict()["started_at"],
        "completed_at": "2026-02-01T12:30:00.250Z",
        "updated_at": "2026-02-01T12:30:00.250Z",
    }


def test_recovery_leaves_its_checkpoint_to_the_caller(
    make_store: Any, make_job: Any, tmp_path: Path
) -> None:
    """Recovery's rows stay in the WAL until checkpoint(); later commits checkpoint by themselves again."""
    import shutil

    def file_alone() -> sqlite3.Connection:  # the database file without its WAL
        copy = tmp_path / "alone.db"
        shutil.copyfile(store.path, copy)
        return sqlite3.connect(copy)

    store = make_store()
    for index in range(50):
        store.save_job(make_job(id=f"r{index}", status="running"))
    store.checkpoint()
    recover(store, unclaimed_now(datetime.now(UTC)), datetime.now(UTC), [])
    with closing(file_alone()) as alone:
        assert alone.execute("SELECT count(*) FROM jobs WHERE status = 'running'").fetchone() == (
            50,
        )
    assert store.checkpoint() == 0
    with closing(file_alone()) as alone:
        assert alone.execute("SELECT count(*) FROM jobs WHERE status = 'failed'").fetchone() == (
            50,
        )
    for index in range(1100):  # more than 1,000 WAL pages, one commit each
        store.save_job(make_job(id=f"n{index}", playbook={"pad": "x" * 3000}))
    with closing(file_alone()) as alone:
        (folded,) = alone.execute("SELECT count(*) FROM jobs WHERE id LIKE 'n%'").fetchone()
    assert folded >= 900


def test_connections_of_finished_threads_are_closed(make_store: Any, make_job: Any) -> None:
    """Short-lived threads do not leave their connections open for ever."""
    store = make_store()
    for _ in range(20):
        thread = threading.Thread(target=lambda: store.save_job(make_job()))
        thread.start()
        thread.join()
    store.get_stats()  # opens this thread's connection, closing the orphans
    assert len(store._pool._connections) <= 2


def test_store_size_is_the_file_and_its_wal(tmp_path: Path, make_job: Any) -> None:
    """On SQLite the store's size is the database file's and its WAL's, as on disk."""
    database = tmp_path / "data" / "jobs.db"
    with JobStore(database) as store:
        store.save_job(make_job(id="j1", context={"blob": "x" * 100_000}))
        size = store.store_size()
        wal = database.with_name("jobs.db-wal")
        assert (size.database_bytes, size.wal_bytes) == (
            database.stat().st_size,
            wal.stat().st_size,
        )
        assert size.wal_bytes > 100_000  # the job is still in the WAL
