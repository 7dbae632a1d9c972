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
class RecoveredJob:
    """A job recovery just failed, with its times as ISO 8601 text (as stored if unreadable)."""

    id: str
    created_at: str | None
    started_at: str | None


def describe_problems(problems: list[str], shown: int = 3) -> str:
    """Summarise integrity complaints on one line: the first few and a count."""
    text = "; ".join(problems[:shown])
    return text if len(problems) <= shown else f"{text} (and {len(problems) - shown} more)"


@dataclass(frozen=True, slots=True)
class UnreadableRow:
    """A row of the `jobs` table secautod cannot read, named by its `rowid`.

    Another program wrote it (a BLOB id, text that is not JSON or not UTF-8,
    a date no reader knows); the file itself is sound. `job_id` and `status`
    are given when they are text.
    """

    rowid: int
    job_id: str | None
    status: str | None
    problem: str

    def to_dict(self) -> dict[str, Any]:
        """Return the row's readable facts as JSON-ready values."""
        return {
            "rowid": self.rowid,
            "id": self.job_id,
            "status": self.status,
            "unreadable": self.problem,
        }


@dataclass(frozen=True, slots=True)
class JobSummary:
    """The columns a job listing prints, read without the job's context or results.

    `status` is the stored text (other writers use statuses secautod does not
    know, such as `queued`); `error` may be cut short.
    """

    id: str
    status: str
    created_at: datetime
    updated_at: datetime | None
    playbook_name: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class UndatableJobs:
    """Finished jobs whose dates cannot be read, so retention never deletes them."""

    count: int
    rowids: tuple[int, ...]  # a sample, to name them
