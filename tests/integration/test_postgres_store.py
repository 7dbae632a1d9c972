"""What is PostgreSQL's own in a store: its size in the server, fencing under READ COMMITTED."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from harness import wait_until
from pg_server import admin_connection, schema_of, scratch_schema

from secautod import JobStatus, JobStore, SessionLostError
from secautod.processes import ProcessIdentity
from secautod.store.postgres import queries

OTHER_HOST = ProcessIdentity("engine-host-2", "boot-b", "pidns-b", 4242, "12345")
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
