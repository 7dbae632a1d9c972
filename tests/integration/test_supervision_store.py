"""Supervision against real SQLite files: claims, fencing, checks that take no lock."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from secautod import JobStatus, SessionLostError
from secautod.recovery import ENGINE_EXITED, recover, session_recovery, stale_jobs


def test_a_check_with_nothing_to_recover_takes_no_write_lock(
    make_store: Any, make_job: Any, tmp_path: Path
) -> None:
    """With jobs.stale_after set and nothing stale, a check only reads: another writer's lock does not stop it."""
    store = make_store(busy_timeout=0.2)
    store.save_job(make_job(id="fresh"))
    store.update_job_status("fresh", JobStatus.RUNNING)
    holder = sqlite3.connect(tmp_path / "data" / "jobs.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        now = datetime.now(UTC)
        assert recover(store, stale_jobs(timedelta(hours=1), now), now, ["http://h.invalid/"]) == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_claims_follow_the_session_and_fencing_stops_a_lost_one(
    make_store: Any, make_job: Any
) -> None:
    """A session claims what it starts, lets go of what it finishes, and a lost session's write raises."""
    store = make_store()
    for job_id in ("a", "b", "c"):
        store.save_job(make_job(id=job_id))
    session = store.engine_session(name="engine", lease=timedelta(seconds=30)).open()
    try:
        store.update_job_status("a", JobStatus.RUNNING)
        store.update_job_status("b", JobStatus.RUNNING)
        store.update_job_status("b", JobStatus.COMPLETED)
        claims = store.job_claims(["a", "b", "c"])
        assert set(claims) == {"a"}
        assert claims["a"].session_id == session.session_id
        (record,) = store.engine_sessions()
        now = datetime.now(UTC)
        recovered = recover(store, session_recovery(record, ENGINE_EXITED, now), now, [])
        assert [job.id for job in recovered] == ["a"]
        with pytest.raises(SessionLostError, match="declared gone"):
            store.update_job_results("a", {"late": True})
        with pytest.raises(SessionLostError):
            store.update_job_status("c", JobStatus.RUNNING)  # a lost session claims nothing
        assert store.get_job("a").status is JobStatus.FAILED
        assert store.get_job("c").status is JobStatus.PENDING
        assert not store.renew_engine_session(session.session_id)
        # Declared gone once: a second verdict on the same session recovers nothing.
        assert recover(store, session_recovery(record, ENGINE_EXITED, now), now, []) == []
    finally:
        session.close()


def test_job_figures_are_recounted_only_after_another_connection_commits(
    make_store: Any, make_job: Any, tmp_path: Path
) -> None:
    """An idle store returns the last figures without counting; a commit by another connection is seen."""
    store = make_store()
    store.save_job(make_job(id="a"))
    first = store.job_figures()
    assert first.by_status.get("pending") == 1
    assert store.job_figures() is first  # nobody committed: not counted again
    other = sqlite3.connect(tmp_path / "data" / "jobs.db")
    with other:
        other.execute(
            "INSERT INTO jobs (id, status, playbook, context, created_at) "
            "VALUES ('b', 'pending', '{}', '{}', '2026-01-01 00:00:00.000')"
        )
    other.close()
    assert store.job_figures().by_status.get("pending") == 2
    store.save_job(make_job(id="c"))  # this thread's own connection commits
    assert store.job_figures().by_status.get("pending") == 3
