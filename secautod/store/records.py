"""Plain values the store hands out: its bookkeeping records and summaries.

Every backend returns these, so nothing outside `store/` ever sees a row,
a cursor or a driver type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

# One job in the table's text form, columns in `jobs.JOB_COLUMNS` order: JSON
# texts for playbook, context and results, timestamps as `format_timestamp` writes.
EncodedJob = tuple[
    str, str, str, str, str | None, str | None, str, str | None, str | None, str | None
]


@dataclass(frozen=True, slots=True)
class ExportBatch:
    """One batch of `JobStore.export_jobs`, read in rowid order.

    `jobs` are the readable rows in the table's text form (as
    `import_encoded_jobs` takes them), `unreadable` the rows secautod cannot
    read; `last_rowid` is where the next batch starts (None: no rows were left).
    """

    jobs: list[EncodedJob]
    unreadable: list[UnreadableRow]
    last_rowid: int | None


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
class StoreSize:
    """How much room the store takes, in bytes.

    SQLite: the database file and its write-ahead log. PostgreSQL: secautod's
    tables with their indexes and TOAST; `wal_bytes` is None there, since the
    server's WAL is shared by all its databases and is not secautod's to show.
    """

    database_bytes: int
    wal_bytes: int | None


@dataclass(frozen=True, slots=True)
class JobFigures:
    """The jobs table at a glance, for metrics: counts per status and the oldest waits.

    `by_status` holds every status found (other writers may store unknown
    ones); the times are None when no job is pending or running.
    """

    by_status: dict[str, int]
    oldest_pending_created_at: datetime | None
    oldest_running_started_at: datetime | None


# The webhook event queued, in the recovery's transaction, for each `RecoveredJob`.
JOB_RECOVERED = "job_recovered"


@dataclass(frozen=True, slots=True)
class RecoveredJob:
    """A job recovery just failed, with its times as ISO 8601 text (as stored if unreadable).

    `id` is None for a row whose id secautod cannot read (a BLOB, a number):
    `rowid` names it then.
    """

    id: str | None
    rowid: int
    created_at: str | None
    started_at: str | None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What the store holds about an engine session: who, its lease, whether it ended."""

    session_id: str
    name: str
    host: str
    boot_id: str
    pid_namespace: str
    pid: int
    process_start: str
    lease: timedelta
    opened_at: datetime | None
    renewed_at: datetime | None
    renewals: int
    closed_at: datetime | None = None
    gone_at: datetime | None = None
    gone_reason: str | None = None
    running_jobs: int = 0  # running jobs it claims

    @property
    def alive(self) -> bool:
        """Tell whether the session is neither closed nor declared gone."""
        return self.closed_at is None and self.gone_at is None

    def describe(self) -> str:
        """Name the session for people: `'engine' on host h1, pid 1234`."""
        return f"{self.name!r} on host {self.host}, pid {self.pid}"


@dataclass(frozen=True, slots=True)
class Recovery:
    """Which running jobs one recovery fails, and why.

    With `session_id`, the jobs that session claims (and the session is
    declared gone in the same transaction); without it, the running jobs no
    live session claims, narrowed by `started_before` / `updated_before`.
    """

    reason: str
    error: str
    session_id: str | None = None
    started_before: datetime | None = None
    updated_before: datetime | None = None


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


@dataclass(frozen=True, slots=True)
class Candidate:
    """A secautod instance as the leader election knows it (SPEC §11)."""

    instance_id: str  # the daemon's boot id: a restarted daemon is a new candidate
    host: str
    pid: int

    def describe(self) -> str:
        """Name the instance for people: `host h1, pid 1234`."""
        return f"host {self.host}, pid {self.pid}"


@dataclass(frozen=True, slots=True)
class Fence:
    """The fencing token every maintenance write of a leader carries.

    A write with a fence commits only while `term` is the current term, held
    by `instance_id`, and its lease has not run out.
    """

    term: int
    instance_id: str
    lease: timedelta  # a fenced transaction left idle longer is ended by the server


@dataclass(frozen=True, slots=True)
class LeaderRecord:
    """Who holds the maintenance lease, since when, and until when."""

    term: int
    holder: Candidate
    acquired_at: datetime
    expires_at: datetime
    remaining: timedelta  # left on the lease by the server's clock when read (<= 0: ran out)

    @property
    def current(self) -> bool:
        """Tell whether the lease still ran when this was read."""
        return self.remaining > timedelta(0)
