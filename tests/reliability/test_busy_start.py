"""An engine keeping the write lock busy at start-up delays the daemon; it does not end it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from harness import DaemonFactory, write_config

from secautod import JobStore


def test_start_up_waits_out_an_engine_holding_the_write_lock(
    tmp_path: Path, daemons: DaemonFactory
) -> None:
    """With the write lock held past the busy timeout, start-up logs store_busy_at_start and goes on once it is free."""
    database = tmp_path / "data" / "jobs.db"
    JobStore(database).close()
    config = write_config(
        tmp_path, storage={"busy_timeout_seconds": 0.5}, jobs={"backup_enabled": False}
    )
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        daemon = daemons.start(config, wait_ready=False)
        daemon.wait_for_event("store_busy_at_start", count=2)
        assert daemon.process.poll() is None  # still starting, not failed
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    daemon.wait_ready()
    assert daemon.stop() == 0
    assert daemon.named("daemon_failed") == []
    assert daemon.named("store_busy_at_start")[0]["step"] == "recording the daemon start"
