"""secautod's own records in PostgreSQL: boots, maintenance runs, backups, outbox.

The same tables as on SQLite (migration 1 here), with `timestamptz` times.
The daemon and the CLI reach them through `JobStore.state`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from secautod.store.base import Clock, SupervisorState
from secautod.store.postgres import queries
from secautod.store.postgres.connection import ConnectionPool
from secautod.store.postgres.rows import utc_or_none
from secautod.store.records import BackupRecord, Boot, Notification, OutboxSummary, TaskRun


class PostgresSupervisorState(SupervisorState):
    """secautod's bookkeeping tables in the PostgreSQL database."""

    def __init__(self, pool: ConnectionPool, clock: Clock) -> None:
        self._pool = pool
        self._clock = clock

    # -- boots -----------------------------------------------------------------
    def record_boot(self, boot: Boot) -> None:
        """Remember a daemon start (again with the final recovered count)."""
        params = {
            "boot_id": boot.boot_id,
            "started_at": boot.started_at or self._clock(),
            "pid": boot.pid,
            "version": boot.version,
            "recovered_jobs": boot.recovered_jobs,
        }
        with self._pool.writing("recording the daemon start") as conn:
            conn.execute(queries.INSERT_BOOT, params)

    def latest_boot(self) -> Boot | None:
        """Return the most recent daemon start, if any."""
        with self._pool.querying("reading daemon starts") as conn:
            row = conn.execute(queries.SELECT_LATEST_BOOT).fetchone()
        if row is None:
            return None
        boot_id, started_at, pid, version, recovered = row
        return Boot(boot_id, utc_or_none(started_at), pid, version, recovered)

    # -- maintenance -----------------------------------------------------------
    def task_runs(self) -> dict[str, TaskRun]:
        """Return the remembered outcome of each maintenance task, by task name."""
        with self._pool.querying("reading maintenance history") as conn:
            rows = conn.execute(queries.SELECT_MAINTENANCE_RUNS).fetchall()
        return {
            task: TaskRun(
                task,
                utc_or_none(success),
                utc_or_none(attempt),
                error,
                json.loads(result) if result else {},
            )
            for task, success, attempt, error, result in rows
        }

    def record_task_success(self, task: str, at: datetime, result: dict[str, Any]) -> None:
        """Remember that `task` succeeded at `at` with `result` (JSON values)."""
        params = {"task": task, "at": at, "result": json.dumps(result)}
        with self._pool.writing(f"recording {task}") as conn:
            conn.execute(queries.RECORD_TASK_SUCCESS, params)

    def record_task_failure(self, task: str, at: datetime, error: str) -> None:
        """Remember that `task` failed at `at`."""
        params = {"task": task, "at": at, "error": error}
        with self._pool.writing(f"recording {task}") as conn:
            conn.execute(queries.RECORD_TASK_FAILURE, params)

    # -- backups -------------------------------------------------------------------
    def record_backup(self, path: Path, created_at: datetime, size_bytes: int) -> None:
        """Remember a backup that passed its verification."""
        with self._pool.writing("recording a backup") as conn:
            conn.execute(queries.RECORD_BACKUP, (str(path), created_at, size_bytes, "ok"))

    def backup_record(self, path: Path) -> BackupRecord | None:
        """Return what is remembered about the backup at `path`, if anything."""
        with self._pool.querying("reading backup records") as conn:
            row = conn.execute(queries.SELECT_BACKUP_RECORD, (str(path),)).fetchone()
        return None if row is None else BackupRecord(utc_or_none(row[0]), row[1], row[2])

    def forget_backups(self, paths: Sequence[Path]) -> None:
        """Drop the records of backups that were deleted."""
        with self._pool.writing("forgetting pruned backups") as conn, conn.cursor() as cursor:
            cursor.executemany(queries.FORGET_BACKUP, [(str(path),) for path in paths])

    # -- webhook outbox --------------------------------------------------------------
    def due_notifications(
        self, endpoint: str, now: datetime, limit: int, latest: datetime
    ) -> list[Notification]:
        """Return notifications for `endpoint` whose next attempt is due, oldest first.

        One scheduled after `latest` also counts as due: no backoff is that
        long, so the wall clock must have been set back since it was stored.
        """
        params = {"endpoint": endpoint, "now": now, "latest": latest, "limit": limit}
        with self._pool.querying("reading the webhook outbox") as conn:
            rows = conn.execute(queries.SELECT_DUE_NOTIFICATIONS, params).fetchall()
        return [
            Notification(row_id, url, event, job_id, payload.encode("utf-8"), attempts)
            for row_id, url, event, job_id, payload, attempts in rows
        ]

    def next_notification_due(self, endpoint: str) -> datetime | None:
        """Return when the next notification for `endpoint` is due, if any is queued."""
        with self._pool.querying("reading the webhook outbox") as conn:
            row = conn.execute(queries.SELECT_NEXT_NOTIFICATION_DUE, (endpoint,)).fetchone()
        return None if row is None else utc_or_none(row[0])

    def mark_delivered(self, notification_id: int) -> None:
        """Delete a notification the endpoint accepted."""
        with self._pool.writing("recording a webhook delivery") as conn:
            conn.execute(queries.DELETE_NOTIFICATION, (notification_id,))

    def reschedule(self, notification_id: int, next_attempt_at: datetime, error: str) -> None:
        """Count a failed attempt and set when to try again."""
        params = (next_attempt_at, error, notification_id)
        with self._pool.writing("recording a webhook failure") as conn:
            conn.execute(queries.RESCHEDULE_NOTIFICATION, params)

    def outbox_summary(self) -> list[OutboxSummary]:
        """Summarise undelivered notifications per endpoint."""
        with self._pool.querying("reading the webhook outbox") as conn:
            rows = conn.execute(queries.SUMMARIZE_OUTBOX).fetchall()
        return [
            OutboxSummary(endpoint, count, utc_or_none(oldest), attempts, utc_or_none(due))
            for endpoint, count, oldest, attempts, due in rows
        ]

    # -- engine sessions ---------------------------------------------------------
    def engine_sessions_alive(self) -> int:
        """Count the engine sessions neither closed nor declared gone (SPEC §9)."""
        with self._pool.querying("counting engine sessions") as conn:
            row = conn.execute(queries.COUNT_LIVE_SESSIONS).fetchone()
        return 0 if row is None else int(row[0])
