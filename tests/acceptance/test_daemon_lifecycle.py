"""The real `secautod run`: readiness, signals, watchdog, reload, lock, bad stores."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from harness import DaemonFactory, Engine, run_cli, wait_until, write_config

from secautod import JobStore


def test_ready_then_clean_stop_on_sigterm(tmp_path: Path, daemons: DaemonFactory) -> None:
    """READY=1 with an ASCII STATUS, then STOPPING=1 and exit 0 on SIGTERM; every log line is JSON."""
    daemon = daemons.start(write_config(tmp_path))  # returns once READY=1 arrived
    assert daemon.stop(signal.SIGTERM) == 0
    assert daemon.notify is not None
    daemon.notify.wait_for("STOPPING=1")
    events = daemon.events()  # raises if any stderr line is not JSON
    for entry in events:
        assert {"timestamp", "level", "event", "logger"} <= entry.keys()
        assert entry["timestamp"].endswith("Z")
    names = [entry["event"] for entry in events]
    for expected in (
        "config_loaded",
        "store_opened",
        "daemon_ready",
        "maintenance_scheduled",
        "shutdown_started",
        "shutdown_completed",
    ):
        assert expected in names
    assert names.index("shutdown_started") < names.index("shutdown_completed")
    assert not (tmp_path / "data" / "jobs.db-wal").exists()  # checkpointed and closed


def test_ready_status_line_summarises_jobs(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """The STATUS= sent with READY=1 counts jobs and names the last backup, in ASCII."""
    config = write_config(tmp_path, jobs={"backup_enabled": False})
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        for _ in range(3):
            store.save_job(make_job(status="pending"))
    daemon = daemons.start(config, wait_ready=False)
    assert daemon.notify is not None
    message = daemon.notify.wait_for("READY=1")
    status = next(line for line in message.split("\n") if line.startswith("STATUS="))
    assert "3 jobs (3 pending, 0 running)" in status
    assert "last backup never" in status
    status.encode("ascii")
    assert daemon.stop() == 0


def test_sigint_stops_cleanly(tmp_path: Path, daemons: DaemonFactory) -> None:
    """SIGINT (Ctrl-C) is a clean stop too: exit 0, shutdown_completed logged."""
    daemon = daemons.start(write_config(tmp_path))
    assert daemon.stop(signal.SIGINT) == 0
    assert daemon.named("shutdown_completed")[0]["signal"] == "SIGINT"


def test_watchdog_pings_at_half_the_interval(tmp_path: Path, daemons: DaemonFactory) -> None:
    """With WATCHDOG_USEC set, WATCHDOG=1 arrives repeatedly at about half that interval."""
    daemon = daemons.start(write_config(tmp_path), env={"WATCHDOG_USEC": "400000"})
    assert daemon.notify is not None
    started = time.monotonic()
    for _ in range(4):
        daemon.notify.wait_for("WATCHDOG=1", timeout=5)
    elapsed = time.monotonic() - started
    assert 0.5 < elapsed < 5  # four pings at ~0.2 s, not a busy loop and not silent
    assert daemon.stop() == 0


def test_watchdog_meant_for_another_pid_is_ignored(tmp_path: Path, daemons: DaemonFactory) -> None:
    """WATCHDOG_PID naming another process means this one sends no WATCHDOG=1."""
    daemon = daemons.start(
        write_config(tmp_path), env={"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    )
    assert daemon.notify is not None
    assert not [message for message in daemon.notify.drain(1.0) if "WATCHDOG=1" in message]
    assert daemon.stop() == 0


def test_no_notify_socket_is_fine(tmp_path: Path, daemons: DaemonFactory) -> None:
    """Without NOTIFY_SOCKET the daemon runs and stops the same way."""
    daemon = daemons.start(write_config(tmp_path), notify=False)
    assert daemon.stop() == 0


def test_sighup_reloads_a_good_config(tmp_path: Path, daemons: DaemonFactory) -> None:
    """SIGHUP sends RELOADING=1 with MONOTONIC_USEC, applies new intervals, then READY=1."""
    config = write_config(tmp_path)
    daemon = daemons.start(config)
    assert daemon.notify is not None
    write_config(tmp_path, jobs={"cleanup_interval": 2.5}, logging={"level": "debug"})
    daemon.process.send_signal(signal.SIGHUP)
    reloading = daemon.notify.wait_for("RELOADING=1")
    assert any(
        line.startswith("MONOTONIC_USEC=") and int(line.split("=")[1]) > 0
        for line in reloading.split("\n")
    )
    daemon.notify.wait_for("READY=1")
    daemon.wait_for_event("reload_completed")
    rescheduled = [
        entry for entry in daemon.named("maintenance_scheduled") if entry["task"] == "cleanup"
    ]
    assert rescheduled[-1]["interval_hours"] == 2.5
    assert daemon.stop() == 0


def test_sighup_with_broken_config_keeps_the_old_one(
    tmp_path: Path, daemons: DaemonFactory
) -> None:
    """An invalid config on SIGHUP is logged as reload_failed; the daemon keeps running."""
    config = write_config(tmp_path)
    daemon = daemons.start(config)
    assert daemon.notify is not None
    config.write_text("jobs: [this is: not valid\n")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.notify.wait_for("RELOADING=1")
    daemon.notify.wait_for("READY=1")
    failure = daemon.wait_for_event("reload_failed")[0]
    assert "invalid YAML" in failure["error"]
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


def test_second_instance_exits_75_naming_the_holder(tmp_path: Path, daemons: DaemonFactory) -> None:
    """A second daemon on the same data directory exits 75 and names the first one's pid."""
    config = write_config(tmp_path)
    first = daemons.start(config)
    second = run_cli("run", "--config", str(config), timeout=20)
    assert second.returncode == 75
    assert f"pid {first.process.pid}" in second.stderr
    assert first.process.poll() is None
    assert first.stop() == 0


def test_corrupt_database_exits_74_and_names_the_backup(
    tmp_path: Path, daemons: DaemonFactory
) -> None:
    """A damaged jobs.db stops start-up with 74, naming the newest backup and the restore command."""
    config = write_config(tmp_path)
    first = daemons.start(config)
    backup = wait_until(
        lambda: sorted((tmp_path / "data").glob("jobs.db.backup.*")), what="first backup"
    )
    assert first.stop() == 0
    database = tmp_path / "data" / "jobs.db"
    database.write_bytes(b"\x00garbage" * 10_000)
    result = run_cli("run", "--config", str(config), timeout=20)
    assert result.returncode == 74
    message = result.stderr.strip().splitlines()[-1]
    assert backup[-1].name in message
    assert "secautod restore" in message
    assert "Traceback" not in result.stderr


def test_kill_9_then_restart_recovers_jobs_of_dead_engines_only(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """After kill -9 of secautod, the restart fails the job whose engine died meanwhile, not the live engine's."""
    config = write_config(tmp_path)
    database = tmp_path / "data" / "jobs.db"
    daemon = daemons.start(config)
    with JobStore(database) as store:
        for job_id in ("dead-engine-job", "live-engine-job", "waiting"):
            store.save_job(make_job(id=job_id, status="pending"))
    dead, alive = (
        Engine.start(database, "dead-engine-job"),
        Engine.start(database, "live-engine-job"),
    )
    try:
        daemon.kill()
        dead.kill()
        restarted = daemons.start(config)
        recovered = restarted.wait_for_event("job_recovered")[0]
        assert (recovered["job_id"], recovered["reason"]) == ("dead-engine-job", "engine_exited")
        assert recovered["level"] == "warning"
        restarted.wait_for_event("checkpoint_completed")  # recovery's WAL, folded once ready
        events = [line["event"] for line in restarted.events()]
        assert events.index("daemon_ready") < events.index("checkpoint_completed")
        assert alive.command("complete live-engine-job") == "ok"
        assert restarted.stop() == 0
        assert len(restarted.named("job_recovered")) == 1
    finally:
        alive.close()
        dead.close()
    with JobStore(database) as store:
        job = store.get_job("dead-engine-job")
        assert job.status.value == "failed"
        assert job.completed_at is not None
        assert job.error is not None
        assert "engine_exited" in job.error
        assert f"pid {dead.process.pid}" in job.error
        assert store.get_job("live-engine-job").status.value == "completed"
        assert store.get_job("waiting").status.value == "pending"


def test_stderr_is_json_even_for_library_warnings(tmp_path: Path, daemons: DaemonFactory) -> None:
    """Lines from stdlib loggers (not only secautod's own) come out as JSON objects too."""
    config = write_config(tmp_path, logging={"level": "debug"})
    daemon = daemons.start(config)
    assert daemon.stop() == 0
    loggers = {entry["logger"] for entry in daemon.events()}
    assert any(name.startswith("apscheduler") for name in loggers)
    for line in daemon.log_path.read_text().splitlines():
        assert isinstance(json.loads(line), dict)
    names = {entry["event"] for entry in daemon.events()}
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in names), names


def test_database_file_and_wal_are_owner_only(tmp_path: Path, daemons: DaemonFactory) -> None:
    """Files the daemon creates are 0600 and the data directory 0700, whatever the umask."""
    config = write_config(tmp_path)
    old = os.umask(0o022)
    try:
        daemon = daemons.start(config)
    finally:
        os.umask(old)
    data = tmp_path / "data"
    wait_until(lambda: list(data.glob("jobs.db.backup.*")), what="first backup")
    modes = {path.name: path.stat().st_mode & 0o777 for path in data.iterdir()}
    assert daemon.stop() == 0
    assert data.stat().st_mode & 0o777 == 0o700
    assert all(mode == 0o600 for mode in modes.values()), modes


def test_database_from_a_newer_secautod_exits_74(tmp_path: Path) -> None:
    """A store migrated by a newer secautod is refused with 74 and an explanation."""
    config = write_config(tmp_path)
    database = tmp_path / "data" / "jobs.db"
    JobStore(database).close()
    conn = sqlite3.connect(database)
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', '2030-01-01')")
    conn.commit()
    conn.close()
    result = run_cli("run", "--config", str(config), timeout=20)
    assert result.returncode == 74
    assert "newer" in result.stderr or "upgrade secautod" in result.stderr


def test_a_row_another_program_broke_does_not_stop_the_daemon(
    tmp_path: Path, daemons: DaemonFactory
) -> None:
    """A running job with broken JSON is recovered all the same; listing names the row without advising a restore."""
    config = write_config(tmp_path)
    database = tmp_path / "data" / "jobs.db"
    JobStore(database).close()
    conn = sqlite3.connect(database)
    conn.execute(
        "INSERT INTO jobs (id, status, playbook, context, created_at) VALUES ('broken', 'running', '{oops', '{}', '2026-11-01 00:00:00')"
    )
    conn.commit()
    conn.close()
    daemon = daemons.start(config)
    assert daemon.wait_for_event("job_recovered")[0]["job_id"] == "broken"
    listing = run_cli("jobs", "list", "--config", str(config))
    assert listing.returncode == 0, listing.stderr  # the table needs no playbook JSON
    assert "broken" in listing.stdout
    shown = run_cli("jobs", "show", "broken", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert "job broken: playbook is not valid JSON" in shown.stderr
    assert "restore" not in shown.stderr
    assert daemon.stop() == 0


def test_sighup_with_an_invalid_webhook_port_keeps_running(
    tmp_path: Path, daemons: DaemonFactory
) -> None:
    """A reload whose webhook URL has an impossible port is reload_failed, not a dead daemon."""
    config = write_config(tmp_path)
    daemon = daemons.start(config)
    write_config(tmp_path, webhooks=[{"url": "https://hooks.example:99999/x"}])
    daemon.process.send_signal(signal.SIGHUP)
    failure = daemon.wait_for_event("reload_failed")[0]
    assert "Port out of range" in failure["error"]
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


def test_fatal_errors_are_logged_as_json_events(tmp_path: Path, daemons: DaemonFactory) -> None:
    """When the daemon stops on an error after logging is set up, stderr is still only JSON lines."""
    config = write_config(tmp_path)
    first = daemons.start(config)
    second = run_cli("run", "--config", str(config), timeout=20)
    assert second.returncode == 75
    events = [json.loads(line) for line in second.stderr.splitlines()]
    failed = [event for event in events if event["event"] == "daemon_failed"]
    assert failed[0]["exit_status"] == 75
    assert f"pid {first.process.pid}" in failed[0]["error"]
    assert first.stop() == 0


def test_status_line_follows_maintenance(tmp_path: Path, daemons: DaemonFactory) -> None:
    """After the start-up backup, STATUS= is updated to name it (systemctl status stays current)."""
    daemon = daemons.start(write_config(tmp_path))
    assert daemon.notify is not None
    wait_until(
        lambda: any(
            "STATUS=" in message and "last backup 20" in message
            for message in daemon.notify.drain(0.2)
        ),
        what="a STATUS= naming the backup",
    )
    assert daemon.stop() == 0
