"""Backups of a PostgreSQL store (SPEC §11): pg_dump archives verified in a scratch database."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import require, wait_until
from pg_server import SERVER, admin_connection, schema_url, scratch_schema

from secautod import JobStatus, JobStore
from secautod.backup import list_backups, prune_backups
from secautod.errors import BackupAborted, BackupError
from secautod.store.postgres.dump import SCRATCH_PREFIX, Server, verify_dump

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WAITING_DUMPS = """
SELECT pid FROM pg_stat_activity
WHERE application_name = 'secautod' AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%'"""


@pytest.fixture
def store_url() -> Iterator[str]:
    """A PostgreSQL URL working in a fresh schema, dropped after the test."""
    require(shutil.which("pg_dump") and shutil.which("pg_restore"), "no pg_dump/pg_restore")
    with scratch_schema() as url:
        assert url is not None
        yield url


def scratch_databases() -> set[str]:
    with admin_connection() as admin:
        rows = admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (SCRATCH_PREFIX + "%",)
        ).fetchall()
    return {str(name) for (name,) in rows}


def fill(store: JobStore, make_job: Any) -> dict[str, int]:
    statuses = [JobStatus.PENDING] * 3 + [JobStatus.COMPLETED] * 2 + [JobStatus.FAILED]
    for status in statuses:
        store.save_job(make_job(status=status))
    return {status.value: statuses.count(status) for status in set(statuses)}


def leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_a_backup_is_a_verified_dump_named_and_rotated_like_on_sqlite(
    tmp_path: Path, store_url: str, make_job: Any
) -> None:
    """Backups are pg_dump archives under `<db>.backup.STAMP`, hold the jobs per status, leave no scratch database, and rotate by backup_keep."""
    before = scratch_databases()
    with JobStore(store_url, backup_directory=tmp_path) as store:
        counts = fill(store, make_job)
        paths = [store.backup_jobs(tmp_path, now=NOW + timedelta(hours=hour)) for hour in range(3)]
        assert store.path.name == "test"
        assert [path.name for path in paths] == [
            f"test.backup.{(NOW + timedelta(hours=hour)):%Y%m%d-%H%M%S}" for hour in range(3)
        ]
        assert leftovers(tmp_path) == sorted(path.name for path in paths)  # no partial left
        assert all(path.stat().st_mode & 0o077 == 0 for path in paths)
        summary = verify_dump(Server(store_url, None), paths[-1])
        assert summary.counts == counts
        removed = prune_backups(tmp_path, store.path.name, 2, now=NOW + timedelta(hours=3))
    assert removed == [paths[0]]
    assert [backup.path for backup in list_backups(tmp_path, "test")] == paths[:0:-1]
    assert scratch_databases() == before
    listing = subprocess.run(
        ["pg_restore", "--list", str(paths[-1])], check=True, capture_output=True, text=True
    ).stdout
    assert " TABLE " in listing
    assert " jobs " in listing
    assert " engine_sessions " in listing


def test_a_dump_that_does_not_restore_fails_verification_and_leaves_no_file(
    tmp_path: Path, store_url: str, make_job: Any
) -> None:
    """A jobs table that depends on a type outside secautod's tables dumps, fails to restore, and leaves neither file nor scratch database."""
    schema = store_url.rsplit("%3D", 1)[1]
    outside = f"secautod_outside_{secrets.token_hex(4)}"
    before = scratch_databases()
    with admin_connection() as admin:
        admin.execute(f"CREATE SCHEMA {outside}")
        try:
            admin.execute(f"CREATE DOMAIN {outside}.label AS text")
            with JobStore(store_url, backup_directory=tmp_path) as store:
                fill(store, make_job)
                admin.execute(f"ALTER TABLE {schema}.jobs ADD COLUMN label {outside}.label")
                with pytest.raises(BackupError, match="pg_restore failed") as raised:
                    store.backup_jobs(tmp_path, now=NOW)
        finally:
            admin.execute(f"DROP SCHEMA {outside} CASCADE")
    assert "label" in str(raised.value)
    assert leftovers(tmp_path) == []
    assert scratch_databases() == before


def test_without_createdb_verification_fails_clearly_and_keeps_nothing(
    tmp_path: Path, make_job: Any
) -> None:
    """A role without CREATEDB gets a BackupError naming the missing privilege, and no backup file."""
    require(shutil.which("pg_dump") and shutil.which("pg_restore"), "no pg_dump/pg_restore")
    role = f"secautod_nocreatedb_{secrets.token_hex(4)}"
    with admin_connection() as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN NOCREATEDB")
        admin.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
        try:
            url = schema_url(role, SERVER.replace("//postgres@", f"//{role}@"))
            with JobStore(url, backup_directory=tmp_path) as store:
                fill(store, make_job)
                with pytest.raises(BackupError) as raised:
                    store.backup_jobs(tmp_path, now=NOW)
        finally:
            admin.execute(f"DROP SCHEMA {role} CASCADE")
            admin.execute(f"DROP ROLE {role}")
    message = str(raised.value)
    assert "lacks the CREATEDB privilege" in message, message
    assert role in message
    assert leftovers(tmp_path) == []


def test_a_stop_request_aborts_the_backup_and_keeps_nothing(
    tmp_path: Path, store_url: str, make_job: Any
) -> None:
    """should_stop aborts a backup in progress (BackupAborted), leaving no file and no scratch database."""
    before = scratch_databases()
    with JobStore(store_url, backup_directory=tmp_path) as store:
        fill(store, make_job)
        with pytest.raises(BackupAborted):
            store.backup_jobs(tmp_path, now=NOW, should_stop=lambda: True)
    assert leftovers(tmp_path) == []
    assert scratch_databases() == before


def test_a_stop_request_kills_a_waiting_pg_dump(
    tmp_path: Path, store_url: str, make_job: Any
) -> None:
    """A pg_dump blocked on a table lock is killed when a stop is requested: BackupAborted, no file, no dump session left."""
    schema = store_url.rsplit("%3D", 1)[1]
    with JobStore(store_url, backup_directory=tmp_path) as store, admin_connection() as admin:
        fill(store, make_job)
        locker = psycopg.connect(SERVER, autocommit=False)
        try:
            locker.execute(f"LOCK TABLE {schema}.engine_sessions IN ACCESS EXCLUSIVE MODE")

            def dump_waiting() -> bool:
                return bool(admin.execute(WAITING_DUMPS).fetchone())

            with pytest.raises(BackupAborted):
                store.backup_jobs(tmp_path, now=NOW, should_stop=dump_waiting)
        finally:
            locker.rollback()
            locker.close()
        wait_until(lambda: not dump_waiting(), what="the killed pg_dump's session to end")
    assert leftovers(tmp_path) == []


def test_the_password_reaches_the_tools_by_environment_never_the_command_line() -> None:
    """The libpq conninfo handed to pg_dump carries no password; PGPASSWORD in the child's environment does."""
    server = Server("postgresql://secautod:s3cret-pw@db.example.org:5432/jobs", None)
    assert "s3cret-pw" not in server.conninfo()
    assert "s3cret-pw" not in server.shown
    assert server.environment()["PGPASSWORD"] == "s3cret-pw"
    from_env = Server("postgresql://secautod@db.example.org/jobs", "other-pw")
    assert "other-pw" not in from_env.conninfo("scratch")
    assert "dbname=scratch" in from_env.conninfo("scratch")
    assert from_env.environment()["PGPASSWORD"] == "other-pw"
