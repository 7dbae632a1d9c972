"""`secautod restore` as an operator runs it: the lock first, and no files left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import run_cli, write_config

from secautod import JobStore
from secautod.backup import PRE_RESTORE_KEEP
from secautod.lock import DirectoryLock


def cli(config: Path, *args: str) -> Any:
    return run_cli(*args, "--config", str(config))


def test_restore_answers_75_before_verifying_while_the_lock_is_held(tmp_path: Path) -> None:
    """With the data directory locked, even a corrupt backup gets 75 (locked), not 74 (corrupt)."""
    config = write_config(tmp_path)
    JobStore(tmp_path / "data" / "jobs.db").close()
    bad = tmp_path / "data" / "jobs.db.backup.20260101-000000"
    bad.write_bytes(b"SQLite format 3\x00" + b"\x13" * 8192)
    with DirectoryLock(tmp_path / "data").acquire("test"):
        result = cli(config, "restore", bad.name)
    assert result.returncode == 75, result.stderr


def test_repeated_restores_keep_only_the_newest_pre_restore_files(tmp_path: Path) -> None:
    """After more restores than PRE_RESTORE_KEEP, only that many jobs.db.pre-restore-* remain."""
    config = write_config(tmp_path)
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        backup = store.backup_jobs()
    for _ in range(PRE_RESTORE_KEEP + 2):
        result = cli(config, "restore", backup.name)
        assert result.returncode == 0, result.stderr
    kept = list((tmp_path / "data").glob("jobs.db.pre-restore-*"))
    assert len(kept) == PRE_RESTORE_KEEP, kept
    assert "(0 jobs)" in result.stdout
