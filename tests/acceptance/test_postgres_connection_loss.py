"""The daemon on PostgreSQL when the server cuts its connections (SPEC §11): no crash, retried."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import DaemonFactory, wait_until, write_config
from pg_server import admin_connection, scratch_database

from secautod import JobStatus, JobStore

EXPIRED_JOBS = 200_000  # enough that cleanup is still deleting when the connections go


@pytest.fixture
def store_url() -> Iterator[str]:
    """A database of its own: cutting every secautod connection to it touches no other test."""
    with scratch_database() as url:
        yield url


def add_expired_jobs(url: str, count: int) -> None:
    """Insert `count` jobs completed 90 days ago, in one statement."""
    JobStore(url).close()  # secautod's tables
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (id, status, playbook, context, created_at, completed_at) "
            "SELECT 'old-' || n, 'completed', '{}', '{}', now() - interval '91 days', "
            "now() - interval '90 days' FROM generate_series(1, %s) AS n",
            (count,),
        )


def cut_connections(url: str) -> int:
    """pg_terminate_backend every secautod connection to the database of `url`."""
    database = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with admin_connection() as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'secautod'",
            (database,),
        ).fetchall()
    return sum(1 for (done,) in rows if done)


def expired_left(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM jobs WHERE id LIKE 'old-%'").fetchone()
    assert row is not None
    return int(row[0])


def test_a_cleanup_cut_off_mid_way_is_retried_within_seconds_and_finishes(
    tmp_path: Path, daemons: DaemonFactory, store_url: str
) -> None:
    """Connections cut during cleanup: cleanup_failed, a retry seconds later (not retry_delay), all deleted."""
    add_expired_jobs(store_url, EXPIRED_JOBS)
    config = write_config(
        tmp_path,
        storage={"url": store_url},
        jobs={"backup_enabled": False, "retry_delay_seconds": 3600},
    )
    daemon = daemons.start(config, wait_ready=False)
    daemon.wait_for_event("cleanup_started")
    wait_until(lambda: expired_left(store_url) < EXPIRED_JOBS, what="cleanup deleting")
    assert cut_connections(store_url) > 0
    (failed,) = daemon.wait_for_event("cleanup_failed")
    assert failed["error_type"] == "StoreUnreachableError"
    (retry,) = daemon.wait_for_event("maintenance_retry_scheduled")
    assert retry["task"] == "cleanup"
    daemon.wait_for_event("cleanup_completed", timeout=120)
    assert expired_left(store_url) == 0
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


def test_supervision_goes_on_after_every_connection_was_cut(
    tmp_path: Path, daemons: DaemonFactory, store_url: str, make_job: Any
) -> None:
    """Connections cut three times while idle: the daemon stays up and still recovers a job."""
    JobStore(store_url).close()
    config = write_config(
        tmp_path,
        storage={"url": store_url},
        supervision={"check_interval": 0.2},
        jobs={"backup_enabled": False},
    )
    daemon = daemons.start(config)
    for _ in range(3):
        wait_until(lambda: cut_connections(store_url) > 0, what="a secautod connection to cut")
    with JobStore(store_url) as store:
        with store.engine_session(name="after-cut"):
            store.save_job(make_job(id="j1"))
            store.update_job_status("j1", "running")
        # Closed with the job still running: the next check recovers it (engine_stopped).
        wait_until(lambda: store.get_job("j1").status is JobStatus.FAILED, what="j1 recovered")
    (line,) = daemon.named("job_recovered")
    assert line["reason"] == "engine_stopped"
    assert daemon.process.poll() is None
    assert daemon.stop() == 0
