"""`secautod status` tells the truth: the store check, late webhooks, and what the daemon really loaded."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from harness import DaemonFactory, boot_time, receiver, run_cli, wait_until, write_config

from secautod import JobStore


def status(config: Path) -> tuple[int, dict[str, Any]]:
    result = run_cli("status", "--json", "--config", str(config))
    return result.returncode, json.loads(result.stdout)


def test_a_damaged_store_is_found_at_start_up_and_fails_status(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """A store with a damaged page starts, but the start-up quick_check logs the damage with the restore command and status exits 3."""
    database = tmp_path / "data" / "jobs.db"
    with JobStore(database) as store:
        for index in range(400):
            store.save_job(make_job(id=f"wait-{index:04d}", context={"blob": "x" * 500}))
    config = write_config(tmp_path, jobs={"backup_enabled": False})
    assert run_cli("backup", "--config", str(config)).returncode == 0
    with sqlite3.connect(database) as conn:
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs'").fetchone()
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.close()
    data = bytearray(database.read_bytes())
    page = 4096
    middle = (root + pages) // 2  # a leaf of the jobs table, well behind its root
    data[(middle - 1) * page + 8 : (middle - 1) * page + 40] = b"\xa5" * 32
    database.write_bytes(bytes(data))
    daemon = daemons.start(config)
    failed = daemon.wait_for_event("store_check_failed")[0]
    assert "secautod restore --config" in failed["restore"]
    assert failed["level"] == "error"
    code, report = wait_until(
        lambda: (answer := status(config)) and answer[1]["store_check"] and answer,
        what="the check in status",
    )
    assert code == 3
    assert report["store_check"]["ok"] is False
    assert any(
        "failed its check" in problem and "secautod restore" in problem
        for problem in report["problems"]
    )
    notify = daemon.notify
    assert notify is not None
    wait_until(
        lambda: (
            notify.receive(0.1) is not None
            and any("STATUS=STORE DAMAGED" in message for message in notify.messages)
        ),
        what="STATUS= naming the damage",
    )
    daemon.stop()


def test_one_failed_webhook_attempt_is_no_problem_until_it_is_late(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """A refused notification keeps status at 0; only once it waits past late_after_seconds does status exit 3."""
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        store.save_job(
            make_job(
                id="interrupted", status="running", started_at=boot_time() - timedelta(hours=1)
            )
        )
    with receiver(status=503) as hooks:
        config = write_config(
            tmp_path,
            webhooks=[{"url": hooks.url}],
            webhook_delivery={
                "retry_initial_seconds": 30,
                "retry_max_seconds": 60,
                "late_after_seconds": 3,
            },
        )
        daemon = daemons.start(config)
        daemon.wait_for_event("webhook_failed")
        code, report = status(config)
        assert code == 0, report["problems"]
        assert report["undelivered_notifications"] == {hooks.url: 1}
        code, report = wait_until(
            lambda: (answer := status(config))[0] == 3 and answer, what="a late notification"
        )
        assert any("webhook notification(s) waiting" in problem for problem in report["problems"])
        assert daemon.stop() == 0


def test_an_edit_not_yet_reloaded_is_a_note_not_a_failure(
    tmp_path: Path, daemons: DaemonFactory
) -> None:
    """status uses the settings the daemon loaded: an edited (even invalid) config.yaml is a note and exit 0."""
    config = write_config(tmp_path)
    daemon = daemons.start(config)
    daemon.wait_for_event("backup_completed")
    wait_until(lambda: status(config)[0] == 0, what="a healthy status")
    # A valid edit that would make the last backup overdue at once: not what the daemon runs with.
    write_config(tmp_path, jobs={"backup_interval": 0.0001})
    code, report = status(config)
    assert code == 0, report["problems"]
    assert any("edited since the daemon loaded it" in note for note in report["notes"])
    assert report["tasks"]["backup"]["interval_seconds"] == 168 * 3600
    config.write_text(config.read_text() + "jobs: {retention_days: thirty}\n")
    result = run_cli("status", "--config", str(config))
    assert result.returncode == 0, result.stdout
    assert "does not load" in result.stdout
    assert "a restart will fail" in result.stdout
    assert daemon.stop() == 0
    result = run_cli("status", "--config", str(config))  # no daemon: the file is what counts
    assert result.returncode == 78


def test_status_without_metrics_still_publishes_state(
    tmp_path: Path, daemons: DaemonFactory
) -> None:
    """Without metrics.* the daemon still checks the store and status shows the check."""
    config = write_config(tmp_path, metrics={"refresh_seconds": 0.1})
    daemon = daemons.start(config)
    code, report = wait_until(
        lambda: (answer := status(config)) and answer[1]["store_check"] and answer,
        what="the store check in status",
    )
    assert code == 0
    assert report["store_check"]["ok"] is True
    assert not list((tmp_path / "data").glob("*.prom"))
    assert daemon.stop() == 0
