"""Live supervision with the real daemon and real engine processes (SPEC §9)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from harness import (
    DaemonFactory,
    Engine,
    boot_time,
    protocol_sql_blocks,
    receiver,
    require,
    run_cli,
    wait_until,
    write_config,
)

from secautod import JobStatus, JobStore
from secautod.processes import current_identity, process_start_time

CHECK = 0.3  # supervision.check_interval in these tests, seconds
FAST = {"retry_initial_seconds": 0.1, "retry_max_seconds": 0.5}


def seed(database: Path, make_job: Any, *job_ids: str, **fields: Any) -> None:
    with JobStore(database) as store:
        for job_id in job_ids:
            store.save_job(make_job(id=job_id, **{"status": "pending", **fields}))


def status_of(database: Path, job_id: str) -> JobStatus:
    with JobStore(database) as store:
        return store.get_job(job_id).status


def config_for(tmp_path: Path, url: str, **sections: Any) -> Path:
    document: dict[str, Any] = {
        "supervision": {"check_interval": CHECK},
        "webhooks": [{"url": url}],
        "webhook_delivery": FAST,
        "jobs": {"backup_enabled": False},
    }
    for key, value in sections.items():
        document[key] = {**document.get(key, {}), **value} if isinstance(value, dict) else value
    return write_config(tmp_path, **document)


def test_sigkill_of_an_engine_is_recovered_within_one_check(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """A killed engine's running job fails as engine_exited within one check, long before its lease."""
    database = tmp_path / "data" / "jobs.db"
    seed(database, make_job, "j1", "j2")
    with receiver() as hooks:
        daemon = daemons.start(config_for(tmp_path, hooks.url))
        engine = Engine.start(database, "j1", lease=60)
        try:
            engine.kill()
            killed = time.monotonic()
            wait_until(lambda: status_of(database, "j1") is JobStatus.FAILED, timeout=CHECK + 1)
            elapsed = time.monotonic() - killed
            wait_until(lambda: hooks.deliveries, what="the job_recovered webhook")
        finally:
            engine.close()
        assert daemon.stop() == 0
    assert elapsed < CHECK + 1
    (line,) = daemon.named("job_recovered")
    assert (line["level"], line["reason"], line["job_id"]) == ("warning", "engine_exited", "j1")
    assert f"pid {engine.process.pid}" in line["session"]
    body = hooks.deliveries[0].json()
    assert (body["reason"], body["job"]["id"]) == ("engine_exited", "j1")
    assert body["session"]["pid"] == engine.process.pid
    with JobStore(database) as store:
        error = store.get_job("j1").error
        assert error is not None
        assert "interrupted (engine_exited)" in error
        assert f"pid {engine.process.pid}" in error
        assert store.get_job("j2").status is JobStatus.PENDING


def test_sigstop_expires_the_lease_and_the_woken_engine_is_fenced(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """A stopped engine loses its lease (lease_expired); after SIGCONT its write raises SessionLostError and the job stays failed."""
    database = tmp_path / "data" / "jobs.db"
    seed(database, make_job, "j1")
    with receiver() as hooks:
        daemon = daemons.start(config_for(tmp_path, hooks.url))
        engine = Engine.start(database, "j1", lease=1.5)
        try:
            engine.kill(signal.SIGSTOP)
            stopped = time.monotonic()
            wait_until(lambda: status_of(database, "j1") is JobStatus.FAILED, timeout=10)
            waited = time.monotonic() - stopped
            engine.kill(signal.SIGCONT)
            assert engine.command("complete j1") == "lost"
        finally:
            engine.close()
        assert daemon.stop() == 0
    assert waited >= 1.0  # the lease, not a process probe, decided
    assert daemon.named("job_recovered")[0]["reason"] == "lease_expired"
    with JobStore(database) as store:
        job = store.get_job("j1")
        assert job.status is JobStatus.FAILED
        assert job.error is not None
        assert "interrupted (lease_expired)" in job.error


def test_a_session_closed_with_a_running_job_is_engine_stopped(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """Closing a session that still claims a running job fails the job as engine_stopped."""
    database = tmp_path / "data" / "jobs.db"
    seed(database, make_job, "j1")
    with receiver() as hooks:
        daemon = daemons.start(config_for(tmp_path, hooks.url))
        engine = Engine.start(database, "j1")
        try:
            assert engine.command("close") == "closed"
            wait_until(lambda: status_of(database, "j1") is JobStatus.FAILED, timeout=CHECK + 2)
        finally:
            engine.close()
        assert daemon.stop() == 0
    assert daemon.named("job_recovered")[0]["reason"] == "engine_stopped"


def test_restarting_secautod_while_engines_run_recovers_nothing(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """A secautod restart (as a package upgrade does) fails no live engine's job and sends no webhook."""
    database = tmp_path / "data" / "jobs.db"
    seed(database, make_job, "j1", "j2")
    with receiver() as hooks:
        config = config_for(tmp_path, hooks.url, logging={"level": "debug"})
        daemon = daemons.start(config)
        engines = [Engine.start(database, "j1", lease=2), Engine.start(database, "j2", lease=2)]
        try:
            assert daemon.stop() == 0
            restarted = daemons.start(config)
            # Long enough for several checks and more than a lease after the restart.
            wait_until(
                lambda: len(restarted.named("supervision_check_completed")) >= 10,
                what="ten supervision checks",
            )
            assert [
                engine.command(f"complete {job}")
                for engine, job in zip(engines, ("j1", "j2"), strict=True)
            ] == ["ok", "ok"]
            assert restarted.stop() == 0
        finally:
            for engine in engines:
                engine.close()
    assert restarted.named("job_recovered") == []
    assert hooks.requests == 0
    assert status_of(database, "j1") is JobStatus.COMPLETED


def test_unclaimed_jobs_fail_at_start_only_when_running_since_before_boot(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """An unclaimed job running since before this host booted fails (host_rebooted); one started after does not."""
    database = tmp_path / "data" / "jobs.db"
    booted = boot_time()
    seed(database, make_job, "old", status="running", started_at=booted - timedelta(hours=1))
    seed(database, make_job, "new", status="running", started_at=booted + timedelta(seconds=1))
    with receiver() as hooks:
        daemon = daemons.start(config_for(tmp_path, hooks.url))
        assert daemon.stop() == 0
    assert status_of(database, "old") is JobStatus.FAILED
    assert status_of(database, "new") is JobStatus.RUNNING
    assert [line["reason"] for line in daemon.named("job_recovered")] == ["host_rebooted"]


def test_at_start_keeps_the_old_rule(tmp_path: Path, daemons: DaemonFactory, make_job: Any) -> None:
    """supervision.unclaimed: at_start fails every unclaimed running job when secautod starts."""
    database = tmp_path / "data" / "jobs.db"
    seed(database, make_job, "j1", status="running", started_at=boot_time() + timedelta(seconds=1))
    with receiver() as hooks:
        config = config_for(
            tmp_path, hooks.url, supervision={"check_interval": CHECK, "unclaimed": "at_start"}
        )
        daemon = daemons.start(config)
        assert daemon.stop() == 0
    assert status_of(database, "j1") is JobStatus.FAILED
    assert daemon.named("job_recovered")[0]["reason"] == "engine_stopped"


def test_stale_after_fails_unclaimed_jobs_with_no_update(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """jobs.stale_after fails an unclaimed running job whose last update is older (stale); a claimed one is spared."""
    database = tmp_path / "data" / "jobs.db"
    seed(database, make_job, "quiet", "claimed")
    with JobStore(database) as store:
        store.update_job_status("quiet", JobStatus.RUNNING)
    engine = Engine.start(database, "claimed")
    try:
        with receiver() as hooks:
            config = write_config(
                tmp_path,
                supervision={"check_interval": CHECK},
                jobs={"backup_enabled": False, "stale_after": 2 / 3600},  # two seconds
                webhooks=[{"url": hooks.url}],
            )
            daemon = daemons.start(config)
            wait_until(lambda: status_of(database, "quiet") is JobStatus.FAILED, timeout=10)
            assert status_of(database, "claimed") is JobStatus.RUNNING
            assert daemon.stop() == 0
    finally:
        engine.close()
    assert daemon.named("job_recovered")[0]["reason"] == "stale"


def test_recover_command_while_the_daemon_runs(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """`secautod recover` fails unclaimed running jobs now (engine_stopped); the running daemon delivers the webhooks."""
    database = tmp_path / "data" / "jobs.db"
    seed(database, make_job, "unclaimed", "claimed")
    with JobStore(database) as store:
        store.update_job_status("unclaimed", JobStatus.RUNNING)
    engine = Engine.start(database, "claimed")
    try:
        with receiver() as hooks:
            config = config_for(tmp_path, hooks.url)
            daemon = daemons.start(config)
            dry = run_cli("recover", "--config", str(config), "--dry-run", "--json")
            assert dry.returncode == 0, dry.stderr
            assert json.loads(dry.stdout) == {"would_recover": ["unclaimed"]}
            result = run_cli("recover", "--config", str(config), "--json")
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout) == {"recovered": ["unclaimed"]}
            wait_until(lambda: hooks.deliveries, what="the daemon delivering the notification")
            body = hooks.deliveries[0].json()
            assert (body["job"]["id"], body["reason"]) == ("unclaimed", "engine_stopped")
            shown = run_cli("jobs", "show", "claimed", "--config", str(config), "--json")
            assert json.loads(shown.stdout)["claimed_by"]["pid"] == engine.process.pid
            status = run_cli("status", "--config", str(config), "--json")
            (session,) = json.loads(status.stdout)["engine_sessions"]
            assert (session["pid"], session["running_jobs"]) == (engine.process.pid, 1)
            assert daemon.stop() == 0
    finally:
        engine.close()
    assert status_of(database, "claimed") is JobStatus.RUNNING
    assert status_of(database, "unclaimed") is JobStatus.FAILED


def test_the_sql_protocol_from_the_sqlite3_shell(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """An engine speaking docs/ENGINE-PROTOCOL.md from the sqlite3 shell is supervised like a Python one."""
    require(shutil.which("sqlite3"), "the sqlite3 shell (Debian package sqlite3) is not installed")
    database = tmp_path / "data" / "jobs.db"
    seed(database, make_job, "go-1", "go-2")
    worker = subprocess.Popen(["sleep", "600"])  # plays the engine's process
    here = current_identity()
    start = process_start_time(worker.pid)
    blocks = protocol_sql_blocks()
    values = {
        ":session_id": "'go-session'",
        ":name": "'go-engine'",
        ":host": f"'{here.host}'",
        ":boot_id": f"'{here.boot_id}'",
        ":pid_namespace": f"'{here.pid_namespace}'",
        ":pid": str(worker.pid),
        ":process_start": f"'{start}'",
        ":lease_seconds": "30",
    }

    def shell(block: str, **more: str) -> str:
        script = block
        for name, value in sorted({**values, **more}.items(), key=lambda item: -len(item[0])):
            script = script.replace(name, value)
        result = subprocess.run(
            ["sqlite3", "-bail", "-cmd", ".timeout 5000", str(database)],
            input=script,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, f"{result.stderr}\n{script}"
        return result.stdout.strip()

    try:
        with receiver() as hooks:
            daemon = daemons.start(config_for(tmp_path, hooks.url))
            shell(blocks["open"])
            shell(blocks["claim"], **{":job_id": "'go-1'"})
            shell(blocks["claim"], **{":job_id": "'go-2'"})
            shell(blocks["renew"])
            assert shell(blocks["finish"], **{":job_id": "'go-2'", ":status": "'completed'"}) == "1"
            worker.kill()
            worker.wait()
            wait_until(lambda: status_of(database, "go-1") is JobStatus.FAILED, timeout=CHECK + 1)
            assert shell(blocks["renew"]) == "0"  # the session is gone: renewal changes nothing
            assert shell(blocks["finish"], **{":job_id": "'go-1'", ":status": "'completed'"}) == "0"
            assert daemon.stop() == 0
    finally:
        worker.kill()
        worker.wait()
    assert daemon.named("job_recovered")[0]["reason"] == "engine_exited"
    assert status_of(database, "go-1") is JobStatus.FAILED
    assert status_of(database, "go-2") is JobStatus.COMPLETED
