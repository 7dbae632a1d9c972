"""The real daemon's Prometheus metrics: each family matches what the store holds."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import (
    DaemonFactory,
    boot_time,
    bulk_jobs,
    free_port,
    receiver,
    run_cli,
    wait_until,
    write_config,
)
from scrape import fresh, parse, scrape, settled, value

from secautod import JobStatus, JobStore, __version__
from secautod.timestamps import utc_now

FAST = {"refresh_seconds": 0.1}


def metrics_config(tmp_path: Path, port: int, **sections: Any) -> Path:
    metrics = {"listen": f"127.0.0.1:{port}", **FAST, **sections.pop("metrics", {})}
    return write_config(tmp_path, metrics=metrics, **sections)


def test_jobs_per_status_and_oldest_waits_match_the_store(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """secautod_jobs{status} counts each status and the age gauges follow the oldest pending and running job."""
    port = free_port()
    daemon = daemons.start(metrics_config(tmp_path, port))
    now = utc_now()
    counts = {"pending": 3, "running": 2, "completed": 4, "failed": 1, "cancelled": 5}
    with JobStore(tmp_path / "data" / "jobs.db") as store:  # another writer, as the engine
        for status, count in counts.items():
            for index in range(count):
                store.save_job(
                    make_job(id=f"{status}-{index}", created_at=now - timedelta(hours=2 + index))
                )
                if status != "pending":
                    store.update_job_status(
                        f"{status}-{index}", status, now=now - timedelta(minutes=30 + index)
                    )
        stats = store.get_stats()
    samples = settled(port, "secautod_jobs", 5, status="cancelled")
    for status in JobStatus:
        assert value(samples, "secautod_jobs", status=status.value) == stats.by_status[status]
    pending_age = value(samples, "secautod_oldest_pending_job_age_seconds")
    running_age = value(samples, "secautod_longest_running_job_age_seconds")
    assert pending_age is not None
    assert running_age is not None
    assert 4 * 3600 <= pending_age < 4 * 3600 + 60  # the oldest pending job is 4 h old
    assert 31 * 60 <= running_age < 31 * 60 + 60  # the longest running one started 31 min ago
    assert value(samples, "secautod_build_info", version=__version__, python=_python()) == 1
    assert value(samples, "secautod_engine_sessions") == 0
    assert daemon.stop() == 0


def _python() -> str:
    import platform

    return platform.python_version()


def test_backup_and_file_sizes_match_the_files(tmp_path: Path, daemons: DaemonFactory) -> None:
    """After the first backup, its time, duration and size, and the database and WAL sizes, match the files and the store."""
    port = free_port()
    daemon = daemons.start(metrics_config(tmp_path, port))
    done = daemon.wait_for_event("backup_completed")[0]
    data = tmp_path / "data"
    backup = Path(done["path"])
    with JobStore(data / "jobs.db") as store:
        run = store.state.task_runs()["backup"]
    assert run.last_success_at is not None
    # The file is published before the run is recorded; a refresh between the
    # two shows the new size with the old time, so wait for both.
    samples = wait_until(
        lambda: (
            (samples := scrape(port))
            and value(samples, "secautod_backup_newest_size_bytes") == backup.stat().st_size
            and value(samples, "secautod_maintenance_last_success_timestamp_seconds", task="backup")
            and samples
        ),
        what="the newest backup's size and the backup's success time",
    )
    success = value(samples, "secautod_maintenance_last_success_timestamp_seconds", task="backup")
    assert success == pytest.approx(run.last_success_at.timestamp(), abs=0.001)
    duration = value(samples, "secautod_maintenance_last_duration_seconds", task="backup")
    assert duration == pytest.approx(done["duration_ms"] / 1000, abs=0.001)
    assert value(samples, "secautod_maintenance_last_run_failed", task="backup") == 0
    assert value(samples, "secautod_maintenance_interval_seconds", task="backup") == 168 * 3600
    assert value(samples, "secautod_maintenance_failures_total", task="backup") == 0
    database, wal = data / "jobs.db", data / "jobs.db-wal"
    # Start-up's writes are over; the figures catch up with the files within a refresh.
    wait_until(
        lambda: (
            (samples := scrape(port))
            and value(samples, "secautod_database_size_bytes") == database.stat().st_size
            and value(samples, "secautod_database_wal_size_bytes") == wal.stat().st_size
        ),
        what="database and WAL sizes as on disk",
    )
    assert daemon.stop() == 0


def test_cleanup_deleted_count_matches_the_store(tmp_path: Path, daemons: DaemonFactory) -> None:
    """A cleanup that deletes K old jobs shows K in secautod_jobs_deleted_total and its run as a success."""
    JobStore(tmp_path / "data" / "jobs.db").close()
    bulk_jobs(tmp_path / "data" / "jobs.db", 37, age_days=90)
    port = free_port()
    daemon = daemons.start(metrics_config(tmp_path, port))
    done = daemon.wait_for_event("cleanup_completed")[0]
    assert done["deleted"] == 37
    samples = fresh(port)
    assert value(samples, "secautod_jobs_deleted_total") == 37
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        run = store.state.task_runs()["cleanup"]
        assert store.get_stats().total == 0
    assert run.last_result["deleted"] == 37
    assert run.last_success_at is not None
    assert value(
        samples, "secautod_maintenance_last_success_timestamp_seconds", task="cleanup"
    ) == pytest.approx(run.last_success_at.timestamp(), abs=0.001)
    assert value(samples, "secautod_jobs", status="completed") == 0
    assert daemon.stop() == 0


def test_recovery_and_webhook_refused_then_accepted(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """A recovered job counts once under its reason; a refused then accepted delivery counts one failure and one success, and the outbox drains."""
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        before_boot = boot_time() - timedelta(hours=1)
        store.save_job(make_job(id="interrupted", status="running", started_at=before_boot))
    port = free_port()
    with receiver(status=503) as hooks:
        config = metrics_config(
            tmp_path,
            port,
            webhooks=[{"url": hooks.url}],
            webhook_delivery={"retry_initial_seconds": 1, "retry_max_seconds": 1},
        )
        daemon = daemons.start(config)
        daemon.wait_for_event("webhook_failed")
        settled(port, "secautod_webhook_deliveries_total", 1, result="failed")
        endpoint = hooks.url
        # The outbox is a figure, read in the background: wait for a refresh that saw it.
        samples = settled(port, "secautod_webhook_outbox_notifications", 1, endpoint=endpoint)
        assert value(samples, "secautod_webhook_deliveries_total", result="delivered") == 0
        hooks.status = 200
        wait_until(lambda: hooks.deliveries, what="the delivery once the endpoint accepts")
        settled(port, "secautod_webhook_deliveries_total", 1, result="delivered")
        samples = fresh(port)
        assert value(samples, "secautod_webhook_deliveries_total", result="failed") == 1
        assert value(samples, "secautod_webhook_outbox_notifications", endpoint=endpoint) is None
        assert daemon.stop() == 0
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        recovered = store.get_job("interrupted")
        assert store.state.outbox_summary() == []
    assert recovered.status == JobStatus.FAILED
    assert value(samples, "secautod_jobs_recovered_total", reason="host_rebooted") == 1
    assert value(samples, "secautod_jobs_recovered_total", reason="lease_expired") == 0
    assert value(samples, "secautod_jobs", status="failed") == 1


def test_a_failing_backup_is_counted_and_flagged(tmp_path: Path, daemons: DaemonFactory) -> None:
    """A backup that fails increments secautod_maintenance_failures_total and sets last_run_failed, as the store records."""
    backups = tmp_path / "backups"
    backups.mkdir()
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        store.state.record_task_success("backup", utc_now(), {"duration_ms": 5})
    port = free_port()
    config = metrics_config(
        tmp_path, port, jobs={"backup_directory": "backups", "backup_interval": 0.0005}
    )
    daemon = daemons.start(config)
    backups.rmdir()
    backups.write_text("not a directory any more")
    daemon.wait_for_event("backup_failed")
    samples = settled(port, "secautod_maintenance_last_run_failed", 1, task="backup")
    failures = value(samples, "secautod_maintenance_failures_total", task="backup")
    assert failures is not None
    assert failures >= 1
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        assert store.state.task_runs()["backup"].last_error
    assert daemon.stop() == 0


def test_exposition_passes_promtool_check_metrics(
    tmp_path: Path, daemons: DaemonFactory, promtool: str
) -> None:
    """`promtool check metrics` finds nothing to fault in the served exposition."""
    port = free_port()
    daemon = daemons.start(metrics_config(tmp_path, port))
    settled(port, "secautod_store_check_ok", 1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert daemon.stop() == 0


def test_textfile_is_written_atomically_and_world_readable(
    tmp_path: Path, daemons: DaemonFactory
) -> None:
    """metrics.textfile holds the same families, mode 0644 even under umask 077, with no temporary file left."""
    textfile = tmp_path / "textfile" / "secautod.prom"
    textfile.parent.mkdir()
    config = write_config(tmp_path, metrics={"textfile": str(textfile), **FAST})
    old_umask = os.umask(0o077)
    try:
        daemon = daemons.start(config)
    finally:
        os.umask(old_umask)
    wait_until(
        lambda: textfile.exists() and "secautod_store_check_ok 1.0" in textfile.read_text(),
        what="a textfile with the store check",
    )
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
    samples = parse(textfile.read_text())
    assert value(samples, "secautod_jobs", status="pending") == 0
    assert daemon.stop() == 0
    assert [path.name for path in textfile.parent.iterdir()] == ["secautod.prom"]


def test_a_port_in_use_fails_start_up_with_one_line_and_78(tmp_path: Path) -> None:
    """A metrics.listen port another process holds stops the daemon with exit 78 and one error naming the address."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = metrics_config(tmp_path, port)
        result = run_cli("run", "--config", str(config))
    assert result.returncode == 78
    errors = [json.loads(line) for line in result.stderr.splitlines() if '"error"' in line]
    failed = [entry for entry in errors if entry["event"] == "daemon_failed"]
    assert len(failed) == 1
    assert failed[0]["error"] == (
        f"metrics.listen: cannot listen on 127.0.0.1:{port}: "
        "the port is already in use by another process"
    )


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("127.0.0.1", "expected host:port"),
        ("127.0.0.1:99999", "expected host:port"),
        ("::1:9464", "write an IPv6 address in brackets"),
    ],
)
def test_a_malformed_listen_address_is_a_config_error(
    tmp_path: Path, listen: str, problem: str
) -> None:
    """A metrics.listen that is no host:port is refused at load with exit 78, naming the key."""
    config = write_config(tmp_path, metrics={"listen": listen})
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 78
    assert "metrics.listen:" in result.stderr
    assert problem in result.stderr


def test_ipv6_listen_address_serves(tmp_path: Path, daemons: DaemonFactory) -> None:
    """metrics.listen in brackets ([::1]:port) serves /metrics over IPv6."""
    if not socket.has_ipv6 or not _ipv6_loopback():
        pytest.fail("no IPv6 loopback") if os.environ.get("CI") else pytest.skip("no IPv6 loopback")
    port = free_port()
    daemon = daemons.start(write_config(tmp_path, metrics={"listen": f"[::1]:{port}", **FAST}))
    text = wait_until(lambda: _get(f"http://[::1]:{port}/metrics"), what="an IPv6 scrape")
    assert "secautod_build_info" in text
    assert daemon.stop() == 0


def test_reload_rebinds_a_changed_listen_address(tmp_path: Path, daemons: DaemonFactory) -> None:
    """SIGHUP with a new metrics.listen serves on the new port and releases the old one."""
    first, second = free_port(), free_port()
    daemon = daemons.start(metrics_config(tmp_path, first))
    assert scrape(first)
    metrics_config(tmp_path, second)
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for_event("reload_completed")
    assert value(scrape(second), "secautod_build_info", version=__version__, python=_python()) == 1
    with pytest.raises(urllib.error.URLError):
        scrape(first)
    assert daemon.stop() == 0


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http only
            return str(response.read().decode())
    except OSError:
        return None
