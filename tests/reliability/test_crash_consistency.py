"""Crash consistency: engines and the daemon killed with SIGKILL at random moments.

Each trial starts a writer process (tests/reliability/crash_writer.py), an
engine holding a session, that drives jobs through their life with the
Python API and appends every acknowledged operation to a ledger. Then, at
random points, one of four things happens: the daemon is killed and
restarted while the engine lives on; the engine is killed while the daemon
runs; or both die, in either order, and the daemon is restarted. After
each trial the database must pass `PRAGMA integrity_check`, hold every
acknowledged operation, have recovered every job of a dead engine
(`engine_exited`, within `check_interval` + 1 s when the daemon was up) and
never a live engine's. At the end every recovered job must have been
notified by exactly one notification (a second recovery would make a second
one; deliveries themselves are at least once).
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import DaemonFactory, WebhookReceiver, receiver, wait_until, write_config

from secautod.store import verify_database_file

WRITER = Path(__file__).with_name("crash_writer.py")
TRIALS = 100
SLOW_TRIALS = 1000
STEPS = {"pending": 0, "completed": 3}  # failed and running depend on results
CHECK_INTERVAL = 0.5
SCENARIOS = ("daemon first", "engine first", "engine only", "daemon only")


@dataclass
class Tally:
    """What the trials did, for the summary line and docs/RELIABILITY.md."""

    trials: int = 0
    acknowledged: int = 0
    jobs: int = 0
    recovered: set[str] = field(default_factory=set)
    lost: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    slowest_recovery: float = 0.0


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
    assert error.count("interrupted (engine_exited)") == 1, f"job {job_id}: {error!r}"
    return 2 if results is not None else 1


def check_consistency(database: Path, ledger: Path, tally: Tally) -> None:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = {
            row[0]: row[1:] for row in conn.execute("SELECT id, status, results, error FROM jobs")
        }
    finally:
        conn.close()
    assert "LOST" not in (ledger.read_text() if ledger.exists() else ""), "a live engine was fenced"
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
        if status == "failed" and error and "interrupted (" in error:
            tally.recovered.add(job_id)
    tally.acknowledged = sum(step + 1 for step in acks.values())
    tally.jobs = len(acks)


def start_writer(database: Path, ledger: Path, prefix: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(database), str(ledger), prefix],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def running_jobs(database: Path) -> int:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()[0])
    finally:
        conn.close()


def progress(ledger: Path, rng: random.Random, writer: subprocess.Popen[bytes], most: int) -> None:
    """Let the writer acknowledge a random number of further operations."""
    target = count_lines(ledger) + rng.randint(1, most)
    wait_until(
        lambda: count_lines(ledger) >= target or writer.poll() is not None, what="writer progress"
    )
    assert writer.poll() is None, "the writer died on its own (LOST: a live engine was fenced)"


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
            supervision={"check_interval": CHECK_INTERVAL},
            webhooks=[{"url": hooks.url}],
            webhook_delivery={"retry_initial_seconds": 0.1, "retry_max_seconds": 0.5},
            logging={"level": "warning", "format": "json"},
        )
        daemon = daemons.start(config)
        for trial in range(trials):
            writer = start_writer(database, ledger, f"t{trial}")
            scenario = rng.choice(SCENARIOS)
            try:
                progress(ledger, rng, writer, 40)
                if scenario == "daemon first":
                    daemon.process.send_signal(signal.SIGKILL)
                    progress(ledger, rng, writer, 15)
                    writer.send_signal(signal.SIGKILL)
                elif scenario == "engine first":
                    writer.send_signal(signal.SIGKILL)
                    daemon.process.send_signal(signal.SIGKILL)
                elif scenario == "daemon only":
                    daemon.process.send_signal(signal.SIGKILL)
                    daemon.process.wait()
                    daemon = daemons.start(config)
                    progress(ledger, rng, writer, 15)  # the engine goes on: not fenced
                    writer.send_signal(signal.SIGKILL)
                else:
                    writer.send_signal(signal.SIGKILL)
            finally:
                # A failed trial must not leave its writer committing forever.
                if writer.poll() is None:
                    writer.kill()
                writer.wait()
            killed = time.monotonic()
            tally.kills[scenario] += 1
            if scenario in ("daemon first", "engine first"):
                daemon.process.wait()
                daemon = daemons.start(config)  # READY: the start-up check has recovered
                assert running_jobs(database) == 0, (
                    "a dead engine's job survived the start-up check"
                )
            else:
                wait_until(
                    lambda: running_jobs(database) == 0,
                    timeout=CHECK_INTERVAL + 1,
                    what="engine_exited recovery within check_interval + 1 s",
                )
                tally.slowest_recovery = max(tally.slowest_recovery, time.monotonic() - killed)
            check_consistency(database, ledger, tally)
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
    notifications: defaultdict[str, set[str]] = defaultdict(set)
    for delivery in hooks.deliveries:
        body = json.loads(delivery.body)
        assert body["reason"] == "engine_exited", body
        notifications[body["job"]["id"]].add(body["id"])
    missing = tally.recovered - notifications.keys()
    assert not missing, f"recovered jobs never notified: {sorted(missing)[:10]}"
    assert notifications.keys() <= tally.recovered, (
        "a notification for a job that was not recovered"
    )
    twice = {job_id: ids for job_id, ids in notifications.items() if len(ids) != 1}
    assert not twice, f"jobs recovered more than once: {twice}"


def summary(tally: Tally) -> str:
    return (
        f"crash trials: {tally.trials}, jobs: {tally.jobs}, acknowledged operations: {tally.acknowledged}, "
        f"recovered jobs: {len(tally.recovered)} (each notified once), kills: {dict(tally.kills)}, "
        f"lost: {tally.lost}, slowest recovery while the daemon ran: {tally.slowest_recovery:.2f} s"
    )


def test_crash_trials_lose_nothing(tmp_path: Path, daemons: DaemonFactory) -> None:
    """100 random SIGKILLs of engines and daemon: intact file, every acknowledged write kept, dead engines' jobs recovered exactly once, live ones' never."""
    tally = run_trials(tmp_path, daemons, TRIALS, seed=20261122)
    print(summary(tally))
    assert tally.trials == TRIALS
    assert tally.lost == 0
    assert tally.recovered, "no trial interrupted a running job: the test proves nothing"
    assert all(tally.kills[scenario] for scenario in SCENARIOS), tally.kills


@pytest.mark.slow
def test_crash_soak(tmp_path: Path, daemons: DaemonFactory) -> None:
    """The same with 1000 trials (run with -m slow)."""
    tally = run_trials(tmp_path, daemons, SLOW_TRIALS, seed=7)
    print(summary(tally))
    assert tally.lost == 0
