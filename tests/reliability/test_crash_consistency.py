"""Crash consistency: the engine and the daemon killed with SIGKILL at random moments.

Each trial starts a writer process (tests/reliability/crash_writer.py) that
drives jobs through their life with the Python API and appends every
acknowledged operation to a ledger; the writer and the daemon are then
killed with SIGKILL at random points, and the daemon is restarted. After
each restart the database must pass `PRAGMA integrity_check`, hold every
acknowledged operation, and have recovered each interrupted job exactly
once; at the end every recovered job's notification must have been
delivered at least once.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import DaemonFactory, WebhookReceiver, receiver, wait_until, write_config

from secautod.store import verify_database_file

WRITER = Path(__file__).with_name("crash_writer.py")
TRIALS = 100
SLOW_TRIALS = 1000
STEPS = {"pending": 0, "completed": 3}  # failed and running depend on results


@dataclass
class Tally:
    """What the trials did, for the summary line and docs/RELIABILITY.md."""

    trials: int = 0
    acknowledged: int = 0
    jobs: int = 0
    recovered: set[str] = field(default_factory=set)
    lost: int = 0
    kills: Counter[str] = field(default_factory=Counter)


def ledger_acks(ledger: Path) -> dict[str, int]:
    """The highest acknowledged step of each job (a torn last line is ignored)."""
    acks: dict[str, int] = {}
    if not ledger.exists():
        return acks
    for line in ledger.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            acks[parts[1]] = max(acks.get(parts[1], -1), int(parts[0]))
    return acks


def count_lines(ledger: Path) -> int:
    return ledger.read_bytes().count(b"\n") if ledger.exists() else 0


def database_step(status: str, results: str | None, error: str | None, job_id: str) -> int:
    """Map a stored row back to the writer's step (0-3), checking recovery's marks."""
    if status in STEPS:
        return STEPS[status]
    assert status == "failed", f"job {job_id} is {status} after a restart"
    assert error is not None, f"job {job_id} failed without an error"
    assert error.count("recovered by boot") == 1, f"job {job_id}: {error!r}"
    return 2 if results is not None else 1


def check_after_restart(database: Path, ledger: Path, tally: Tally) -> None:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = {
            row[0]: row[1:] for row in conn.execute("SELECT id, status, results, error FROM jobs")
        }
    finally:
        conn.close()
    acks = ledger_acks(ledger)
    for job_id, step in acks.items():
        if job_id not in rows:
            tally.lost += 1
            raise AssertionError(f"acknowledged job {job_id} (step {step}) is missing")
        stored = database_step(*rows[job_id], job_id=job_id)
        # The operation after the last acknowledged one may have committed just
        # before the kill; anything older than the acknowledged step is a loss.
        if stored not in (step, step + 1):
            tally.lost += 1
            raise AssertionError(f"job {job_id}: acknowledged step {step}, stored step {stored}")
    for job_id, (status, _results, error) in rows.items():
        assert status != "running", f"job {job_id} still running after recovery"
        if status == "failed" and error and "recovered by boot" in error:
            tally.recovered.add(job_id)
    tally.acknowledged = sum(step + 1 for step in acks.values())
    tally.jobs = len(acks)


def start_writer(database: Path, ledger: Path, prefix: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(database), str(ledger), prefix],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_trials(tmp_path: Path, daemons: DaemonFactory, trials: int, seed: int) -> Tally:
    rng = random.Random(seed)  # noqa: S311 - reproducible kill points, not cryptography
    tally = Tally()
    database = tmp_path / "data" / "jobs.db"
    ledger = tmp_path / "ledger.txt"
    with receiver() as hooks:
        config = write_config(
            tmp_path,
            jobs={
                "backup_interval": 0.0003,
                "cleanup_interval": 0.0003,
                "backup_keep": 3,
                "retry_delay_seconds": 0.5,
            },
            webhooks=[{"url": hooks.url}],
            webhook_delivery={"retry_initial_seconds": 0.1, "retry_max_seconds": 0.5},
            logging={"level": "warning", "format": "json"},
        )
        daemon = daemons.start(config)
        for trial in range(trials):
            writer = start_writer(database, ledger, f"t{trial}")
            try:
                target = count_lines(ledger) + rng.randint(1, 40)
                wait_until(
                    lambda target=target, writer=writer: (
                        count_lines(ledger) >= target or writer.poll() is not None
                    ),
                    what="writer progress",
                )
                assert writer.poll() is None, "the writer died on its own"
                if rng.random() < 0.5:
                    daemon.process.send_signal(signal.SIGKILL)
                    more = count_lines(ledger) + rng.randint(0, 15)
                    wait_until(
                        lambda more=more: count_lines(ledger) >= more,
                        what="writer progress after the daemon died",
                    )
                    writer.send_signal(signal.SIGKILL)
                    tally.kills["daemon first"] += 1
                else:
                    writer.send_signal(signal.SIGKILL)
                    daemon.process.send_signal(signal.SIGKILL)
                    tally.kills["writer first"] += 1
            finally:
                # A failed trial must not leave its writer committing forever.
                if writer.poll() is None:
                    writer.kill()
                writer.wait()
            daemon.process.wait()
            daemon = daemons.start(config)  # READY means recovery is committed
            check_after_restart(database, ledger, tally)
            tally.trials += 1
        wait_until(lambda: _outbox_empty(database), timeout=60, what="the outbox to drain")
        assert daemon.stop() == 0
        _check_deliveries(hooks, tally)
    for backup in sorted((tmp_path / "data").glob("jobs.db.backup.*")):
        verify_database_file(backup)  # every final-named backup is whole
    return tally


def _outbox_empty(database: Path) -> bool:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM webhook_outbox").fetchone()[0] == 0
    finally:
        conn.close()


def _check_deliveries(hooks: WebhookReceiver, tally: Tally) -> None:
    delivered = Counter(json.loads(delivery.body)["job"]["id"] for delivery in hooks.deliveries)
    missing = tally.recovered - delivered.keys()
    assert not missing, f"recovered jobs never notified: {sorted(missing)[:10]}"
    assert delivered.keys() <= tally.recovered, "a notification for a job that was not recovered"


def summary(tally: Tally) -> str:
    return (
        f"crash trials: {tally.trials}, jobs: {tally.jobs}, acknowledged operations: {tally.acknowledged}, "
        f"recovered jobs: {len(tally.recovered)} (all notified), kills: {dict(tally.kills)}, lost: {tally.lost}"
    )


def test_crash_trials_lose_nothing(tmp_path: Path, daemons: DaemonFactory) -> None:
    """100 random SIGKILLs of writer and daemon: intact file, every acknowledged write kept, recovery exactly once."""
    tally = run_trials(tmp_path, daemons, TRIALS, seed=20261122)
    print(summary(tally))
    assert tally.trials == TRIALS
    assert tally.lost == 0
    assert tally.recovered, "no trial interrupted a running job: the test proves nothing"


@pytest.mark.slow
def test_crash_soak(tmp_path: Path, daemons: DaemonFactory) -> None:
    """The same with 1000 trials (run with -m slow)."""
    tally = run_trials(tmp_path, daemons, SLOW_TRIALS, seed=7)
    print(summary(tally))
    assert tally.lost == 0
