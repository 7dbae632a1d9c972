"""The operator's first steps: `check` before the first run, and the smaller rough edges."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness import run_cli, write_config

from secautod import JobStore


def cli(config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return run_cli(*args, "--config", str(config), env=env)


def test_check_on_a_fresh_install_reports_a_good_config_and_exits_0(tmp_path: Path) -> None:
    """Before the first `run` there is no store yet: that is not an error, and nothing is created."""
    config = write_config(tmp_path)
    result = cli(config, "check")
    assert result.returncode == 0, result.stderr
    assert "config: ok" in result.stdout
    assert "not created yet" in result.stdout
    assert not (tmp_path / "data").exists()
    as_json = json.loads(cli(config, "check", "--json").stdout)
    assert as_json["database_created"] is False


def test_check_refuses_an_unset_webhook_secret_as_run_does(tmp_path: Path) -> None:
    """A secret_env variable that is not set fails `check` with 78, as it fails `run`."""
    hook = {"url": "https://h.example/x", "secret_env": "SECAUTOD_TEST_UNSET_SECRET"}
    config = write_config(tmp_path, webhooks=[hook])
    result = cli(config, "check")
    assert result.returncode == 78
    assert "SECAUTOD_TEST_UNSET_SECRET" in result.stderr


def test_check_refuses_a_backup_directory_that_cannot_be_created(tmp_path: Path) -> None:
    """Below an immutable directory (which permission bits do not show), check exits 78."""
    parent = tmp_path / "frozen"
    parent.mkdir()
    made = subprocess.run(["chattr", "+i", str(parent)], capture_output=True, text=True)
    if made.returncode != 0:
        message = f"chattr +i needs root and a file system that supports it: {made.stderr}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        config = write_config(tmp_path, jobs={"backup_directory": "frozen/backups"})
        result = cli(config, "check")
    finally:
        subprocess.run(["chattr", "-i", str(parent)], check=True)
    assert result.returncode == 78, result.stdout
    assert "jobs.backup_directory" in result.stderr
    assert not (parent / "backups").exists()


def test_corrupt_store_without_backups_says_what_to_do_next(tmp_path: Path) -> None:
    """No backup to restore: the message says to move the damaged file aside or restore a copy."""
    config = write_config(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "jobs.db").write_bytes(b"SQLite format 3\x00" + b"\x13" * 8192)
    result = cli(config, "check")
    assert result.returncode == 74
    assert "No backup found" in result.stderr
    assert "move the damaged file aside" in result.stderr


def test_import_of_a_missing_file_exits_66_and_creates_nothing(tmp_path: Path) -> None:
    """`import-json nope.json` is 'no such file' (66), and no store is created for it."""
    config = write_config(tmp_path)
    result = cli(config, "import-json", str(tmp_path / "nope.json"))
    assert result.returncode == 66, result.stderr
    assert not (tmp_path / "data" / "jobs.db").exists()


def test_with_json_errors_are_json_on_stderr(tmp_path: Path) -> None:
    """A script asking for --json gets its error as one JSON object with the exit status."""
    config = write_config(tmp_path)
    JobStore(tmp_path / "data" / "jobs.db").close()
    result = cli(config, "jobs", "show", "nope", "--json")
    assert result.returncode == 66
    error = json.loads(result.stderr)
    assert error["exit_status"] == 66
    assert "nope" in error["error"]


def test_deleting_a_running_job_asks_for_force(tmp_path: Path) -> None:
    """`jobs delete` of a running job refuses (65) without --force and deletes with it."""
    config = write_config(tmp_path)
    path = tmp_path / "data" / "jobs.db"
    JobStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO jobs (id, status, playbook, context, created_at) "
            "VALUES ('busy', 'running', '{}', '{}', '2026-01-01 00:00:00.000')"
        )
    conn.close()
    refused = cli(config, "jobs", "delete", "busy")
    assert refused.returncode == 65
    assert "--force" in refused.stderr
    forced = cli(config, "jobs", "delete", "busy", "--force")
    assert forced.returncode == 0, forced.stderr


def test_check_counts_one_job_in_the_singular(tmp_path: Path, make_job: Any) -> None:
    """`check` says '1 job', not '1 jobs'."""
    config = write_config(tmp_path)
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        store.save_job(make_job())
    result = cli(config, "check")
    assert result.returncode == 0, result.stderr
    assert ", 1 job," in result.stdout
