"""The real daemon and CLI with a live store whose index is inconsistent: no backup, and status says so."""

from __future__ import annotations

import json
from pathlib import Path

from damage import INDEX, write_rows_past_an_index
from harness import DaemonFactory, run_cli, write_config

from secautod import JobStore
from secautod.errors import EX_IOERR, EX_NEEDS_ATTENTION


def damaged_installation(tmp_path: Path) -> Path:
    """A config whose store holds rows its `status` index misses; return the config path."""
    config = write_config(tmp_path)
    (tmp_path / "data").mkdir(mode=0o700)
    database = tmp_path / "data" / "jobs.db"
    JobStore(database).close()
    write_rows_past_an_index(database, 5)
    return config


def backup_files(data: Path) -> list[str]:
    """Every backup file, final or partial, in the data directory."""
    return sorted(path.name for path in data.iterdir() if ".backup." in path.name)


def test_daemon_backup_of_a_store_with_a_broken_index_fails_and_status_says_so(
    tmp_path: Path, daemons: DaemonFactory
) -> None:
    """The start-up backup fails verification, leaves no file, the daemon runs on, and status exits 3 naming it."""
    config = damaged_installation(tmp_path)
    daemon = daemons.start(config)
    failed = daemon.wait_for_event("backup_failed")[0]
    assert "failed its integrity check" in failed["error"]
    assert f"missing from index {INDEX}" in failed["error"]
    assert not daemon.named("backup_completed")
    assert backup_files(tmp_path / "data") == []
    assert daemon.process.poll() is None  # a failed backup never stops the daemon

    status = run_cli("status", "--config", str(config), "--json")
    assert status.returncode == EX_NEEDS_ATTENTION, status.stdout + status.stderr
    problems = json.loads(status.stdout)["problems"]
    assert any(
        problem.startswith("last backup attempt failed") and "failed its integrity check" in problem
        for problem in problems
    ), problems
    assert "there is no backup yet" in problems
    assert daemon.stop() == 0


def test_cli_backup_of_a_store_with_a_broken_index_exits_74_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    """`secautod backup` on such a store exits 74 with one line naming the check, and writes nothing."""
    config = damaged_installation(tmp_path)
    result = run_cli("backup", "--config", str(config))
    assert result.returncode == EX_IOERR, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "failed its integrity check" in result.stderr
    assert "secautod check" in result.stderr
    assert backup_files(tmp_path / "data") == []
