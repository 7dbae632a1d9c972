"""The job record and its status values, as the shared `jobs` table holds them."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from secautod.errors import InvalidJobError
from secautod.timestamps import isoformat_utc, require_aware, utc_now


class JobStatus(enum.StrEnum):
    """Where a job is in its life; the string values are stored in the table."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Tell whether a job in this status is finished for good."""
        return self in TERMINAL_STATUSES

    @classmethod
    def parse(cls, value: str | JobStatus) -> JobStatus:
        """Return the status named `value`, or raise `InvalidJobError`."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(status.value for status in cls)
            raise InvalidJobError(
                f"unknown job status {value!r} (expected one of: {known})"
            ) from None


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
# The columns of the shared `jobs` table (SPEC §1), in table order; also the
# fields of a job in the legacy JSON file.
JOB_COLUMNS = (
    "id",
    "status",
    "playbook",
    "context",
    "results",
    "error",
    "created_at",
    "started_at",
    "completed_at",
    "updated_at",
)


@dataclass(slots=True)
class Job:
    """One playbook run.

    Timestamps are timezone-aware UTC datetimes with millisecond precision
    (what the table keeps); `playbook`, `context` and `results` are decoded
    JSON values. `updated_at` is maintained by the store.
    """

    id: str
    status: JobStatus
    playbook: Any
    context: Any
    created_at: datetime
    results: Any = None
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InvalidJobError(f"job id must be a non-empty string, got {self.id!r}")
        self.status = JobStatus.parse(self.status)
        self.error = checked_error_text(self.error, self.id)
        self.created_at = _stored_precision(self.created_at, f"job {self.id}: created_at")
        for name in ("started_at", "completed_at", "updated_at"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _stored_precision(value, f"job {self.id}: {name}"))

    @classmethod
    def from_store(
        cls,
        *,
        id: str,
        status: JobStatus,
        playbook: Any,
        context: Any,
        created_at: datetime,
        results: Any,
        error: str | None,
        started_at: datetime | None,
        completed_at: datetime | None,
        updated_at: datetime | None,
    ) -> Job:
        """Build a job from values the store has already decoded and checked.

        Skips validation: every datetime must be aware UTC at millisecond
        precision and `status` a `JobStatus`. Everyone else uses `Job(...)`.
        """
        job = object.__new__(cls)
        job.id = id
        job.status = status
        job.playbook = playbook
        job.context = context
        job.created_at = created_at
        job.results = results
        job.error = error
        job.started_at = started_at
        job.completed_at = completed_at
        job.updated_at = updated_at
        return job

    def to_dict(self) -> dict[str, Any]:
        """Return the job as JSON-ready values, timestamps in ISO 8601 UTC."""
        return {
            "id": self.id,
            "status": self.status.value,
            "playbook": self.playbook,
            "context": self.context,
            "results": self.results,
            "error": self.error,
            "created_at": isoformat_utc(self.created_at),
            "started_at": _iso_or_none(self.started_at),
            "completed_at": _iso_or_none(self.completed_at),
            "updated_at": _iso_or_none(self.updated_at),
        }

    @classmethod
    def create(
        cls,
        playbook: Any,
        context: Any,
        *,
        job_id: str | None = None,
        now: datetime | None = None,
    ) -> Job:
        """Make a new pending job with a random id (unless one is given)."""
        return cls(
            id=job_id or str(uuid.uuid4()),
            status=JobStatus.PENDING,
            playbook=playbook,
            context=context,
            created_at=now or utc_now(),
        )


def checked_error_text(value: object, job_id: str) -> str | None:
    """Return `value` as a job's error text, or raise `InvalidJobError` if it is not text."""
    if value is None or isinstance(value, str):
        return value
    raise InvalidJobError(
        f"job {job_id}: error must be text or None, got {type(value).__name__} {value!r}"
    )


def _stored_precision(value: datetime, name: str) -> datetime:
    """Return `value` in UTC cut to the millisecond, the precision the table keeps."""
    utc = require_aware(value, name)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def _iso_or_none(value: datetime | None) -> str | None:
    return None if value is None else isoformat_utc(value)


@dataclass(frozen=True, slots=True)
class JobStats:
    """Counts of jobs by status, computed in one query."""

    total: int
    by_status: dict[JobStatus, int]
    other: int = 0  # rows whose status another writer set to a value not in JobStatus

    @property
    def success_rate(self) -> float | None:
        """Completed jobs as a fraction of those that completed or failed.

        Cancelled jobs are left out: an operator stopping a job is not a
        failure of the playbook. None when no job has completed or failed.
        """
        completed = self.by_status.get(JobStatus.COMPLETED, 0)
        finished = completed + self.by_status.get(JobStatus.FAILED, 0)
        return None if finished == 0 else completed / finished
