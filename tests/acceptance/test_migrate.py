"""`secautod migrate --to postgresql://...`: the SQLite store copied, resumable, verified (SPEC §11)."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import SECAUTOD, run_cli, write_config
from pg_server import admin_connection, scratch_schema

from secautod import Job, JobStatus, JobStore
from secautod.store.records import UnreadableRow

PASSWORD = "hunter2-not-for-output"  # trust auth ignores it; it must never be shown


@pytest.fixture
def target_url() -> Iterator[str]:
    """A PostgreSQL URL (carrying a password) working in a fresh schema, dropped after the test."""
    with scratch_schema() as url:
        assert url is not None
        yield url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def source_store(tmp_path: Path) -> tuple[Path, Path]:
    """Write a config whose SQLite store is tmp_path/data/jobs.db; return (config, database)."""
    config = write_config(tmp_path, jobs={"backup_enabled": False})
    (tmp_path / "data").mkdir(exist_ok=True)
    return config, tmp_path / "data" / "jobs.db"


def fill(database: Path, make_job: Any, count: int) -> None:
    """Store `count` jobs, a third of them completed, in one transaction."""
    statuses = [JobStatus.PENDING, JobStatus.COMPLETED, JobStatus.FAILED]
    with JobStore(database) as store:
        store.import_jobs(make_job(status=statuses[n % 3]) for n in range(count))


def target_rows(url: str) -> list[tuple[Any, ...]]:
    """Every job of the target as stored, in id order."""
    schema = url.rsplit("%3D", 1)[1]
    with admin_connection() as admin:
        admin.execute(f"SET search_path = {schema}")
        return [
            tuple(row)
            for row in admin.execute(
                "SELECT id, status, playbook, context, results, error, created_at, started_at, "
                "completed_at, updated_at FROM jobs ORDER BY id"
            )
        ]


def migrate(config: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("migrate", "--config", str(config), "--to", url, *args, timeout=120)


FOREIGN_ROWS = {  # id: the values of a foreign writer's row that PostgreSQL can hold
    "queued-by-other": "('queued-by-other', 'queued', '{}', '{}', '2026-01-01 00:00:00.000')",
    "not-json": "('not-json', 'pending', 'not json', '{}', '2026-01-01T00:00:00Z')",
}
LEFT_BEHIND = [  # rows that cannot be carried over: a BLOB id, a date nobody reads, bad UTF-8
    "(x'00ff', 'pending', '{}', '{}', '2026-01-01 00:00:00.000')",
    "('no-date', 'pending', '{}', '{}', 'last tuesday')",
    "('bad-utf8', 'pending', CAST(x'7bff7d' AS TEXT), '{}', '2026-01-01 00:00:00.000')",
]


def test_migrate_copies_every_row_it_can_reports_the_others_by_rowid_and_verifies(
    tmp_path: Path, make_job: Any, target_url: str
) -> None:
    """Jobs arrive unchanged, foreign rows as stored; rows PostgreSQL cannot hold are named by rowid and counted; the report verifies."""
    config, database = source_store(tmp_path)
    fill(database, make_job, 250)
    with sqlite3.connect(database) as conn:
        for values in [*FOREIGN_ROWS.values(), *LEFT_BEHIND]:
            conn.execute(
                f"INSERT INTO jobs (id, status, playbook, context, created_at) VALUES {values}"
            )
        left_rowids = [
            row[0] for row in conn.execute("SELECT rowid FROM jobs ORDER BY rowid DESC LIMIT 3")
        ]
    result = migrate(config, target_url, "--batch", "40", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["copied"], report["already_present"], report["unreadable"]) == (252, 0, 3)
    assert sorted(row["rowid"] for row in report["unreadable_rows"]) == sorted(left_rowids)
    assert report["verified"] is True
    assert report["source"] == report["target"]
    assert report["target"]["by_status"] == {
        "completed": 83,
        "failed": 83,
        "pending": 85,
        "queued": 1,
    }
    events = [json.loads(line) for line in result.stderr.splitlines()]
    copy_events = [e for e in events if e["event"] == "migrate_progress" and e["phase"] == "copy"]
    assert len(copy_events) == 7
    assert copy_events[-1]["done"] == 255
    assert PASSWORD not in result.stdout + result.stderr
    assert "***" in report["to"]
    with JobStore(database) as source, JobStore(target_url) as target:
        jobs = [entry for entry in source.list_job_entries() if isinstance(entry, Job)]
        assert len(jobs) == 250
        for job in jobs:
            assert target.get_job(job.id) == job
        for job_id in FOREIGN_ROWS:  # as unreadable to secautod there as here, not lost
            assert isinstance(target.load_job_entry(job_id), UnreadableRow)
    stored = {row[0]: row for row in target_rows(target_url)}
    assert stored["not-json"][2] == "not json"
    assert stored["queued-by-other"][1] == "queued"


def test_a_second_migrate_changes_nothing(tmp_path: Path, make_job: Any, target_url: str) -> None:
    """Running migrate again copies nothing, skips every job, and leaves the target byte-for-byte as it was."""
    config, database = source_store(tmp_path)
    fill(database, make_job, 120)
    assert migrate(config, target_url, "--batch", "50").returncode == 0
    before = target_rows(target_url)
    again = migrate(config, target_url, "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["copied"], report["already_present"], report["verified"]) == (0, 120, True)
    assert target_rows(target_url) == before


def test_a_migrate_killed_mid_way_keeps_its_batches_and_a_rerun_finishes(
    tmp_path: Path, make_job: Any, target_url: str
) -> None:
    """After SIGKILL between batches the committed batches stay; a re-run copies the rest and verifies."""
    config, database = source_store(tmp_path)
    total = 30_000
    fill(database, make_job, total)
    command = [SECAUTOD, "migrate", "--config", str(config), "--to", target_url, "--batch", "50"]
    with subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:
            if '"migrate_progress"' in line:  # one batch committed
                process.send_signal(signal.SIGKILL)
                break
        process.kill()  # no-op once killed; ends the process if it never reported
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    kept = len(target_rows(target_url))
    assert 50 <= kept < total
    assert kept % 50 == 0
    rerun = migrate(config, target_url, "--json")
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert (report["copied"], report["already_present"]) == (total - kept, kept)
    assert report["verified"] is True
    assert report["target"]["jobs"] == total


def test_a_target_that_differs_fails_the_verification_with_one_line(
    tmp_path: Path, make_job: Any, target_url: str
) -> None:
    """A target holding a job the source lacks (or another status) fails the check: one line, exit 74."""
    config, database = source_store(tmp_path)
    fill(database, make_job, 30)
    with JobStore(target_url) as target:
        target.save_job(make_job(id="only-in-target"))
        target.save_job(make_job(id="job-00001", status=JobStatus.RUNNING))
    result = migrate(config, target_url)
    assert result.returncode == 74
    (line,) = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert line.startswith("secautod: the copy in postgresql://postgres:***@")
    assert "does not match the source" in line
    assert "id checksums differ" in line
    assert "pending 10 vs 10" not in line
    assert "running 0 vs 1" in line
    assert PASSWORD not in result.stdout + result.stderr


def test_an_unreachable_target_is_one_line_and_exit_74(tmp_path: Path, make_job: Any) -> None:
    """A server that does not answer is one line naming the URL without its password, exit 74."""
    config, database = source_store(tmp_path)
    fill(database, make_job, 3)
    result = migrate(config, f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test")
    assert result.returncode == 74
    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1
    assert "postgresql://postgres:***@127.0.0.1:1/test" in lines[0]
    assert PASSWORD not in result.stdout + result.stderr


def run_with_terminal_stderr(*args: str) -> tuple[int, str, str]:
    """Run secautod with stderr on a pseudo-terminal and stdout on a pipe."""
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


def test_migrate_draws_a_progress_bar_on_a_terminal(
    tmp_path: Path, make_job: Any, target_url: str
) -> None:
    """On a terminal stderr migrate draws a bar instead of JSON events; the summary goes to stdout."""
    config, database = source_store(tmp_path)
    fill(database, make_job, 3000)
    status, stdout, terminal = run_with_terminal_stderr(
        "migrate", "--config", str(config), "--to", target_url, "--batch", "100"
    )
    assert status == 0, terminal
    assert "migrate: copy [" in terminal
    assert "migrate_progress" not in terminal
    assert "copied 3000 jobs to postgresql://postgres:***@" in stdout
    assert "verified: 3000 jobs (completed 1000, failed 1000, pending 1000)" in stdout
    assert PASSWORD not in stdout + terminal


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--to", f"mysql://root:{PASSWORD}@db/x"], "expected a postgresql://"),
        (["--to", "postgresql://db/x", "--batch", "0"], "--batch"),
        (["--to", "postgresql://db/x", "--batch", "100001"], "--batch"),
    ],
)
def test_bad_migrate_arguments_are_usage_errors(args: list[str], complaint: str) -> None:
    """A --to that is not a PostgreSQL URL or a batch out of 1..100000 exits 2, never echoing the URL."""
    result = run_cli("migrate", *args)
    assert result.returncode == 2
    assert complaint in result.stderr
    assert PASSWORD not in result.stderr


def test_migrate_help_and_readme_name_the_same_bookkeeping_left_behind() -> None:
    """`migrate --help` says what the README says: only jobs move, secautod's bookkeeping stays."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Moving a SQLite store to PostgreSQL", 1)[1].split("\n## ", 1)[0]
    shown = run_cli("migrate", "--help")
    assert shown.returncode == 0
    left_behind = re.compile(
        r"Only the `?jobs`? table is copied[.:] secautod's own bookkeeping \((.+?)\)"
    )
    from_readme = left_behind.search(" ".join(section.split()))
    from_help = left_behind.search(" ".join(shown.stdout.split()))
    assert from_readme is not None
    assert from_help is not None, shown.stdout
    assert from_help.group(1) == from_readme.group(1)
    assert "webhook outbox" in from_help.group(1)


def test_migrate_help_shows_an_example() -> None:
    """`secautod migrate --help` shows the example and the exit statuses, like every command."""
    result = run_cli("migrate", "--help")
    assert result.returncode == 0
    assert "example:" in result.stdout
    assert "--to URL" in result.stdout
    assert "74" in result.stdout
