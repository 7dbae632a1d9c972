"""The installed `secautod` command line against real files (and a real daemon)."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import DaemonFactory, run_cli, wait_until, write_config

from secautod import JobStatus, JobStore
from secautod.timestamps import utc_now


@pytest.fixture
def installation(tmp_path: Path, make_job: Any) -> Path:
    """A config plus a store holding jobs of every status and age."""
    config = write_config(tmp_path, jobs={"backup_enabled": True})
    now = utc_now()
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        store.save_job(
            make_job(
                id="fresh-ok",
                status="completed",
                playbook={"name": "triage"},
                created_at=now - timedelta(hours=3),
                completed_at=now - timedelta(hours=2),
            )
        )
        store.save_job(
            make_job(
                id="fresh-bad",
                status="failed",
                error="step 2 timed out",
                created_at=now - timedelta(hours=5),
                completed_at=now - timedelta(hours=4),
            )
        )
        store.save_job(
            make_job(
                id="old-ok",
                status="completed",
                created_at=now - timedelta(days=90),
                completed_at=now - timedelta(days=89),
            )
        )
        store.save_job(
            make_job(id="old-cancel", status="cancelled", created_at=now - timedelta(days=60))
        )
        store.save_job(
            make_job(id="queued", status="pending", created_at=now - timedelta(minutes=1))
        )
    return config


def cli(config: Path, *args: str) -> Any:
    return run_cli(*args, "--config", str(config))


def test_cli_commands_run_without_the_daemons_webhook_secret(tmp_path: Path) -> None:
    """An operator's shell lacks the service's secret: status and jobs work; run refuses."""
    hook = {"url": "https://h.example/x", "secret_env": "SECAUTOD_TEST_UNSET_SECRET"}
    config = write_config(tmp_path, webhooks=[hook])
    JobStore(tmp_path / "data" / "jobs.db").close()
    for command, expected in ((["status"], 3), (["jobs", "list"], 0), (["jobs", "stats"], 0)):
        result = cli(config, *command)  # status: 3, no daemon running
        assert result.returncode == expected, (command, result.stderr)
    result = cli(config, "run")
    assert result.returncode == 78
    assert "SECAUTOD_TEST_UNSET_SECRET is not set or empty" in result.stderr


def test_jobs_list_table_is_aligned_newest_first_with_relative_ages(installation: Path) -> None:
    """The default table lists ids newest first with statuses and ages like '3h ago'."""
    result = cli(installation, "jobs", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "status", "created", "updated", "playbook", "error"]
    ids = [line.split()[0] for line in lines[1:]]
    assert ids == ["queued", "fresh-ok", "fresh-bad", "old-cancel", "old-ok"]
    assert "3h ago" in lines[2]
    assert lines[1].index("pending") == lines[0].index("status")  # aligned columns
    assert result.stderr == ""


def test_jobs_list_filters_and_json(installation: Path) -> None:
    """--status/--since/--limit filter; --json gives stable fields and ISO 8601 UTC times."""
    result = cli(installation, "jobs", "list", "--status", "completed", "--since", "7d", "--json")
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)
    assert [job["id"] for job in jobs] == ["fresh-ok"]
    assert set(jobs[0]) == {
        "id",
        "status",
        "playbook",
        "context",
        "results",
        "error",
        "created_at",
        "started_at",
        "completed_at",
        "updated_at",
        "claimed_by",
    }
    assert jobs[0]["created_at"].endswith("Z")
    limited = json.loads(cli(installation, "jobs", "list", "--limit", "2", "--json").stdout)
    assert [job["id"] for job in limited] == ["queued", "fresh-ok"]
    page_two = json.loads(
        cli(installation, "jobs", "list", "--limit", "2", "--after", "fresh-ok", "--json").stdout
    )
    assert [job["id"] for job in page_two] == ["fresh-bad", "old-cancel"]


def test_jobs_show_and_missing_id(installation: Path) -> None:
    """jobs show prints one job (JSON with --json); a missing id exits 66 naming it."""
    shown = cli(installation, "jobs", "show", "fresh-bad")
    assert shown.returncode == 0
    assert "step 2 timed out" in shown.stdout
    as_json = json.loads(cli(installation, "jobs", "show", "fresh-bad", "--json").stdout)
    assert as_json["status"] == "failed"
    missing = cli(installation, "jobs", "show", "no-such-job")
    assert missing.returncode == 66
    assert missing.stderr.strip() == "secautod: no job with id 'no-such-job'"
    assert missing.stdout == ""


def test_jobs_stats_bar_chart_and_json(installation: Path) -> None:
    """jobs stats shows counts per status with bars and the success rate; --json the same numbers."""
    text = cli(installation, "jobs", "stats").stdout
    assert "completed  2" in text
    assert "success rate: 66.7%" in text
    completed_line = next(line for line in text.splitlines() if line.startswith("completed"))
    pending_line = next(line for line in text.splitlines() if line.startswith("pending"))
    assert len(completed_line) > len(pending_line)  # a longer bar for the larger count
    stats = json.loads(cli(installation, "jobs", "stats", "--json").stdout)
    assert stats["total"] == 5
    assert stats["by_status"] == {
        "pending": 1,
        "running": 0,
        "completed": 2,
        "failed": 1,
        "cancelled": 1,
    }
    assert stats["success_rate"] == pytest.approx(2 / 3)


def test_jobs_delete(installation: Path) -> None:
    """jobs delete removes the job; deleting it again exits 66."""
    assert cli(installation, "jobs", "delete", "queued").returncode == 0
    again = cli(installation, "jobs", "delete", "queued")
    assert again.returncode == 66
    assert "queued" in again.stderr


def test_cleanup_dry_run_then_real(installation: Path) -> None:
    """--dry-run says what would go and deletes nothing; the real run deletes exactly that."""
    preview = cli(installation, "cleanup", "--dry-run", "--json")
    assert json.loads(preview.stdout)["would_delete"] == 2
    assert len(json.loads(cli(installation, "jobs", "list", "--json").stdout)) == 5
    done = cli(installation, "cleanup")
    assert done.returncode == 0
    assert "deleted 2 finished job(s) older than 30 days" in done.stdout
    remaining = {
        job["id"] for job in json.loads(cli(installation, "jobs", "list", "--json").stdout)
    }
    assert remaining == {"queued", "fresh-ok", "fresh-bad"}


def test_backup_check_and_restore_round_trip(installation: Path, tmp_path: Path) -> None:
    """backup writes a verified file; restore brings its content back and keeps the old file aside."""
    backup = json.loads(cli(installation, "backup", "--json").stdout)
    assert Path(backup["path"]).exists()
    assert cli(installation, "jobs", "delete", "fresh-ok").returncode == 0
    checked = cli(installation, "check")
    assert checked.returncode == 0
    assert "database: ok" in checked.stdout
    restored = cli(installation, "restore", "--json")
    assert restored.returncode == 0, restored.stderr
    report = json.loads(restored.stdout)
    assert report["restored_from"] == backup["path"]
    assert Path(report["previous_database"]).name.startswith("jobs.db.pre-restore-")
    ids = {job["id"] for job in json.loads(cli(installation, "jobs", "list", "--json").stdout)}
    assert "fresh-ok" in ids
    with JobStore(Path(report["previous_database"]), create=False) as previous:
        assert previous.load_job("fresh-ok") is None


def test_restore_on_a_fresh_machine_creates_the_data_directory(
    installation: Path, tmp_path: Path
) -> None:
    """Restoring where no data directory exists yet creates it (0700) and restores into it."""
    assert cli(installation, "backup").returncode == 0
    (backup,) = (tmp_path / "data").glob("jobs.db.backup.*")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    config = write_config(fresh, data_directory="newdata")
    result = cli(config, "restore", str(backup))
    assert result.returncode == 0, result.stderr
    assert (fresh / "newdata").stat().st_mode & 0o777 == 0o700
    with JobStore(fresh / "newdata" / "jobs.db") as store:
        assert store.get_stats().total == 5


def test_restore_refuses_a_corrupt_backup_and_keeps_the_database(
    installation: Path, tmp_path: Path
) -> None:
    """A damaged backup is refused (74) before anything is touched (the lock file aside)."""
    bad = tmp_path / "data" / "jobs.db.backup.20991231-000000"
    bad.write_bytes(b"SQLite format 3\x00" + b"\x13" * 8192)
    before = sorted([*(path.name for path in (tmp_path / "data").iterdir()), "secautod.lock"])
    result = cli(installation, "restore", bad.name)
    assert result.returncode == 74
    assert bad.name in result.stderr
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == before
    assert len(json.loads(cli(installation, "jobs", "list", "--json").stdout)) == 5


def test_restore_refuses_while_a_daemon_runs(
    installation: Path, daemons: DaemonFactory, tmp_path: Path
) -> None:
    """restore exits 75 naming the daemon's pid while one holds the lock; the database is untouched."""
    daemon = daemons.start(installation)
    wait_until(lambda: list((tmp_path / "data").glob("jobs.db.backup.*")), what="a backup")
    result = cli(installation, "restore")
    assert result.returncode == 75
    assert f"pid {daemon.process.pid}" in result.stderr
    assert not list((tmp_path / "data").glob("*pre-restore*"))
    assert daemon.stop() == 0


def test_read_and_maintenance_commands_work_while_the_daemon_runs(
    installation: Path, daemons: DaemonFactory
) -> None:
    """jobs list/show/stats, status, backup and cleanup all work beside a running daemon."""
    daemon = daemons.start(installation)
    assert cli(installation, "jobs", "list").returncode == 0
    assert cli(installation, "jobs", "show", "fresh-ok").returncode == 0
    assert cli(installation, "jobs", "stats").returncode == 0
    assert cli(installation, "backup").returncode == 0
    assert cli(installation, "cleanup").returncode == 0
    status = cli(installation, "status", "--json")
    report = json.loads(status.stdout)
    assert report["daemon_pid"] == daemon.process.pid
    assert status.returncode == 0, report["problems"]
    assert daemon.stop() == 0


def test_status_exits_3_without_a_daemon(installation: Path) -> None:
    """status names the problem and exits 3 when no daemon runs (a health check)."""
    result = cli(installation, "status")
    assert result.returncode == 3
    assert "no secautod daemon is running" in result.stdout
    assert "webhooks:" in result.stdout


def test_status_reports_overdue_backup_and_undelivered_notifications(
    installation: Path, tmp_path: Path, daemons: DaemonFactory
) -> None:
    """status flags a backup older than its interval and notifications stuck after failures."""
    daemon = daemons.start(installation)
    daemon.wait_for_event("backup_completed")
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        store.state.record_task_success("backup", utc_now() - timedelta(days=30), {})
        store.save_job(store.get_job("queued"))
        conn = sqlite3.connect(store.path)
        conn.execute(
            "INSERT INTO webhook_outbox (endpoint, event, job_id, payload, created_at, attempts, next_attempt_at) VALUES ('https://h.example/x', 'job_recovered', 'queued', '{}', '2026-01-01 00:00:00.000', 4, '2099-01-01 00:00:00.000')"
        )
        conn.commit()
        conn.close()
    result = cli(installation, "status", "--json")
    assert result.returncode == 3
    report = json.loads(result.stdout)
    assert any("backup is overdue" in problem for problem in report["problems"])
    assert any("webhook notification" in problem for problem in report["problems"])
    assert report["undelivered_notifications"] == {"https://h.example/x": 1}
    assert report["newest_backup"]["verified"] is True
    assert daemon.stop() == 0


def test_check_reports_a_damaged_database_with_74(installation: Path, tmp_path: Path) -> None:
    """check exits 74 with one line naming the backup to restore when the database is damaged."""
    database = tmp_path / "data" / "jobs.db"
    with JobStore(database) as store:
        for index in range(300):
            store.save_job(
                store.get_job("queued").__class__.create({"n": index}, {"blob": "x" * 500})
            )
    data = bytearray(database.read_bytes())
    page = 4096
    for offset in range(page * 3, len(data) - page, page * 2):
        data[offset + 100 : offset + 400] = b"\xa5" * 300  # scribble over b-tree pages
    assert cli(installation, "backup").returncode == 0
    database.write_bytes(bytes(data))
    result = cli(installation, "check")
    assert result.returncode == 74
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert "secautod restore" in result.stderr  # points at the newest good backup


def test_every_command_has_help_with_an_example() -> None:
    """--help works everywhere and shows an example and the exit statuses."""
    commands = [
        ["run"],
        ["jobs", "list"],
        ["jobs", "show"],
        ["jobs", "stats"],
        ["jobs", "delete"],
        ["backup"],
        ["restore"],
        ["cleanup"],
        ["check"],
        ["import-json"],
        ["status"],
    ]
    for command in commands:
        result = run_cli(*command, "--help")
        assert result.returncode == 0, command
        assert "example:" in result.stdout, command
        assert "--config" in result.stdout, command
        assert "78" in result.stdout, command
    top = run_cli("--help")
    assert top.returncode == 0
    assert "import-json" in top.stdout
    version = run_cli("--version")
    assert version.stdout.startswith("secautod ")


def test_bad_arguments_exit_2_with_usage(installation: Path) -> None:
    """An invalid option value is a usage error (exit 2), not a traceback."""
    result = cli(installation, "jobs", "list", "--since", "last tuesday")
    assert result.returncode == 2
    assert "neither an ISO 8601 time" in result.stderr
    bad_status = cli(installation, "jobs", "list", "--status", "done; drop")
    assert bad_status.returncode == 2


def test_read_commands_on_a_missing_store_do_not_create_one(tmp_path: Path) -> None:
    """jobs list without a store says so (74) and creates nothing."""
    config = write_config(tmp_path)
    result = cli(config, "jobs", "list")
    assert result.returncode == 74
    assert "no job store at" in result.stderr
    assert not (tmp_path / "data").exists()


def test_pending_recovered_status_values_are_known(installation: Path) -> None:
    """The status filter accepts every JobStatus value."""
    for status in JobStatus:
        assert cli(installation, "jobs", "list", "--status", status.value).returncode == 0


def run_with_terminal_stderr(*args: str) -> tuple[int, str, str]:
    """Run secautod with stderr on a pseudo-terminal and stdout on a pipe."""
    import os
    import pty
    import subprocess

    from harness import SECAUTOD

    leader, follower = pty.openpty()
    with subprocess.Popen(
        [SECAUTOD, *args], stdout=subprocess.PIPE, stderr=follower, text=True
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        stdout = process.stdout.read() if process.stdout else ""
        status = process.wait(60)
    os.close(leader)
    return status, stdout, b"".join(chunks).decode(errors="replace")


def test_long_operations_show_progress_only_on_a_terminal(tmp_path: Path) -> None:
    """cleanup, backup and import-json draw progress on a terminal stderr and print nothing there when piped."""
    from harness import bulk_jobs

    config = write_config(tmp_path)
    JobStore(tmp_path / "data" / "jobs.db").close()
    bulk_jobs(tmp_path / "data" / "jobs.db", 30_000, age_days=90)
    status, stdout, terminal = run_with_terminal_stderr("cleanup", "--config", str(config))
    assert status == 0
    assert "cleanup: " in terminal
    assert "deleted" in terminal
    assert "deleted 30000 finished job(s)" in stdout  # the result itself still goes to stdout
    status, _, terminal = run_with_terminal_stderr("backup", "--config", str(config))
    assert status == 0
    assert "backup: " in terminal
    piped = cli(config, "backup")
    assert piped.returncode == 0
    assert piped.stderr == ""


def test_status_never_shows_webhook_credentials(installation: Path, tmp_path: Path) -> None:
    """Undelivered notifications are listed by endpoint without user info or query tokens."""
    conn = sqlite3.connect(tmp_path / "data" / "jobs.db")
    conn.execute(
        "INSERT INTO webhook_outbox (endpoint, event, job_id, payload, created_at, attempts, next_attempt_at) VALUES ('https://hookuser:s3cr3t@h.example/hook?token=abc123', 'job_recovered', 'queued', '{}', '2026-01-01 00:00:00.000', 2, '2099-01-01 00:00:00.000')"
    )
    conn.commit()
    conn.close()
    for args in (("status",), ("status", "--json")):
        result = cli(installation, *args)
        assert "h.example/hook" in result.stdout
        assert "s3cr3t" not in result.stdout
        assert "abc123" not in result.stdout


def test_out_of_range_times_are_usage_errors(installation: Path) -> None:
    """--since far beyond the calendar is a usage error (2), not a crash."""
    for value in ("999999999d", "0001-01-01T00:00:00+01:00"):
        result = cli(installation, "jobs", "list", "--since", value)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("limit", ["0", "-1", "ten", str(2**63), "9" * 30])
def test_out_of_range_limits_are_usage_errors(installation: Path, limit: str) -> None:
    """--limit outside 1..2**63-1 is a one-line usage error (2), never a traceback."""
    result = cli(installation, "jobs", "list", "--limit", limit)
    assert result.returncode == 2
    assert "--limit" in result.stderr
    assert "Traceback" not in result.stderr


def test_largest_limit_lists_everything(installation: Path) -> None:
    """The largest limit SQLite can take lists every job."""
    result = cli(installation, "jobs", "list", "--limit", str(2**63 - 1), "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 5
