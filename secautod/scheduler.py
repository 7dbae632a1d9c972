"""When maintenance runs: APScheduler driven by the remembered last success.

Each task's next run is `max(last_success + interval, now)`, capped at one
interval from now (so a wall clock that jumped back cannot postpone it by
days). A failed run is retried after `retry_delay`, doubling up to the
interval; it never stops the daemon.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from secautod.backoff import doubling_delay
from secautod.config import Config
from secautod.errors import OperationAborted, SecautodError, StoreUnreachableError
from secautod.leadership import Leadership
from secautod.log import get_logger
from secautod.maintenance import (
    CLEANUP,
    first_run_time,
    run_backup,
    run_cleanup,
    task_intervals,
)
from secautod.store import JobStore
from secautod.timestamps import isoformat_utc, utc_now

log = get_logger("secautod.scheduler")

# A difference between wall-clock and monotonic progress larger than this
# means the wall clock was set, so schedules are recomputed.
CLOCK_JUMP_TOLERANCE_SECONDS = 60.0
# The first retry of a task whose database connection was lost.
RECONNECT_RETRY_DELAY = timedelta(seconds=1)


class MaintenanceScheduler:
    """Runs cleanup and backup on their intervals in one background worker."""

    def __init__(
        self,
        store: JobStore,
        config: Config,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        on_task_finished: Callable[[str], None] | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self._store = store
        self._leadership = leadership
        self._on_task_finished = on_task_finished
        self._config = config
        self._clock = clock
        self._monotonic = monotonic
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._clock_offset = self._wall_minus_monotonic()
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._scheduler.add_listener(
            self._on_scheduler_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )

    def start(self) -> None:
        """Start the scheduler thread and schedule every enabled task."""
        self._scheduler.start()
        self._schedule(self._config)

    def apply(self, config: Config) -> None:
        """Adopt a reloaded config: new intervals, backups switched on or off.

        If reading the store fails, nothing changes and the error propagates.
        """
        self._schedule(config)
        self._config = config

    @property
    def running(self) -> bool:
        """Tell whether `start` was called (and `shutdown` not yet)."""
        return bool(self._scheduler.running)

    def resume(self) -> None:
        """Recompute every schedule from the stored last successes (this instance now leads).

        Another instance may have run the tasks while this one stood by.
        """
        try:
            self._schedule(self._config)
        except SecautodError as exc:  # the runs as scheduled before still come
            log.warning("maintenance_resume_failed", error=str(exc))

    def next_run_times(self) -> dict[str, datetime]:
        """Return each scheduled task's next run time."""
        return {
            job.id: job.next_run_time for job in self._scheduler.get_jobs() if job.next_run_time
        }

    def check_clock(self) -> bool:
        """Recompute schedules if the wall clock jumped; return whether it did."""
        offset = self._wall_minus_monotonic()
        jump = offset - self._clock_offset
        self._clock_offset = offset
        if abs(jump) <= CLOCK_JUMP_TOLERANCE_SECONDS:
            return False
        log.warning("clock_jump_detected", seconds=round(jump, 1))
        self._schedule(self._config)
        return True

    def healthy(self) -> bool:
        """Tell whether the scheduler thread is alive and running."""
        thread = getattr(self._scheduler, "_thread", None)
        return bool(self._scheduler.running and thread is not None and thread.is_alive())

    def shutdown(self, timeout: float) -> bool:
        """Stop scheduling, ask a running task to abort; True if it ended within `timeout`."""
        with self._lock:
            self._abort.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        return self._idle.wait(timeout)

    # -- internals -------------------------------------------------------------
    def _schedule(self, config: Config) -> None:
        intervals = task_intervals(config)
        runs = self._store.state.task_runs()
        now = self._clock()
        for task, interval in intervals.items():
            last = runs[task].last_success_at if task in runs else None
            next_run = first_run_time(last, interval, now)
            self._scheduler.add_job(
                self.run_task,
                IntervalTrigger(seconds=interval.total_seconds(), timezone=UTC),
                args=[task],
                id=task,
                name=task,
                next_run_time=next_run,
                replace_existing=True,
            )
            log.info(
                "maintenance_scheduled",
                task=task,
                next_run=isoformat_utc(next_run),
                interval_hours=interval.total_seconds() / 3600,
            )
        for job in self._scheduler.get_jobs():
            if job.id not in intervals:
                job.remove()
                log.info("maintenance_unscheduled", task=job.id)

    def run_task(self, task: str) -> None:
        """Run one task now, as the scheduler does: failures are logged and retried."""
        with self._lock:
            if self._abort.is_set():
                return
            self._idle.clear()
        try:
            self._run_task(task)
            if self._on_task_finished is not None:
                self._on_task_finished(task)
        finally:
            self._idle.set()

    def _run_task(self, task: str) -> None:
        if self._leadership is not None and not self._leadership.leading():
            log.debug("maintenance_left_to_leader", task=task)
            return
        now = self._clock()
        config = self._config
        try:
            fence = self._leadership.fence() if self._leadership is not None else None
            with self._store.fenced(fence):
                if task == CLEANUP:
                    run_cleanup(self._store, config, now, should_stop=self._abort.is_set)
                else:
                    run_backup(self._store, config, now, should_stop=self._abort.is_set)
        except OperationAborted:
            return
        except Exception as exc:  # a failed run must never stop the daemon
            if self._abort.is_set():
                return
            failures = self._failures.get(task, 0) + 1
            self._failures[task] = failures
            interval = task_intervals(config).get(task, timedelta(hours=1))
            # A lost connection is retried soon (the pool reconnects), backing
            # off up to the usual delay while the server stays away.
            first, cap = (
                (RECONNECT_RETRY_DELAY, min(config.jobs.retry_delay, interval))
                if isinstance(exc, StoreUnreachableError)
                else (config.jobs.retry_delay, interval)
            )
            retry_at = self._clock() + doubling_delay(failures, first, cap)
            if not isinstance(exc, SecautodError):  # expected failures are logged already
                log.exception("maintenance_crashed", task=task)
            self._reschedule(task, retry_at)
            log.warning(
                "maintenance_retry_scheduled",
                task=task,
                failures=failures,
                retry_at=isoformat_utc(retry_at),
            )
        else:
            self._failures[task] = 0

    def _reschedule(self, task: str, at: datetime) -> None:
        try:
            self._scheduler.modify_job(task, next_run_time=at)
        except Exception as exc:  # the job may be gone (reload) or the scheduler stopping
            log.warning("maintenance_retry_not_scheduled", task=task, error=str(exc))

    def _on_scheduler_event(self, event: Any) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning(
                "maintenance_run_missed", task=event.job_id, scheduled=str(event.scheduled_run_time)
            )
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning("maintenance_run_skipped", task=event.job_id, reason="still running")
        else:
            log.error("maintenance_job_error", task=event.job_id, error=str(event.exception))

    def _wall_minus_monotonic(self) -> float:
        return self._clock().timestamp() - self._monotonic()
