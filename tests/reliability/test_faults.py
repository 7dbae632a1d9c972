"""Faults around the running daemon: signals mid-work, full disks, hung endpoints, damage, secrets."""

from __future__ import annotations

import http.server
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from harness import (
    DaemonFactory,
    boot_time,
    bulk_jobs,
    receiver,
    run_cli,
    wait_until,
    write_config,
)

from secautod import JobStore
from secautod.timestamps import utc_now

# Running since before this host booted: the engine is gone, recovered at start-up.
BEFORE_BOOT = boot_time() - timedelta(hours=1)

BIG_JOBS = 200_000


@pytest.fixture(scope="module")
def big_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~300 MB store with 200,000 jobs expired long ago (built once, copied per test)."""
    path = tmp_path_factory.mktemp("big") / "jobs.db"
    JobStore(path).close()
    bulk_jobs(path, BIG_JOBS, status="completed", age_days=90, payload_bytes=1000)
    return path


def install(big_database: Path, tmp_path: Path, *, recent: str) -> Path:
    """Copy the big store into tmp_path/data and mark `recent` maintenance as just done."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    shutil.copy(big_database, data / "jobs.db")
    with JobStore(data / "jobs.db") as store:
        store.state.record_task_success(recent, utc_now(), {})
    return data / "jobs.db"


def expired_left(database: Path) -> int:
    conn = sqlite3.connect(database)
    try:
        return int(conn.execute("SELECT count(*) FROM jobs WHERE id LIKE 'bulk-%'").fetchone()[0])
    finally:
        conn.close()


def test_sigterm_during_a_large_backup(
    big_database: Path, tmp_path: Path, daemons: DaemonFactory
) -> None:
    """SIGTERM mid-backup: exit 0 within the deadline, backup_aborted, no backup file, database intact."""
    database = install(big_database, tmp_path, recent="cleanup")
    config = write_config(tmp_path, shutdown_timeout_seconds=5)
    daemon = daemons.start(config)
    daemon.wait_for_event("backup_started")
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    assert daemon.named("backup_aborted")
    assert not daemon.named("backup_completed")
    leftovers = [path.name for path in database.parent.iterdir() if "backup" in path.name]
    assert leftovers == []
    assert run_cli("check", "--config", str(config)).returncode == 0


def test_sigterm_during_a_long_cleanup_then_resume(
    big_database: Path, tmp_path: Path, daemons: DaemonFactory
) -> None:
    """SIGTERM mid-cleanup: exit 0 promptly, progress kept; the next start finishes the job."""
    database = install(big_database, tmp_path, recent="backup")
    config = write_config(tmp_path, shutdown_timeout_seconds=5)
    daemon = daemons.start(config)
    daemon.wait_for_event("cleanup_started")
    wait_until(lambda: expired_left(database) < BIG_JOBS, what="the first batches")
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    assert daemon.named("cleanup_aborted")
    left = expired_left(database)
    assert 0 < left < BIG_JOBS
    resumed = daemons.start(config)
    completed = resumed.wait_for_event("cleanup_completed", timeout=60)[0]
    assert completed["deleted"] == left
    assert resumed.stop() == 0
    assert expired_left(database) == 0


def test_full_backup_disk_logs_failure_keeps_running_then_recovers(
    tmp_path: Path, daemons: DaemonFactory, small_tmpfs: Any, make_job: Any
) -> None:
    """ENOSPC on the backup disk: backup_failed, nothing left behind, daemon alive; freed space lets the retry succeed."""
    backups = small_tmpfs(tmp_path / "backups", "4m")
    ballast = backups / "ballast"
    ballast.write_bytes(b"\0" * (4 * 1024 * 1024 - 200 * 1024))
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        for _ in range(150):
            store.save_job(make_job(context={"blob": "z" * 4000}))
    config = write_config(
        tmp_path, jobs={"backup_directory": str(backups), "retry_delay_seconds": 0.5}
    )
    daemon = daemons.start(config)
    failure = daemon.wait_for_event("backup_failed")[0]
    assert "full" in failure["error"]
    assert sorted(path.name for path in backups.iterdir()) == ["ballast"]
    assert daemon.process.poll() is None
    ballast.unlink()
    completed = daemon.wait_for_event("backup_completed", timeout=30)[0]
    assert Path(completed["path"]).parent == backups
    assert [path.name for path in backups.iterdir()] == [Path(completed["path"]).name]
    assert daemon.stop() == 0


class HangingHandler(http.server.BaseHTTPRequestHandler):
    """Reads the request and never answers, until released; then accepts (204)."""

    entered = threading.Event()
    release = threading.Event()
    accepted: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not HangingHandler.release.is_set():
            HangingHandler.entered.set()
            HangingHandler.release.wait(60)
            return
        HangingHandler.accepted.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hanging_endpoint() -> Iterator[str]:
    HangingHandler.entered.clear()
    HangingHandler.release.clear()
    HangingHandler.accepted.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HangingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hang"
    HangingHandler.release.set()
    server.shutdown()
    server.server_close()


def test_hung_endpoint_never_delays_shutdown_past_its_deadline(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any, hanging_endpoint: str
) -> None:
    """A webhook that never answers is cut off before shutdown_timeout (exit 0, no thread left); the notification survives."""
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        store.save_job(make_job(id="stuck", status="running", started_at=BEFORE_BOOT))
    config = write_config(
        tmp_path,
        webhooks=[{"url": hanging_endpoint, "timeout_seconds": 60}],
        shutdown_timeout_seconds=2,
    )
    daemon = daemons.start(config)
    assert HangingHandler.entered.wait(20)
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 4
    assert daemon.named("webhook_request_cut")
    assert not daemon.named("shutdown_deadline_exceeded")
    HangingHandler.release.set()  # the endpoint comes back
    daemon = daemons.start(config)
    wait_until(lambda: HangingHandler.accepted, what="delivery after the restart")
    assert daemon.stop() == 0
    assert json.loads(HangingHandler.accepted[0])["job"]["id"] == "stuck"


def test_truncated_wal_keeps_every_complete_transaction(
    tmp_path: Path, daemons: DaemonFactory
) -> None:
    """A WAL cut short (torn write) loses only the torn commit: the daemon starts and the rest is intact."""
    database = tmp_path / "data" / "jobs.db"
    JobStore(database).close()
    script = (
        "import sqlite3, os, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA wal_autocheckpoint = 0')\n"
        "for i in range(200):\n"
        "    c.execute(\"INSERT INTO jobs (id, status, playbook, context, created_at) VALUES (?, 'pending', '{}', '{}', '2026-11-01 00:00:00.000')\", (f'w{i:03d}',))\n"
        "os._exit(0)\n"  # no close: the WAL is left un-checkpointed, as after a crash
    )
    subprocess.run([sys.executable, "-c", script, str(database)], check=True)
    wal = database.with_name("jobs.db-wal")
    size = wal.stat().st_size
    assert size > 100_000
    with wal.open("r+b") as handle:
        handle.truncate(size * 2 // 3 + 1234)  # mid-frame
    daemon = daemons.start(write_config(tmp_path))
    assert daemon.stop() == 0
    conn = sqlite3.connect(database)
    ids = [row[0] for row in conn.execute("SELECT id FROM jobs ORDER BY id")]
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert 100 < len(ids) < 200
    assert ids == [f"w{index:03d}" for index in range(len(ids))]  # a prefix of the commits


def test_damaged_pages_stop_the_daemon_with_74_and_a_restore_hint(
    tmp_path: Path, daemons: DaemonFactory
) -> None:
    """Scribbled b-tree pages make start-up fail with 74, naming the newest backup and `secautod restore`."""
    database = tmp_path / "data" / "jobs.db"
    JobStore(database).close()
    bulk_jobs(database, 5000, status="running", payload_bytes=200)
    config = write_config(tmp_path)
    assert run_cli("backup", "--config", str(config)).returncode == 0
    data = bytearray(database.read_bytes())
    for offset in range(4096 * 2, len(data) - 4096, 4096):
        data[offset + 8 : offset + 200] = b"\xee" * 192
    database.write_bytes(bytes(data))
    result = run_cli("run", "--config", str(config), timeout=30)
    assert result.returncode == 74, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "damaged" in last
    assert "secautod restore" in last
    assert "jobs.db.backup." in last
    assert "Traceback" not in result.stderr


def test_secrets_and_job_context_never_reach_the_logs(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """At debug level, with failing deliveries, neither the HMAC secret nor job context appears in any log line."""
    secret = "hmac-secret-7f3a9c"
    context_marker = "analyst-password-b81e"
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        store.save_job(
            make_job(
                id="sensitive",
                status="running",
                started_at=BEFORE_BOOT,
                context={"credentials": context_marker},
            )
        )
    with receiver(status=500) as hooks:
        config = write_config(
            tmp_path,
            logging={"level": "debug"},
            webhooks=[{"url": hooks.url, "secret_env": "HOOK_SECRET"}],
            webhook_delivery={"retry_initial_seconds": 0.1, "retry_max_seconds": 0.2},
        )
        daemon = daemons.start(config, env={"HOOK_SECRET": secret})
        daemon.wait_for_event("webhook_failed", count=2)
        assert daemon.stop() == 0
    text = daemon.log_path.read_text()
    assert secret not in text
    assert context_marker not in text
    assert "sensitive" in text  # the job id itself is fine to log


def test_overdue_backup_state_survives_a_clock_check(tmp_path: Path) -> None:
    """A last success recorded in the future (clock was ahead) still counts as at most one interval away."""
    from secautod.maintenance import first_run_time

    now = utc_now()
    assert first_run_time(now + timedelta(days=400), timedelta(hours=168), now) == now + timedelta(
        hours=168
    )
