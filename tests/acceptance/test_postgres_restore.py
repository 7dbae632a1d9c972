"""Backups on a PostgreSQL store (SPEC §11): the daemon takes and rotates them, restore and check."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from harness import DaemonFactory, require, run_cli, write_config
from pg_server import scratch_database

from secautod import JobStatus, JobStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PASSWORD = "hunter2-not-for-logs"


@pytest.fixture
def store_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped after the test (restore looks at every connection to it)."""
    require(shutil.which("pg_dump") and shutil.which("pg_restore"), "no pg_dump/pg_restore")
    with scratch_database() as url:
        yield url


def database(url: str) -> str:
    """Return the database name in `url` (backups are named after it)."""
    return urlsplit(url).path.lstrip("/")


def jobs_in(url: str) -> dict[str, JobStatus]:
    with JobStore(url) as store:
        return {job.id: job.status for job in store.list_jobs()}


def test_restore_round_trips_the_jobs_and_keeps_the_replaced_tables(
    tmp_path: Path, store_url: str, make_job: Any
) -> None:
    """`secautod restore` puts back the backed-up jobs, keeps a pre-restore dump, and `check` verifies the newest dump."""
    config = write_config(tmp_path, storage={"url": store_url}, jobs={"backup_keep": 2})
    backups = tmp_path / "data"
    with JobStore(store_url, backup_directory=backups) as store:
        for status in ("pending", "running", "completed"):
            store.save_job(make_job(id=f"kept-{status}", status=status))
        backup = store.backup_jobs(backups, now=NOW)
    backed_up = jobs_in(store_url)
    with JobStore(store_url) as store:
        store.delete_job("kept-pending")
        store.save_job(make_job(id="after-backup"))
        store.update_job_status("kept-running", "failed")
    checked = run_cli("check", "--config", str(config), timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert f"newest backup: ok ({backup}, 3 jobs)" in checked.stdout
    result = run_cli("restore", "--config", str(config), "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["restored_from"], report["jobs"]) == (str(backup), 3)
    assert jobs_in(store_url) == backed_up
    previous = Path(report["previous_database"])
    assert previous.name.startswith(f"{database(store_url)}.pre-restore-")
    assert previous.stat().st_mode & 0o077 == 0
    # The pre-restore dump holds what was replaced: restoring it brings that back.
    again = run_cli("restore", "--config", str(config), str(previous), timeout=120)
    assert again.returncode == 0, again.stderr
    assert set(jobs_in(store_url)) == {"kept-running", "kept-completed", "after-backup"}


def test_restore_refuses_while_another_secautod_uses_the_database(
    tmp_path: Path, store_url: str, make_job: Any
) -> None:
    """With an engine's JobStore connected, restore exits 75 naming the connections, and changes nothing."""
    config = write_config(tmp_path, storage={"url": store_url})
    backups = tmp_path / "data"
    with JobStore(store_url, backup_directory=backups) as store:
        store.save_job(make_job(id="one"))
        store.backup_jobs(backups, now=NOW)
        store.save_job(make_job(id="two"))
        result = run_cli("restore", "--config", str(config), timeout=120)
        assert result.returncode == 75, result.stderr
        assert "other secautod connection(s)" in result.stderr
    assert set(jobs_in(store_url)) == {"one", "two"}
    assert not list(backups.glob("*.pre-restore-*"))


def test_the_daemon_backs_up_and_rotates_and_restore_waits_for_it(
    tmp_path: Path, daemons: DaemonFactory, store_url: str, make_job: Any
) -> None:
    """The daemon writes verified dumps on schedule, keeps backup_keep of them, never logs the password; restore exits 75 while it runs."""
    with JobStore(store_url) as store:
        store.save_job(make_job(id="one"))
    url = store_url.replace("//postgres@", f"//postgres:{PASSWORD}@")
    config = write_config(
        tmp_path, storage={"url": url}, jobs={"backup_keep": 2, "backup_interval": 0.0005}
    )
    daemon = daemons.start(config)
    daemon.wait_for_event("backup_completed", count=3, timeout=60)
    refused = run_cli("restore", "--config", str(config), timeout=60)
    assert daemon.stop() == 0
    assert refused.returncode == 75, refused.stderr
    assert PASSWORD not in refused.stderr + refused.stdout
    assert PASSWORD not in daemon.log_path.read_text()
    assert daemon.named("backups_pruned")
    backups = sorted((tmp_path / "data").glob(f"{database(store_url)}.backup.*"))
    assert len(backups) == 2
    assert not list((tmp_path / "data").glob(".*partial*"))
    assert jobs_in(store_url) == {"one": JobStatus.PENDING}
