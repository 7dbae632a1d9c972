"""Maintenance, recovery, engine sessions and bookkeeping, against every backend."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from secautod import JobStatus
from secautod.errors import InvalidJobError, SessionLostError
from secautod.processes import ProcessIdentity
from secautod.store.records import Boot, RecoveredJob, Recovery

OTHER_HOST = ProcessIdentity("engine-host-2", "boot-b", "pidns-b", 4242, "12345")


def test_cleanup_deletes_only_old_finished_jobs(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """Old terminal jobs go in batches; recent ones, pending and running ones stay."""
    store = make_store()
    old = now - timedelta(days=40)
    for index in range(3):
        store.save_job(make_job(id=f"old-done-{index}", status="completed", completed_at=old))
    store.save_job(make_job(id="old-failed", status="failed", created_at=old))
    store.save_job(make_job(id="old-running", status="running", created_at=old))
    store.save_job(make_job(id="old-pending", created_at=old))
    store.save_job(make_job(id="new-done", status="completed", completed_at=now))
    expected = store.count_expired_jobs(timedelta(days=30), now=now)
    assert expected[JobStatus.COMPLETED] == 3
    assert expected[JobStatus.FAILED] == 1
    assert store.cleanup_old_jobs(timedelta(days=30), now=now) == 4
    assert sorted(job.id for job in store.list_jobs()) == ["new-done", "old-pending", "old-running"]
    assert store.cleanup_old_jobs(timedelta(days=30), now=now) == 0


def test_import_skips_stored_ids_and_refuses_an_id_named_twice(
    make_store: Any, make_job: Any
) -> None:
    """Importing twice changes nothing; an id twice in one import keeps nothing of it."""
    store = make_store()
    jobs = [make_job() for _ in range(5)]
    first = store.import_jobs(jobs)
    assert (first.imported, first.skipped) == (5, 0)
    again = store.import_jobs(jobs)
    assert (again.imported, again.skipped) == (0, 5)
    fresh = make_job()
    with pytest.raises(InvalidJobError, match="more than once"):
        store.import_jobs([fresh, *jobs[:2], fresh])
    assert store.load_job(fresh.id) is None
    assert store.get_stats().total == 5


def test_recovery_fails_unclaimed_running_jobs_once_with_notifications(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """Running jobs no session claims become failed, one notification per endpoint, only once."""
    store = make_store()
    store.save_job(make_job(id="r1", status="running", started_at=now - timedelta(hours=1)))
    store.save_job(make_job(id="p1"))
    recovery = Recovery("engine_stopped", "interrupted (engine_stopped)")

    def body(job: RecoveredJob) -> str:
        return json.dumps({"job": job.id, "started_at": job.started_at})

    found = store.recover_jobs(recovery, now, ["http://a", "http://b"], body)
    assert [job.id for job in found] == ["r1"]
    assert found[0].started_at is not None
    assert found[0].started_at.endswith("Z")
    failed = store.get_job("r1")
    assert (failed.status, failed.completed_at, failed.error) == (
        JobStatus.FAILED,
        now.replace(microsecond=now.microsecond // 1000 * 1000),
        "interrupted (engine_stopped)",
    )
    assert store.get_job("p1").status is JobStatus.PENDING
    assert store.recover_jobs(recovery, now, ["http://a"], body) == []
    due = store.state.due_notifications("http://a", now, 10, now + timedelta(days=1))
    assert [json.loads(n.body)["job"] for n in due] == ["r1"]
    assert [summary.count for summary in store.state.outbox_summary()] == [1, 1]
    store.state.reschedule(due[0].id, now + timedelta(minutes=5), "refused")
    assert store.state.due_notifications("http://a", now, 10, now + timedelta(days=1)) == []
    assert store.state.next_notification_due("http://a") == now + timedelta(minutes=5)
    store.state.mark_delivered(due[0].id)
    assert store.state.next_notification_due("http://a") is None


def test_a_session_declared_gone_is_fenced_off_its_jobs(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """A session's running job is claimed; once recovered, the old session's write is refused."""
    supervisor, engine = make_store(), make_store()
    engine.save_job(make_job(id="claimed"))
    session_id = engine.open_engine_session(OTHER_HOST, "engine", timedelta(seconds=30))
    engine.attach_session(session_id)
    engine.update_job_status("claimed", JobStatus.RUNNING, now=now)
    assert supervisor.state.engine_sessions_alive() == 1
    [session] = supervisor.engine_sessions()
    assert (session.host, session.pid, session.lease) == (
        "engine-host-2",
        4242,
        timedelta(seconds=30),
    )
    assert supervisor.job_claims(["claimed", "other"])["claimed"].session_id == session_id
    assert engine.renew_engine_session(session_id) is True
    recovery = Recovery("lease_expired", "interrupted (lease_expired)", session_id=session_id)
    found = supervisor.recover_jobs(recovery, now, [], lambda job: "{}")
    assert [job.id for job in found] == ["claimed"]
    assert supervisor.recover_jobs(recovery, now, [], lambda job: "{}") == []
    assert engine.renew_engine_session(session_id) is False
    with pytest.raises(SessionLostError, match="declared gone"):
        engine.update_job_status("claimed", JobStatus.COMPLETED)
    assert supervisor.get_job("claimed").status is JobStatus.FAILED
    [ended] = supervisor.engine_sessions(include_ended=True)
    assert (ended.gone_reason, ended.alive) == ("lease_expired", False)
    assert supervisor.prune_engine_sessions(now + timedelta(seconds=1)) == 1
    assert supervisor.engine_sessions(include_ended=True) == []


def test_bookkeeping_round_trips(make_store: Any, now: datetime) -> None:
    """Daemon starts, task runs and backup records come back as written."""
    store = make_store()
    store.state.record_boot(Boot("b1", now, 100, "1.0", 0))
    store.state.record_boot(Boot("b1", now, 100, "1.0", 3))
    assert store.state.latest_boot() == Boot("b1", now, 100, "1.0", 3)
    store.state.record_task_success("cleanup", now, {"deleted": 2})
    store.state.record_task_failure("backup", now, "disk full")
    runs = store.state.task_runs()
    assert (runs["cleanup"].last_success_at, runs["cleanup"].last_result) == (now, {"deleted": 2})
    assert (runs["backup"].last_success_at, runs["backup"].last_error) == (None, "disk full")
    path = Path("/backups/jobs.db.backup.20260101-000000")
    store.state.record_backup(path, now, 1234)
    record = store.state.backup_record(path)
    assert record is not None
    assert (record.created_at, record.size_bytes) == (now, 1234)
    store.state.forget_backups([path])
    assert store.state.backup_record(path) is None


def test_store_size_grows_by_what_a_job_adds(make_store: Any, make_job: Any) -> None:
    """The store's size (its data, plus a WAL of its own where it has one) grows by a big job's bytes."""
    store = make_store()
    before = store.store_size()
    payload = secrets.token_urlsafe(300_000)  # random: no backend compresses it
    store.save_job(make_job(id="big", context={"blob": payload}))
    after = store.store_size()
    grown = after.database_bytes + (after.wal_bytes or 0)
    grown -= before.database_bytes + (before.wal_bytes or 0)
    assert grown >= len(payload)
    assert after.database_bytes > 0


def test_figures_and_checks_on_a_sound_store(make_store: Any, make_job: Any, now: datetime) -> None:
    """A fresh store passes its checks and reports counts and oldest waits."""
    store = make_store()
    store.save_job(make_job(id="p", created_at=now - timedelta(hours=2)))
    store.save_job(make_job(id="r", status="running", started_at=now - timedelta(hours=1)))
    assert store.integrity_check() == []
    assert store.quick_check() == []
    store.ping()
    figures = store.job_figures()
    assert figures.by_status == {"pending": 1, "running": 1}
    assert figures.oldest_pending_created_at == now - timedelta(hours=2)
    assert figures.oldest_running_started_at == now - timedelta(hours=1)
