"""Rows other programs wrote that secautod cannot read never stop the daemon (issue 19, item 1)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from harness import DaemonFactory, boot_time, receiver, wait_until, write_config

from secautod import JobStore


def test_a_running_row_with_a_blob_id_is_recovered_by_rowid_and_notified(
    tmp_path: Path, daemons: DaemonFactory
) -> None:
    """A running row whose id is a BLOB (Go's []byte), with a webhook: READY, recovered, logged and notified by rowid."""
    database = tmp_path / "data" / "jobs.db"
    JobStore(database).close()
    started = (boot_time() - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    with sqlite3.connect(database) as conn:
        conn.execute(
            "INSERT INTO jobs (id, status, playbook, context, created_at, started_at) "
            "VALUES (?, 'running', '{}', x'ff00', ?, x'00ff')",
            (b"\xffgo-bytes", started),
        )
        (rowid,) = conn.execute("SELECT rowid FROM jobs").fetchone()
    conn.close()
    with receiver() as hooks:
        config = write_config(
            tmp_path,
            webhooks=[{"url": hooks.url}],
            webhook_delivery={"retry_initial_seconds": 0.1, "retry_max_seconds": 0.5},
            jobs={"backup_enabled": False},
        )
        daemon = daemons.start(config)  # READY: start-up did not stop on the row
        wait_until(lambda: hooks.deliveries, what="the notification for the BLOB row")
        assert daemon.stop() == 0
    (line,) = daemon.named("job_recovered")
    assert (line["job_id"], line["rowid"], line["reason"]) == (None, rowid, "host_rebooted")
    body = hooks.deliveries[0].json()
    assert (body["job"]["id"], body["job"]["rowid"]) == (None, rowid)
    assert body["job"]["started_at"] == "00FF"  # passed on as stored (hex), not dropped
    with JobStore(database) as store:
        boot = store.state.latest_boot()  # recorded before recovery (issue 19, item 11)
    assert boot is not None
    assert boot.boot_id == body["boot_id"]
    assert boot.recovered_jobs == 1
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT status FROM jobs WHERE rowid = ?", (rowid,)).fetchone() == (
            "failed",
        )
    conn.close()
