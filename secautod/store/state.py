"""secautod's own records on either SQL backend: boots, maintenance runs, backups, outbox.

These tables sit beside the shared `jobs` table, the same on SQLite and
PostgreSQL; a backend gives its queries, how it stores times, and how it
runs one statement over many rows. The daemon and the CLI reach them
through `JobStore.state`.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from secautod.store.base import Clock, SupervisorState
from secautod.store.common import Connection, Pool, TimeForm
from secautod.store.records import BackupRecord, Boot, Notification, OutboxSummary, TaskRun


class TableSupervisorState(SupervisorState):
    """secautod's bookkeeping tables, read and written through a backend's pool."""

    queries: ClassVar[ModuleType]
    times: ClassVar[TimeForm]

    def __init__(self, pool: Pool[Connection], clock: Clock) -> None:
        self._pool = pool
        self._clock = clock

    @staticmethod
    @abc.abstractmethod
    def execute_many(conn: Connection, query: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run `query` once per row of `rows` on `conn`."""

    # -- boots -----------------------------------------------------------------
    def record_boot(self, boot: Boot) -> None:
        """Remember a daemon start (again with the final recovered count)."""
        params = {
            "boot_id": boot.boot_id,
            "started_at": self.times.bind(boot.started_at or self._clock()),
            "pid": boot.pid,
            "version": boot.version,
            "recovered_jobs": boot.recovered_jobs,
        }
        with self._pool.writing("recording the daemon start") as conn:
            conn.execute(self.queries.INSERT_BOOT, params)

    def latest_boot(self) -> Boot | None:
        """Return the most recent daemon start, if any."""
        with self._pool.querying("reading daemon starts") as conn:
            row = conn.execute(self.queries.SELECT_LATEST_BOOT).fetchone()
        if row is None:
            return None
        boot_id, started_at, pid, version, recovered = row
        return Boot(boot_id, self.times.read(started_at), pid, version, recovered)

    # -- maintenance -----------------------------------------------------------
    def task_runs(self) -> dict[str, TaskRun]:
        """Return the remembered outcome of each maintenance task, by task name."""
        with self._pool.querying("reading maintenance history") as conn:
            rows = conn.execute(self.queries.SELECT_MAINTENANCE_RUNS).fetchall()
        return {
            task: TaskRun(
                task,
                self.times.read(success),
                self.times.read(attempt),
                error,
                json.loads(result) if result else {},
            )
            for task, success, attempt, error, result in rows
        }

    def record_task_success(self, task: str, at: datetime, result: dict[str, Any]) -> None:
        """Remember that `task` succeeded at `at` with `result` (JSON values)."""
        params = {"task": task, "at": self.times.bind(at), "result": json.dumps(result)}
        with self._pool.writing(f"recording {task}") as conn:
            conn.execute(self.queries.RECORD_TASK_SUCCESS, params)

    def record_task_failure(self, task: str, at: datetime, error: str) -> None:
        """Remember that `task` failed at `at`."""
        params = {"task": task, "at": self.times.bind(at), "error": error}
        with self._pool.writing(f"recording {task}") as conn:
            conn.execute(self.queries.RECORD_TASK_FAILURE, params)

    # -- backups -------------------------------------------------------------------
    def record_backup(self, path: Path, created_at: datetime, size_bytes: int) -> None:
        """Remember a backup that passed its verification."""
        row = (str(path), self.times.bind(created_at), size_bytes, "ok")
        with self._pool.writing("recording a backup") as conn:
            conn.execute(self.queries.RECORD_BACKUP, row)

    def backup_record(self, path: Path) -> BackupRecord | None:
        """Return what is remembered about the backup at `path`, if anything."""
        with self._pool.querying("reading backup records") as conn:
            row = conn.execute(self.queries.SELECT_BACKUP_RECORD, (str(path),)).fetchone()
        return None if row is None else BackupRecord(self.times.read(row[0]), row[1], row[2])

    def forget_backups(self, paths: Sequence[Path]) -> None:
        """Drop the records of backups that were deleted."""
        with self._pool.writing("forgetting pruned backups") as conn:
            self.execute_many(conn, self.queries.FORGET_BACKUP, [(str(path),) for path in paths])

    # -- webhook outbox --------------------------------------------------------------
    def due_notifications(
        self, endpoint: str, now: datetime, limit: int, latest: datetime
    ) -> list[Notification]:
        """Return notifications for `endpoint` whose next attempt is due, oldest first.

        One scheduled after `latest` also counts as due: no backoff is that
        long, so the wall clock must have been set back since it was stored.
        """
        params = {
            "endpoint": endpoint,
            "now": self.times.bind(now),
            "latest": self.times.bind(latest),
            "limit": limit,
        }
        with self._pool.querying("reading the webhook outbox") as conn:
            rows = conn.execute(self.queries.SELECT_DUE_NOTIFICATIONS, params).fetchall()
        return [
            Notification(row_id, url, event, job_id, payload.encode("utf-8"), attempts)
            for row_id, url, event, job_id, payload, attempts in rows
        ]

    def next_notification_due(self, endpoint: str) -> datetime | None:
        """Return when the next notification for `endpoint` is due, if any is queued."""
        with self._pool.querying("reading the webhook outbox") as conn:
            query = self.queries.SELECT_NEXT_NOTIFICATION_DUE
            row = conn.execute(query, (endpoint,)).fetchone()
        return None if row is None else self.times.read(row[0])

    def mark_delivered(self, notification_id: int) -> None:
        """Delete a notification the endpoint accepted."""
        with self._pool.writing("recording a webhook delivery") as conn:
            conn.execute(self.queries.DELETE_NOTIFICATION, (notification_id,))

    def reschedule(self, notification_id: int, next_attempt_at: datetime, error: str) -> None:
        """Count a failed attempt and set when to try again."""
        params = (self.times.bind(next_attempt_at), error, notification_id)
        with self._pool.writing("recording a webhook failure") as conn:
            conn.execute(self.queries.RESCHEDULE_NOTIFICATION, params)

    def outbox_summary(self) -> list[OutboxSummary]:
        """Summarise undelivered notifications per endpoint."""
        read = self.times.read
        with self._pool.querying("reading the webhook outbox") as conn:
            rows = conn.execute(self.queries.SUMMARIZE_OUTBOX).fetchall()
        return [
            OutboxSummary(endpoint, count, read(oldest), attempts, read(due))
            for endpoint, count, oldest, attempts, due in rows
        ]

    # -- engine sessions ---------------------------------------------------------
    def engine_sessions_alive(self) -> int:
        """Count the engine sessions neither closed nor declared gone (SPEC §9)."""
        with self._pool.querying("counting engine sessions") as conn:
            row = conn.execute(self.queries.COUNT_LIVE_SESSIONS).fetchone()
        return 0 if row is None else int(row[0])
