"""Plain values the store hands out: its bookkeeping records and summaries.

Every backend returns these, so nothing outside `store/` ever sees a row,
a cursor or a driver type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

# One job in the table's text form, columns in `jobs.JOB_COLUMNS` order: JSON
# texts for playbook, context and results, timestamps as `format_timestamp` writes.
EncodedJob = tuple[
    str, str, str, str, str | None, str | None, str, str | None, str | None, str | None
]


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """What an import did."""

    imported: int
    skipped: int


@dataclass(frozen=True, slots=True)
class TaskRun:
    """The remembered outcome of a maintenance task."""

    task: str
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    last_result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Notification:
    """A webhook notification waiting in the outbox; `body` is the exact bytes to POST."""

    id: int
    endpoint: str
    event: str
    job_id: str | None
    body: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    """Undelivered notifications for one endpoint."""

    endpoint: str
    count: int
    oldest_created_at: datetime | None
    max_attempts: int
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class BackupRecord:
    """What the store remembers about a backup it wrote."""

    created_at: datetime | None
    size_bytes: int
    integrity: str


@dataclass(frozen=True, slots=True)
class Boot:
    """One start of the daemon."""

    boot_id: str
    started_at: datetime | None
    pid: int
    version: str
    recovered_jobs: int


@dataclass(frozen=True, slots=True)
class DatabaseFileSummary:
    """What verifying a database or backup file learned about a file it found sound."""

    path: Path
    schema_version: int
    jobs: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class JobFigures:
    """The jobs table at a glance, for metrics: counts per status and the oldest waits.

    `by_status` holds every status found (other writers may store unknown
    ones); the times are None when no job is pending or running.
    """

    by_status: dict[str, int]
    oldest_pending_created_at: datetime | None
    oldest_running_started_at: datetime | None


@dataclass(frozen=True, slots=True)
class RecoveredJob:
    """A job recovery just failed, with its times as ISO 8601 text (as stored if unreadable)."""

    id: str
    created_at: str | None
    started_at: str | None


def describe_problems(problems: list[str], shown: int = 3) -> str:
    """Summarise integrity complaints on one line: the first few and a count."""
    text = "; ".join(problems[:shown])
    return text if len(problems) <= shown else f"{text} (and {len(problems) - shown} more)"
