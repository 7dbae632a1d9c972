"""Retention cleanup and backups as explicit operations.

The scheduler and the CLI both call `run_cleanup` and `run_backup`; each
records its outcome in the store (so a restart knows when it last ran) and
logs one event. Nothing here decides *when* to run: that is `scheduler.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from secautod.backup import future_backups, list_backups, prune_backups, recorded_verification
from secautod.config import Config
from secautod.errors import CleanupAborted, OperationAborted, SecautodError, StoreError
from secautod.log import get_logger
from secautod.metrics import record_deleted, record_task_failure
from secautod.store import JobStore

CLEANUP = "cleanup"
BACKUP = "backup"
TASKS = (CLEANUP, BACKUP)

log = get_logger("secautod.maintenance")


@dataclass(frozen=True, slots=True)
class CleanupOutcome:
    """What one cleanup run did."""

    deleted: int
    duration_ms: int
    undatable: int = 0  # finished jobs with no readable date: cleanup can never delete them


@dataclass(frozen=True, slots=True)
class BackupOutcome:
    """What one backup run did."""

    path: Path
    size_bytes: int
    duration_ms: int
    pruned: tuple[Path, ...]


# -- when: scheduling arithmetic shared by the scheduler and `status` ------------
def first_run_time(last_success: datetime | None, interval: timedelta, now: datetime) -> datetime:
    """Return when a task that last succeeded at `last_success` should next run."""
    if last_success is None:
        return now
    return min(max(last_success + interval, now), now + interval)


def task_intervals(config: Config) -> dict[str, timedelta]:
    """Return the enabled maintenance tasks and their intervals."""
    intervals = {CLEANUP: config.jobs.cleanup_interval}
    if config.jobs.backup_enabled:
        intervals[BACKUP] = config.jobs.backup_interval
    return intervals


# -- what: the operations ---------------------------------------------------------
def run_cleanup(
    store: JobStore,
    config: Config,
    now: datetime,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> CleanupOutcome:
    """Delete finished jobs older than the retention period and record the run."""
    started = time.monotonic()
    log.info("cleanup_started", retention_days=config.jobs.retention.total_seconds() / 86400)
    with _outcome_logged(store, CLEANUP, now):
        try:
            deleted = store.cleanup_old_jobs(
                config.jobs.retention, now=now, should_stop=should_stop, on_progress=on_progress
            )
        except CleanupAborted as exc:
            record_deleted(exc.deleted)
            raise
        # Ended engine sessions are kept as long as the jobs' history.
        sessions_pruned = store.prune_engine_sessions(now - config.jobs.retention)
    record_deleted(deleted)
    undatable = _undatable_jobs(store)
    outcome = CleanupOutcome(deleted, _elapsed_ms(started), undatable)
    _record_success(
        store,
        CLEANUP,
        now,
        {"deleted": deleted, "duration_ms": outcome.duration_ms, "undatable": undatable},
    )
    log.info(
        "cleanup_completed",
        deleted=deleted,
        sessions_pruned=sessions_pruned,
        duration_ms=outcome.duration_ms,
        retention_days=config.jobs.retention.total_seconds() / 86400,
    )
    return outcome


def run_backup(
    store: JobStore,
    config: Config,
    now: datetime,
    should_stop: Callable[[], bool] | None = None,
) -> BackupOutcome:
    """Take a verified backup, keep only the newest `backup_keep`, record the run."""
    started = time.monotonic()
    directory = config.backup_directory
    log.info("backup_started", directory=str(directory))
    with _outcome_logged(store, BACKUP, now):
        path = store.backup_jobs(
            directory, now=now, should_stop=should_stop, check=config.jobs.backup_check
        )
        try:
            verified_at = recorded_verification(store)
            pruned = prune_backups(
                directory, store.path.name, config.jobs.backup_keep, path, verified_at, now
            )
            backups = list_backups(directory, store.path.name, verified_at)
        except OSError as exc:
            raise StoreError(f"pruning old backups in {directory} failed: {exc.strerror}") from exc
    future = future_backups(backups, now)
    if future:
        log.warning(
            "backups_from_the_future",
            paths=[str(backup.path) for backup in future],
            hint="dated ahead of the clock: never pruned nor restored by default; "
            "delete or rename them once checked",
        )
    if pruned:
        with suppress(SecautodError):  # stale records of deleted files are harmless
            store.state.forget_backups(pruned)
        log.info(
            "backups_pruned", removed=[str(path) for path in pruned], kept=config.jobs.backup_keep
        )
    outcome = BackupOutcome(path, path.stat().st_size, _elapsed_ms(started), tuple(pruned))
    _record_success(
        store,
        BACKUP,
        now,
        {"path": str(path), "size_bytes": outcome.size_bytes, "duration_ms": outcome.duration_ms},
    )
    log.info(
        "backup_completed",
        path=str(path),
        size_bytes=outcome.size_bytes,
        duration_ms=outcome.duration_ms,
        check=config.jobs.backup_check,
    )
    return outcome


def _undatable_jobs(store: JobStore) -> int:
    """Count the finished jobs that can never expire; log them when the count changes.

    The count is kept with the cleanup's result, so the warning comes once
    per change, not with every run (and `status` shows the count).
    """
    try:
        undatable = store.undatable_jobs()
        previous = store.state.task_runs().get(CLEANUP)
    except SecautodError as exc:
        log.warning("undatable_jobs_unknown", error=str(exc))
        return 0
    before = previous.last_result.get("undatable", 0) if previous is not None else 0
    if undatable.count and undatable.count != before:
        log.warning(
            "jobs_never_expire",
            count=undatable.count,
            rowids=list(undatable.rowids),
            reason="no readable created_at or completed_at; another program wrote them",
        )
    return undatable.count


def _record_success(store: JobStore, task: str, now: datetime, result: dict[str, Any]) -> None:
    """Remember a successful run; the work is done even if remembering fails."""
    try:
        store.state.record_task_success(task, now, result)
    except SecautodError as exc:
        # The next start may repeat the task early; nothing else is lost.
        log.warning("maintenance_record_failed", task=task, error=str(exc))


@contextmanager
def _outcome_logged(store: JobStore, task: str, now: datetime) -> Iterator[None]:
    """Log `<task>_aborted` or `<task>_failed` (and record the failure) for the block."""
    try:
        yield
    except OperationAborted as exc:
        log.warning(f"{task}_aborted", reason=str(exc))
        raise
    except SecautodError as exc:
        record_task_failure(task)
        log.error(f"{task}_failed", error=str(exc), error_type=type(exc).__name__)
        # The store itself may be what failed; the log line above is then the record.
        with suppress(SecautodError):
            store.state.record_task_failure(task, now, str(exc))
        raise
    except Exception:
        record_task_failure(task)  # a bug; the scheduler logs it with its traceback
        raise


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
