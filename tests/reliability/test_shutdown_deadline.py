"""A stop that must abandon a worker thread past its deadline is not a clean stop (exit 70)."""

from __future__ import annotations

import signal
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from harness import DaemonFactory, wait_until, write_config

from secautod import JobStatus, JobStore
from secautod.errors import EX_SOFTWARE
from secautod.timestamps import utc_now

CHECK = 0.2
STALE_AFTER = timedelta(seconds=2)


def test_a_worker_stuck_in_sqlite_past_the_deadline_exits_70(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """Supervision waiting on another process's write lock outlives shutdown_timeout: exit 70, the thread named."""
    database = tmp_path / "data" / "jobs.db"
    with JobStore(database) as store:
        store.save_job(make_job(id="quiet"))
        store.update_job_status("quiet", JobStatus.RUNNING)  # unclaimed, fresh
        updated = store.get_job("quiet").updated_at
    assert updated is not None
    config = write_config(
        tmp_path,
        storage={"busy_timeout_seconds": 60},
        supervision={"check_interval": CHECK},
        jobs={"backup_enabled": False, "stale_after": STALE_AFTER.total_seconds() / 3600},
        shutdown_timeout_seconds=1,
    )
    daemon = daemons.start(config)
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process's write lock, held
        # Once the job is stale, the next check finds it and waits for the lock.
        stuck_from = updated + STALE_AFTER + timedelta(seconds=5 * CHECK)
        wait_until(lambda: utc_now() > stuck_from, what="a check waiting for the write lock")
        started = time.monotonic()
        status = daemon.stop(signal.SIGTERM)
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert status == EX_SOFTWARE
    assert elapsed < 10
    assert "supervision" in daemon.named("shutdown_deadline_exceeded")[0]["threads_left"]
    assert daemon.named("shutdown_incomplete")[0]["exit_status"] == EX_SOFTWARE
