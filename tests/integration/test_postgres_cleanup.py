"""Cleanup on PostgreSQL: short batches that never wait for an engine's row lock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from pg_server import scratch_schema

from secautod import JobStore
from secautod.store.postgres import queries

RETENTION = timedelta(days=30)


@pytest.fixture
def store_url() -> Iterator[str]:
    """A PostgreSQL URL working in a fresh schema, dropped after the test."""
    with scratch_schema() as url:
        assert url is not None
        yield url


def test_cleanup_skips_a_job_an_engine_holds_without_waiting(
    store_url: str, make_job: Any, now: datetime
) -> None:
    """A job whose row another session has locked stays (cleanup does not wait for it); the next run takes it."""
    old = now - timedelta(days=40)
    with JobStore(store_url, busy_timeout=1.0) as store:
        for index in range(3):
            store.save_job(make_job(id=f"old-{index}", status="completed", completed_at=old))
        with psycopg.connect(store_url) as engine:
            engine.execute("SELECT 1 FROM jobs WHERE id = 'old-1' FOR UPDATE")
            # Waiting for the lock would raise StoreBusyError after the 1 s busy timeout.
            assert store.cleanup_old_jobs(RETENTION, now=now) == 2
            engine.rollback()
        assert [job.id for job in store.list_jobs()] == ["old-1"]
        assert store.cleanup_old_jobs(RETENTION, now=now) == 1


def test_a_cleanup_batch_reaches_its_rows_through_indexes(store_url: str, now: datetime) -> None:
    """The batch's plan scans no table: it finds rows by the expiry index and deletes them by key."""
    with JobStore(store_url), psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")  # only a plan without an index keeps one
        params = {"cutoff": now - RETENTION, "limit": 500}
        plan = "\n".join(
            str(row[0])
            for row in conn.execute("EXPLAIN " + queries.DELETE_EXPIRED_BATCH, params).fetchall()
        )
    assert "Seq Scan" not in plan, plan
    assert "idx_jobs_expiry" in plan, plan
    assert "Index Cond: (id = " in plan, plan  # by key, not a whole index read for `rowid`
