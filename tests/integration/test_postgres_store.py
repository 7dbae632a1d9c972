"""What is PostgreSQL's own in a store: its size, its damage checks, fencing under READ COMMITTED."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import require, run_cli, wait_until, write_config
from pg_server import (
    admin_connection,
    database_of,
    schema_of,
    scratch_database,
    scratch_schema,
)

from secautod import JobStatus, JobStore, SessionLostError
from secautod.processes import ProcessIdentity
from secautod.store.postgres import queries

OTHER_HOST = ProcessIdentity("engine-host-2", "boot-b", "pidns-b", 4242, "12345")
PAGE_BYTES = 8192
WAITING_FOR_A_LOCK = """
SELECT 1 FROM pg_stat_activity
WHERE application_name = 'secautod' AND wait_event_type = 'Lock'"""

TABLES_SIZE = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname <> ALL(%s)"""


@pytest.fixture
def store_url() -> Iterator[str]:
    """A PostgreSQL URL working in a fresh schema, dropped after the test."""
    with scratch_schema() as url:
        assert url is not None
        yield url


def tables_bytes(schema: str, leaving_out: tuple[str, ...] = ()) -> int:
    """The tables of `schema` (but `leaving_out`) with their indexes and TOAST, as the server counts."""
    with admin_connection() as admin:
        row = admin.execute(TABLES_SIZE, (schema, list(leaving_out))).fetchone()
    assert row is not None
    return int(row[0])


def test_store_size_is_secautods_tables_alone(store_url: str, make_job: Any) -> None:
    """The size is secautod's tables, indexes and TOAST: not other tables in its schema or database, no WAL."""
    schema = schema_of(store_url)
    with JobStore(store_url) as store, scratch_schema() as other_url:
        assert other_url is not None
        store.save_job(make_job(id="big", context={"blob": secrets.token_urlsafe(200_000)}))
        with (
            admin_connection() as admin
        ):  # an engine's table beside secautod's, and another schema's
            for table in (f"{schema}.engine_notes", f"{schema_of(other_url)}.ballast"):
                admin.execute(
                    f"CREATE TABLE {table} AS SELECT repeat('x', 1000) AS note"
                    " FROM generate_series(1, 2000)"
                )
        size = store.store_size()
    assert size.database_bytes == tables_bytes(schema, leaving_out=("engine_notes",))
    assert size.database_bytes > 200_000  # the job's context, in TOAST
    assert size.wal_bytes is None  # the server's WAL is shared by every database


def test_a_write_racing_the_recovery_of_its_session_raises_and_changes_nothing(
    store_url: str, make_job: Any
) -> None:
    """An engine's write that meets secautod's recovery in progress waits, then raises SessionLostError; the failure stands."""
    with JobStore(store_url) as engine, JobStore(store_url) as supervisor:
        engine.save_job(make_job(id="raced"))
        session_id = engine.open_engine_session(OTHER_HOST, "engine", timedelta(seconds=30))
        engine.attach_session(session_id)
        engine.update_job_status("raced", JobStatus.RUNNING)
        outcome: list[object] = []

        def finish() -> None:
            try:
                engine.update_job_status("raced", JobStatus.COMPLETED)
                outcome.append("written")
            except SessionLostError as exc:
                outcome.append(exc)

        now = datetime.now(UTC)
        writer = threading.Thread(target=finish)
        recovering = psycopg.connect(store_url)  # secautod's recovery, held open half-way
        try:
            gone = {"now": now, "reason": "lease_expired", "session_id": session_id}
            assert recovering.execute(queries.DECLARE_SESSION_GONE, gone).rowcount == 1
            failed = {"now": now, "error": "recovered", "session_id": session_id}
            assert recovering.execute(queries.RECOVER_SESSION_JOBS, failed).rowcount == 1
            writer.start()
            with admin_connection() as admin:
                wait_until(
                    lambda: admin.execute(WAITING_FOR_A_LOCK).fetchone(),
                    what="the engine's write waiting for the recovery's lock",
                )
            recovering.commit()
        finally:
            recovering.close()
            writer.join(30)
        assert len(outcome) == 1
        assert isinstance(outcome[0], SessionLostError)
        assert supervisor.get_job("raced").status is JobStatus.FAILED


def filled_store(url: str, make_job: Any, jobs: int = 400) -> None:
    """Create a store at `url` holding `jobs` jobs over several pages; autovacuum leaves it alone."""
    with JobStore(url) as store:
        store.import_jobs(make_job(context={"note": "x" * 200}) for _ in range(jobs))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")


def damage_last_page(url: str, relation: str) -> int:
    """Overwrite the header of `relation`'s last page in its file, as a failing disk would; return the block."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('data_directory'), pg_relation_filepath(%s),"
            " pg_relation_size(%s)",
            (relation, relation),
        ).fetchone()
    assert row is not None
    directory, relative, size = row
    path = Path(directory) / relative
    require(os.access(path, os.W_OK), f"the server's file {path} is not writable here")
    block = int(size) // PAGE_BYTES - 1
    assert block >= 1  # the first page stays sound
    with path.open("r+b") as file:
        file.seek(block * PAGE_BYTES)
        file.write(b"\xff" * 24)  # flags, lower and upper no page may have
    return block


def test_the_full_check_reads_every_page_of_the_tables(tmp_path: Path, make_job: Any) -> None:
    """Without amcheck, a damaged last page of jobs fails integrity_check and `secautod check` (74); quick_check reads one row."""
    with scratch_database() as source:
        filled_store(source, make_job)
        with scratch_database(template=database_of(source)) as copy:  # no page of it in buffers
            block = damage_last_page(copy, "jobs")
            with JobStore(copy) as store:
                assert store.quick_check() == []
                problems = store.integrity_check()
            config = write_config(tmp_path, storage={"url": copy}, jobs={"backup_enabled": False})
            checked = run_cli("check", "--config", str(config))
            backup = tmp_path / "data" / f"{database_of(copy)}.backup.20260101-000000"
            backup.parent.mkdir(exist_ok=True)
            backup.write_bytes(b"a pg_dump archive, as far as the hint is concerned")
            hinted = run_cli("check", "--config", str(config))
    assert len(problems) == 1
    assert problems[0].startswith(f"table jobs: invalid page in block {block} of relation")
    assert checked.returncode == 74
    assert f"failed its integrity check: table jobs: invalid page in block {block}" in (
        checked.stderr
    )
    assert "No backup found" in checked.stderr
    assert "jobs.db" not in checked.stderr  # no file to move aside on PostgreSQL
    assert f"Newest backup: {backup}; restore it with: secautod restore" in hinted.stderr


def test_with_amcheck_every_index_page_is_read_too(make_job: Any) -> None:
    """With amcheck installed, a damaged page of the jobs primary key's index is a finding naming the index."""
    with scratch_database() as source:
        with psycopg.connect(source, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION amcheck")
        filled_store(source, make_job, jobs=2000)
        with scratch_database(template=database_of(source)) as copy:
            block = damage_last_page(copy, "jobs_pkey")
            with JobStore(copy) as store:
                problems = store.integrity_check()
    assert len(problems) == 1
    assert problems[0].startswith(f"index jobs_pkey: invalid page in block {block} of relation")


def test_amcheck_the_role_may_not_run_is_left_out(make_job: Any) -> None:
    """amcheck installed but not granted to secautod's role: the full check reads the tables and raises nothing."""
    role = f"secautod_test_{secrets.token_hex(6)}"
    with admin_connection() as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        with scratch_database() as url:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION amcheck")  # EXECUTE is not granted to PUBLIC
                conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
            as_role = url.replace("://postgres@", f"://{role}@", 1)
            assert as_role != url
            with JobStore(as_role) as store:
                store.save_job(make_job())
                assert store.integrity_check() == []
                assert store.quick_check() == []
    finally:
        with admin_connection() as admin:
            admin.execute(f"DROP ROLE {role}")


def test_a_missing_table_is_a_finding_of_both_checks(store_url: str) -> None:
    """A table of secautod's dropped behind its back is named by integrity_check and quick_check alike."""
    with JobStore(store_url) as store:
        with psycopg.connect(store_url, autocommit=True) as conn:
            conn.execute("DROP TABLE backup_log")
        assert store.integrity_check() == ["table backup_log is missing"]
        assert store.quick_check() == ["table backup_log is missing"]
