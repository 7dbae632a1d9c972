"""The real daemon's recovery notifications, webhook delivery and maintenance schedule."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from harness import DaemonFactory, boot_time, free_port, receiver, wait_until, write_config

from secautod import JobStatus, JobStore
from secautod.timestamps import utc_now

SECRET = "s3cr3t-hmac-key-for-tests"
FAST_RETRY = {"retry_initial_seconds": 0.2, "retry_max_seconds": 1}


def seed(tmp_path: Path, make_job: Any, running: int, pending: int = 0) -> None:
    """Running jobs from before this host booted (their engine is gone), and pending ones."""
    before_boot = boot_time() - timedelta(hours=1)
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        for index in range(running):
            job = make_job(id=f"run-{index}", status="running", started_at=before_boot)
            store.save_job(job)
        for index in range(pending):
            store.save_job(make_job(id=f"wait-{index}", status="pending"))


def test_recovered_jobs_are_posted_signed(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """Each recovered job is POSTed as JSON with a valid HMAC-SHA256 signature; the secret is never logged."""
    seed(tmp_path, make_job, running=3, pending=2)
    with receiver() as hooks:
        config = write_config(
            tmp_path,
            webhooks=[{"url": hooks.url, "secret_env": "HOOK_SECRET"}],
            webhook_delivery=FAST_RETRY,
        )
        daemon = daemons.start(config, env={"HOOK_SECRET": SECRET})
        wait_until(lambda: len(hooks.deliveries) >= 3, what="three deliveries")
        daemon.wait_for_event("webhook_delivered", count=3)
        assert daemon.stop() == 0
    bodies = [delivery.json() for delivery in hooks.deliveries]
    assert sorted(body["job"]["id"] for body in bodies) == ["run-0", "run-1", "run-2"]
    assert all(delivery.signature_valid(SECRET) for delivery in hooks.deliveries)
    boot_id = daemon.named("jobs_recovered")[0]["boot_id"]
    for body in bodies:
        assert body["event"] == "job_recovered"
        assert body["reason"] == "host_rebooted"
        assert body["boot_id"] == boot_id
        assert body["job"]["status"] == "failed"
        assert body["timestamp"].endswith("Z")
        assert body["id"]  # unique delivery id for de-duplication
    assert daemon.named("jobs_recovered")[0]["count"] == 3
    assert SECRET not in daemon.log_path.read_text()
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        assert store.state.outbox_summary() == []  # delivered rows are pruned
        assert store.get_stats().by_status[JobStatus.PENDING] == 2


def test_receiver_outage_outlasting_a_restart_still_delivers(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """Notifications survive a restart while the endpoint is down and are delivered once it is up."""
    seed(tmp_path, make_job, running=2)
    port = free_port()
    config = write_config(
        tmp_path,
        webhooks=[{"url": f"http://127.0.0.1:{port}/hook", "timeout_seconds": 2}],
        webhook_delivery=FAST_RETRY,
    )
    first = daemons.start(config)
    failure = first.wait_for_event("webhook_failed")[0]
    assert failure["attempt"] == 1
    assert failure["retry_in"] > 0
    assert first.stop() == 0
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        assert sum(summary.count for summary in store.state.outbox_summary()) == 2
    with receiver(port) as hooks:
        second = daemons.start(config)
        wait_until(lambda: len(hooks.deliveries) >= 2, what="deliveries after restart")
        assert second.stop() == 0
    assert sorted(delivery.json()["job"]["id"] for delivery in hooks.deliveries) == [
        "run-0",
        "run-1",
    ]
    assert second.named("job_recovered") == []  # recovered once, by the first boot


def test_endpoint_errors_are_retried_with_backoff(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """A 500 answer is retried with growing delays until the endpoint accepts the notification."""
    seed(tmp_path, make_job, running=1)
    with receiver(status=500) as hooks:
        config = write_config(tmp_path, webhooks=[{"url": hooks.url}], webhook_delivery=FAST_RETRY)
        daemon = daemons.start(config)
        failures = daemon.wait_for_event("webhook_failed", count=3)
        hooks.status = 200
        wait_until(lambda: hooks.deliveries, what="delivery after the endpoint recovers")
        assert daemon.stop() == 0
    assert [entry["attempt"] for entry in failures[:3]] == [1, 2, 3]
    delays = [entry["retry_in"] for entry in failures[:3]]
    assert delays == sorted(delays)
    assert delays[0] < delays[2]
    assert all("HTTP 500" in entry["error"] for entry in failures)


def test_first_start_backs_up_and_a_prompt_restart_does_not(
    tmp_path: Path, daemons: DaemonFactory
) -> None:
    """The first start takes a backup at once; restarting soon after schedules the next one a week out."""
    config = write_config(tmp_path)
    first = daemons.start(config)
    first.wait_for_event("backup_completed")
    first.wait_for_event("cleanup_completed")
    assert first.stop() == 0
    second = daemons.start(config)
    scheduled = {
        entry["task"]: entry["next_run"] for entry in second.named("maintenance_scheduled")
    }
    assert second.stop() == 0
    assert len(list((tmp_path / "data").glob("jobs.db.backup.*"))) == 1
    assert not second.named("backup_completed")
    assert not second.named("cleanup_completed")
    now = utc_now()
    from datetime import datetime

    backup_next = datetime.fromisoformat(scheduled["backup"].replace("Z", "+00:00"))
    cleanup_next = datetime.fromisoformat(scheduled["cleanup"].replace("Z", "+00:00"))
    assert backup_next > now + timedelta(days=6)
    assert cleanup_next > now + timedelta(hours=23)


def test_overdue_cleanup_runs_right_after_startup(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """A cleanup last run two days ago runs at start-up and deletes expired jobs."""
    now = utc_now()
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        store.state.record_task_success("cleanup", now - timedelta(days=2), {"deleted": 0})
        store.state.record_task_success("backup", now - timedelta(hours=1), {})
        for index in range(4):
            store.save_job(
                make_job(
                    id=f"old-{index}",
                    status="completed",
                    created_at=now - timedelta(days=60),
                    completed_at=now - timedelta(days=59),
                )
            )
        store.save_job(make_job(id="fresh", status="completed", created_at=now, completed_at=now))
    daemon = daemons.start(write_config(tmp_path))
    completed = daemon.wait_for_event("cleanup_completed")[0]
    assert completed["deleted"] == 4
    assert "duration_ms" in completed
    assert not daemon.named("backup_completed")  # the backup was not due
    assert daemon.stop() == 0
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        assert [job.id for job in store.list_jobs()] == ["fresh"]


def test_backup_keep_prunes_older_backups(tmp_path: Path, daemons: DaemonFactory) -> None:
    """With backup_keep 2 and a short interval, only the two newest backups remain; other files stay."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("not a backup")
    for stamp in ("20250101-000000", "20250102-000000", "20250103-000000"):
        (data / f"jobs.db.backup.{stamp}").write_bytes(b"old")
    config = write_config(tmp_path, jobs={"backup_keep": 2, "backup_interval": 0.0005})  # 1.8 s
    daemon = daemons.start(config)
    daemon.wait_for_event("backup_completed", count=2, timeout=30)
    assert daemon.stop() == 0
    backups = sorted(path.name for path in data.glob("jobs.db.backup.*"))
    assert len(backups) == 2
    assert all(not name.startswith("jobs.db.backup.2025") for name in backups)
    assert (data / "notes.txt").exists()
    assert daemon.named("backups_pruned")
