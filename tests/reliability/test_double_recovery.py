"""No job is ever recovered twice, however many recoveries race for it.

A job's `error` is overwritten by each recovery, so the job row alone
cannot show a second one. What can: the notifications queued (one outbox
row per job and endpoint, kept here because both endpoints refuse
connections) and the `job_recovered` lines and ids the recoverers report.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from harness import SECAUTOD, DaemonFactory, Engine, boot_time, free_port, write_config

from secautod import JobStore

ENGINE_JOBS = [f"engine-{index}" for index in range(5)]
BEFORE_BOOT_JOBS = [f"before-boot-{index}" for index in range(5)]
CLI_RACERS = 3


def seed(database: Path, make_job: Any) -> Engine:
    """Five jobs claimed by an engine that is then killed, five running since before this boot."""
    before_boot = boot_time() - timedelta(hours=1)
    with JobStore(database) as store:
        for job_id in ENGINE_JOBS:
            store.save_job(make_job(id=job_id, status="pending"))
        for job_id in BEFORE_BOOT_JOBS:
            store.save_job(make_job(id=job_id, status="running", started_at=before_boot))
    engine = Engine.start(database, *ENGINE_JOBS)
    engine.kill()
    return engine


def outbox_rows(database: Path) -> Counter[tuple[str, str]]:
    """How many notifications are queued per (job id, endpoint)."""
    conn = sqlite3.connect(database)
    try:
        rows = conn.execute("SELECT job_id, endpoint FROM webhook_outbox").fetchall()
    finally:
        conn.close()
    return Counter((str(job_id), str(endpoint)) for job_id, endpoint in rows)


def test_racing_recoveries_and_a_crashed_restart_recover_each_job_once(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any
) -> None:
    """A starting daemon, three concurrent `secautod recover` runs and a restart after kill -9: one recovery per job."""
    endpoints = [f"http://127.0.0.1:{free_port()}/hook-{name}" for name in ("a", "b")]
    config = write_config(
        tmp_path,
        webhooks=[{"url": url} for url in endpoints],
        webhook_delivery={"retry_initial_seconds": 60, "retry_max_seconds": 60},
    )
    (tmp_path / "data").mkdir(mode=0o700)
    database = tmp_path / "data" / "jobs.db"
    engine = seed(database, make_job)
    try:
        first = daemons.start(config, wait_ready=False)
        racers = [
            subprocess.Popen(
                [SECAUTOD, "recover", "--config", str(config), "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(CLI_RACERS)
        ]
        by_cli: list[str] = []
        for racer in racers:
            out, err = racer.communicate(timeout=60)
            assert racer.returncode == 0, err
            by_cli += json.loads(out)["recovered"]
        first.wait_ready()
        first.kill()  # a crash: the restart must find nothing left to recover
        second = daemons.start(config)
        assert second.stop() == 0
    finally:
        engine.close()

    by_daemons = [
        event["job_id"] for daemon in (first, second) for event in daemon.named("job_recovered")
    ]
    recovered = Counter(by_daemons + by_cli)
    assert recovered == Counter(ENGINE_JOBS + BEFORE_BOOT_JOBS), recovered
    assert not second.named("job_recovered")
    queued = outbox_rows(database)
    expected = Counter({(job_id, url): 1 for job_id in recovered for url in endpoints})
    assert queued == expected, queued - expected
    with JobStore(database) as store:
        assert {store.get_job(job_id).status.value for job_id in recovered} == {"failed"}
