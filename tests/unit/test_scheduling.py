"""When maintenance runs: pure arithmetic, then the scheduler with an injected clock."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import DEADLINE, bulk_jobs, wait_until
from structlog.testing import capture_logs

from secautod import JobStore
from secautod.backoff import doubling_delay
from secautod.config import Config, parse_config
from secautod.maintenance import first_run_time, task_intervals
from secautod.scheduler import MaintenanceScheduler
from secautod.store.sqlite import retention
from secautod.store.sqlite.retention import CLEANUP_BATCH_ROWS

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture
def now() -> datetime:
    """A year ahead of the real clock (overriding conftest's fixed instant).

    APScheduler fires jobs by the real clock, so the schedules these tests
    build from a fake clock must lie in its future, or it runs them at once
    (a fixed date in the past made these tests fail once that date had passed).
    """
    return datetime.now(UTC).replace(microsecond=0) + 365 * DAY


def test_never_run_task_runs_now(now: datetime) -> None:
    """A task with no recorded success is due immediately."""
    assert first_run_time(None, DAY, now) == now


def test_overdue_task_runs_now_and_recent_one_waits(now: datetime) -> None:
    """Overdue: now. Recently run: last success plus the interval (a restart never postpones it)."""
    assert first_run_time(now - 3 * DAY, DAY, now) == now
    assert first_run_time(now - 2 * HOUR, DAY, now) == now - 2 * HOUR + DAY


def test_success_in_the_future_waits_at_most_one_interval(now: datetime) -> None:
    """If the wall clock went back, the next run is never more than one interval away."""
    assert first_run_time(now + 10 * DAY, DAY, now) == now + DAY


def test_retry_delay_doubles_up_to_the_interval() -> None:
    """Retries wait 5, 10, 20 ... minutes, never longer than the task's interval."""
    first = timedelta(minutes=5)
    assert [doubling_delay(n, first, 2 * HOUR) for n in (1, 2, 3, 4, 5, 100)] == [
        timedelta(minutes=5),
        timedelta(minutes=10),
        timedelta(minutes=20),
        timedelta(minutes=40),
        timedelta(minutes=80),
        2 * HOUR,
    ]


def test_backup_task_exists_only_when_enabled(tmp_path: Path) -> None:
    """Disabling backups removes the backup task; cleanup always runs."""
    enabled = parse_config({}, tmp_path / "c.yaml")
    disabled = parse_config({"jobs": {"backup_enabled": False}}, tmp_path / "c.yaml")
    assert set(task_intervals(enabled)) == {"cleanup", "backup"}
    assert set(task_intervals(disabled)) == {"cleanup"}


class FakeClock:
    """A wall clock and a monotonic clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.wall = start
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def scheduler_parts(tmp_path: Path, now: datetime) -> Iterator[tuple[JobStore, Config, FakeClock]]:
    config = parse_config({"data_directory": "data"}, tmp_path / "config.yaml")
    clock = FakeClock(now)
    store = JobStore(config.database_path, clock=clock.now)
    # Both ran an hour ago, so nothing is due while the test looks at the schedule.
    store.state.record_task_success("cleanup", now - HOUR, {})
    store.state.record_task_success("backup", now - HOUR, {})
    yield store, config, clock
    store.close()


def test_clock_jump_back_reschedules_within_one_interval(
    scheduler_parts: Any, now: datetime
) -> None:
    """After the wall clock jumps back 5 days, no task waits longer than its interval."""
    store, config, clock = scheduler_parts
    scheduler = MaintenanceScheduler(store, config, clock.now, clock.monotonic)
    scheduler.start()
    try:
        before = scheduler.next_run_times()
        assert before["cleanup"] == now - HOUR + DAY
        clock.wall -= 5 * DAY  # set back; monotonic time did not move
        with capture_logs() as logs:
            assert scheduler.check_clock() is True
        after = scheduler.next_run_times()
        assert after["cleanup"] <= clock.wall + DAY
        assert after["backup"] <= clock.wall + config.jobs.backup_interval
        assert any(entry["event"] == "clock_jump_detected" for entry in logs)
    finally:
        assert scheduler.shutdown(5)


def test_clock_jump_forward_makes_each_task_due_once(scheduler_parts: Any) -> None:
    """After the wall clock jumps ahead 5 days, overdue tasks are due now (once); others keep their time."""
    store, config, clock = scheduler_parts
    last_success = clock.wall - HOUR
    scheduler = MaintenanceScheduler(store, config, clock.now, clock.monotonic)
    scheduler.start()
    try:
        clock.wall += 5 * DAY
        assert scheduler.check_clock() is True
        after = scheduler.next_run_times()
        assert after == {
            "cleanup": clock.wall,
            "backup": last_success + config.jobs.backup_interval,
        }
        assert scheduler.check_clock() is False  # settled: no second reschedule
        assert scheduler.next_run_times() == after
    finally:
        assert scheduler.shutdown(5)


def test_small_drift_is_not_a_jump(scheduler_parts: Any) -> None:
    """Ordinary time passing (wall and monotonic together) changes nothing."""
    store, config, clock = scheduler_parts
    scheduler = MaintenanceScheduler(store, config, clock.now, clock.monotonic)
    scheduler.start()
    try:
        clock.advance(3600)
        assert scheduler.check_clock() is False
        clock.wall += timedelta(seconds=30)  # NTP-sized correction
        assert scheduler.check_clock() is False
    finally:
        assert scheduler.shutdown(5)


def test_failed_run_is_retried_after_the_doubling_delay(tmp_path: Path, now: datetime) -> None:
    """A backup that fails is logged, recorded, and rescheduled after retry_delay; the scheduler lives on."""
    (tmp_path / "blocked").write_text("a file where the backup directory should be")
    config = parse_config(
        {"data_directory": "data", "jobs": {"retry_delay_seconds": 120}}, tmp_path / "config.yaml"
    )
    # A backup directory under a regular file cannot be created: every backup fails.
    config = replace(config, jobs=replace(config.jobs, backup_directory=tmp_path / "blocked" / "x"))
    clock = FakeClock(now)
    with JobStore(config.database_path, clock=clock.now) as store:
        store.state.record_task_success("cleanup", now, {})
        store.state.record_task_success("backup", now - HOUR, {})
        scheduler = MaintenanceScheduler(store, config, clock.now, clock.monotonic)
        scheduler.start()
        try:
            with capture_logs() as logs:
                scheduler.run_task("backup")
            events = [entry["event"] for entry in logs]
            assert "backup_failed" in events
            assert "maintenance_retry_scheduled" in events
            assert scheduler.next_run_times()["backup"] == now + timedelta(seconds=120)
            assert scheduler.healthy()
            assert store.state.task_runs()["backup"].last_error
        finally:
            assert scheduler.shutdown(5)


def test_shutdown_aborts_a_running_cleanup(
    scheduler_parts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cleanup that has deleted its first batch stops on shutdown: aborted, idle at once, rows kept."""
    store, config, clock = scheduler_parts
    expired = CLEANUP_BATCH_ROWS[0] * 8 * 4
    bulk_jobs(store.path, expired, payload_bytes=10)
    # A reader pinning a snapshot keeps cleanup waiting after its first batch
    # (it waits for the WAL to fold), so it is certainly mid-run at shutdown.
    monkeypatch.setattr(retention, "CLEANUP_MAX_WAL_BACKLOG_FRAMES", 1)
    reader = sqlite3.connect(store.path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM jobs").fetchone()
    scheduler = MaintenanceScheduler(store, config, clock.now, clock.monotonic)
    scheduler.start()
    worker = threading.Thread(target=scheduler.run_task, args=["cleanup"])
    try:
        with capture_logs() as logs:
            worker.start()
            wait_until(lambda: store.get_stats().total < expired, what="the first batch")
            started = time.monotonic()
            assert scheduler.shutdown(5) is True
            stopped_in = time.monotonic() - started
            worker.join(DEADLINE)
    finally:
        reader.close()
        scheduler.shutdown(5)
    assert not worker.is_alive()
    assert stopped_in < 1.0
    events = [entry["event"] for entry in logs if entry["event"].startswith("cleanup_")]
    assert events == ["cleanup_started", "cleanup_aborted"]
    remaining = store.get_stats().total
    assert 0 < remaining < expired
    assert store.state.task_runs()["cleanup"].last_success_at == clock.wall - HOUR


def test_task_started_after_shutdown_does_nothing(scheduler_parts: Any) -> None:
    """A task started after shutdown began does nothing, and shutdown reports it idle."""
    store, config, clock = scheduler_parts
    scheduler = MaintenanceScheduler(store, config, clock.now, clock.monotonic)
    scheduler.start()
    assert scheduler.shutdown(5) is True
    with capture_logs() as logs:
        scheduler.run_task("cleanup")
    assert logs == []
    assert not scheduler.healthy()


def test_retry_delays_never_overflow() -> None:
    """Even a day-long first delay after many failures stays at the cap instead of overflowing."""
    assert doubling_delay(31, DAY, 7 * DAY) == 7 * DAY
    assert doubling_delay(10_000, timedelta(days=3000), timedelta(days=36500)) == timedelta(
        days=36500
    )
