"""What the SQL backends share: the shape of their connections and records built from rows.

Each backend keeps its SQL in its own `queries.py` (the same names on both)
and says how it stores a time (`TimeForm`); the code here runs those
statements and turns their rows into records, whichever driver answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from secautod.errors import InvalidJobError
from secautod.jobs import JobStats, JobStatus
from secautod.store.records import JobFigures, SessionRecord
from secautod.timestamps import require_aware


class Cursor(Protocol):
    """What a statement's result offers on both drivers."""

    @property
    def rowcount(self) -> int:
        """Rows the statement changed."""

    def fetchone(self) -> Any:
        """Return the next row, or None."""

    def fetchall(self) -> list[Any]:
        """Return the remaining rows."""

    def __iter__(self) -> Iterator[Any]:
        """Yield the remaining rows one by one."""


class Connection(Protocol):
    """What a connection offers on both drivers: one statement at a time."""

    def execute(self, query: str, params: Any = ..., /) -> Cursor:
        """Run `query` with bound `params`."""


Conn = TypeVar("Conn", bound=Connection)
Conn_co = TypeVar("Conn_co", bound=Connection, covariant=True)


class Pool(Protocol[Conn_co]):
    """A backend's connection pool: the three kinds of block every method runs in."""

    def querying(self, action: str) -> AbstractContextManager[Conn_co]:
        """Run one statement as its own transaction."""

    def writing(self, action: str) -> AbstractContextManager[Conn_co]:
        """Run the block as one write transaction."""

    def reading(self, action: str) -> AbstractContextManager[Conn_co]:
        """Run several reads against one consistent snapshot."""


@dataclass(frozen=True, slots=True)
class TimeForm:
    """How a backend binds, writes and reads times.

    `bind` turns an aware datetime into a statement parameter (a bound to
    compare with, or a bookkeeping time); `stamp` into the value a job or
    session row is stamped with, exactly as it reads back; `read` turns a
    stored value into aware UTC (None for a missing one).
    """

    bind: Callable[[datetime], object]
    stamp: Callable[[datetime], object]
    read: Callable[[Any], datetime | None]


def listing_params(
    status: str | None,
    limit: int | None,
    since: datetime | None,
    until: datetime | None,
    after: str | None,
    times: TimeForm,
) -> dict[str, object]:
    """Return the bound parameters of a listing; their names pick its filters."""
    params: dict[str, object] = {}
    if status is not None:
        if not isinstance(status, str) or not status:
            raise InvalidJobError(f"status must be non-empty text, got {status!r}")
        params["status"] = status
    if since is not None:
        params["since"] = times.bind(require_aware(since, "since"))
    if until is not None:
        params["until"] = times.bind(require_aware(until, "until"))
    if after is not None:
        params["after"] = after
    if limit is not None:
        if limit < 0:
            raise InvalidJobError(f"limit must not be negative, got {limit}")
        params["limit"] = limit
    return params


def job_stats(rows: Sequence[tuple[Any, Any]]) -> JobStats:
    """Build `JobStats` from (status, count) rows; unknown statuses count as other."""
    by_status = dict.fromkeys(JobStatus, 0)
    other = 0
    for status, count in rows:
        if status in by_status:
            by_status[JobStatus(status)] = count
        else:
            other += count
    return JobStats(total=sum(count for _, count in rows), by_status=by_status, other=other)


def expired_counts(rows: Sequence[tuple[Any, Any]]) -> dict[JobStatus, int]:
    """Build the per-status counts of expired jobs from (status, count) rows (0 for none)."""
    counts = dict.fromkeys([status for status in JobStatus if status.is_terminal], 0)
    counts.update({JobStatus(status): count for status, count in rows})
    return counts


def job_figures(
    counts: Sequence[tuple[Any, Any]], pending: object, running: object, times: TimeForm
) -> JobFigures:
    """Build `JobFigures` from (status, count) rows and the two oldest stored times."""
    return JobFigures(
        by_status={str(status): int(count) for status, count in counts},
        oldest_pending_created_at=times.read(pending),
        oldest_running_started_at=times.read(running),
    )


def session_record(row: Sequence[Any], times: TimeForm) -> SessionRecord:
    """Build a `SessionRecord` from a row of a sessions query (`_SESSION_COLUMNS`, running jobs)."""
    (session_id, name, host, boot_id, namespace, pid, start, lease, opened, renewed,
     renewals, closed, gone, reason, running) = row  # fmt: skip
    return SessionRecord(
        session_id=session_id,
        name=name,
        host=host,
        boot_id=boot_id,
        pid_namespace=namespace,
        pid=int(pid),
        process_start=str(start),
        lease=timedelta(seconds=float(lease)),
        opened_at=times.read(opened),
        renewed_at=times.read(renewed),
        renewals=int(renewals),
        closed_at=times.read(closed),
        gone_at=times.read(gone),
        gone_reason=reason,
        running_jobs=int(running),
    )


def first_duplicate(ids: list[str]) -> str | None:
    """Return the first id that appears a second time in `ids`, if any."""
    seen: set[str] = set()
    for job_id in ids:
        if job_id in seen:
            return job_id
        seen.add(job_id)
    return None
