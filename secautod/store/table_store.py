"""The parts of the job store that are the same on both SQL backends.

`TableJobStore` runs a backend's statements (its `queries` module, the same
names on both) through its pool and builds records from the rows; a backend
says how it stores times (`times`), how it reads rows into jobs, and keeps
what differs (imports, recovery, the cleanup loop, backups, checks) to itself.
"""

from __future__ import annotations

import abc
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any, ClassVar, Generic

from secautod.errors import InvalidJobError, JobNotFoundError, SessionLostError, StopCheck
from secautod.jobs import Job, JobStats, JobStatus, checked_error_text
from secautod.processes import ProcessIdentity
from secautod.store.base import JobStore
from secautod.store.common import (
    Conn,
    Pool,
    TimeForm,
    expired_counts,
    job_stats,
    listing_params,
    session_record,
)
from secautod.store.json_text import encode_json
from secautod.store.records import JobSummary, SessionRecord, UnreadableRow
from secautod.timestamps import to_utc_or_none


class TableJobStore(JobStore, Generic[Conn], partial=True):
    """A job store in SQL tables; backends give the hooks below."""

    queries: ClassVar[ModuleType]
    times: ClassVar[TimeForm]
    _pool: Pool[Conn]

    # -- hooks -----------------------------------------------------------------
    @abc.abstractmethod
    def _decode_job(self, conn: Conn, row: tuple[Any, ...]) -> Job:
        """Turn a `JOB_COLUMNS` row into a `Job` (raising `UnreadableJobError`)."""

    @abc.abstractmethod
    def _raw_rows(self, conn: Conn, query: str, params: dict[str, object]) -> list[tuple[Any, ...]]:
        """Run a listing of entries or summaries; rows another writer spoilt must come back too."""

    @abc.abstractmethod
    def _job_entry(self, conn: Conn, row: tuple[Any, ...]) -> Job | UnreadableRow:
        """Turn a `JOB_ENTRY_COLUMNS` row from `_raw_rows` into a `Job` or an `UnreadableRow`."""

    @abc.abstractmethod
    def _job_summary(self, conn: Conn, row: tuple[Any, ...]) -> JobSummary | UnreadableRow:
        """Turn a `JOB_SUMMARY_COLUMNS` row from `_raw_rows` into a `JobSummary`."""

    @staticmethod
    @abc.abstractmethod
    def _bind_ids(job_ids: Sequence[str]) -> object:
        """Bind a list of job ids as one statement parameter."""

    @abc.abstractmethod
    def _delete_expired(
        self,
        cutoff: object,
        *,
        should_stop: StopCheck | None,
        on_progress: Callable[[int], None] | None,
    ) -> int:
        """Delete the finished jobs aged past the bound `cutoff` in short transactions.

        Raise `CleanupAborted` once `should_stop` says so between two of them.
        """

    def _job_write(self, action: str) -> AbstractContextManager[Conn]:
        """Return the block for one job write (fence, write, claim)."""
        return self._pool.writing(action)

    # -- shared ----------------------------------------------------------------
    def ping(self) -> None:
        """Raise `StoreError` unless the database answers a read."""
        with self._pool.querying("checking the database") as conn:
            conn.execute(self.queries.PING).fetchone()

    def load_job(self, job_id: str) -> Job | None:
        """Return the job with `job_id`, or None if there is none."""
        with self._pool.querying(f"loading job {job_id}") as conn:
            row = conn.execute(self.queries.SELECT_JOB, (job_id,)).fetchone()
            return None if row is None else self._decode_job(conn, tuple(row))

    def list_jobs(
        self,
        status: JobStatus | str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
    ) -> list[Job]:
        """Return jobs newest first, by creation time (see `JobStore`)."""
        if status is not None:
            status = JobStatus.parse(status).value
        params = listing_params(status, limit, since, until, after, self.times)
        query = self.queries.list_jobs_query(
            frozenset(params) - {"limit"}, limited=limit is not None
        )
        with self._listing(after) as conn:
            return [self._decode_job(conn, tuple(row)) for row in conn.execute(query, params)]

    def list_job_entries(
        self,
        status: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
    ) -> list[Job | UnreadableRow]:
        """Like `list_jobs`, but a row secautod cannot read becomes an `UnreadableRow`."""
        columns = self.queries.JOB_ENTRY_COLUMNS
        listing = self._raw_listing(columns, status, limit, since, until, after)
        with listing as (conn, rows):
            return [self._job_entry(conn, row) for row in rows]

    def list_job_summaries(
        self,
        status: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
    ) -> list[JobSummary | UnreadableRow]:
        """Like `list_job_entries`, reading only the columns a listing prints."""
        columns = self.queries.JOB_SUMMARY_COLUMNS
        listing = self._raw_listing(columns, status, limit, since, until, after)
        with listing as (conn, rows):
            return [self._job_summary(conn, row) for row in rows]

    @contextmanager
    def _raw_listing(
        self,
        columns: str,
        status: str | None,
        limit: int | None,
        since: datetime | None,
        until: datetime | None,
        after: str | None,
    ) -> Iterator[tuple[Conn, list[tuple[Any, ...]]]]:
        """Run a listing of `columns` (any stored status allowed); give its connection and rows."""
        params = listing_params(status, limit, since, until, after, self.times)
        query = self.queries.list_jobs_query(
            frozenset(params) - {"limit"}, limited=limit is not None, columns=columns
        )
        with self._listing(after) as conn:
            yield conn, self._raw_rows(conn, query, params)

    @contextmanager
    def _listing(self, after: str | None) -> Iterator[Conn]:
        """Give the connection for one listing, checking the page anchor `after` exists."""
        # Paging needs the anchor and the page from one snapshot; a plain listing is one read.
        guard = self._pool.reading if after is not None else self._pool.querying
        with guard("listing jobs") as conn:
            exists = self.queries.JOB_EXISTS
            if after is not None and conn.execute(exists, (after,)).fetchone() is None:
                raise JobNotFoundError(after)
            yield conn

    def update_job_status(
        self, job_id: str, status: JobStatus | str, *, now: datetime | None = None
    ) -> None:
        """Set a job's status and the times it implies (see `JobStore`)."""
        new_status = JobStatus.parse(status)
        stamp = self.times.stamp(to_utc_or_none(now, "now") or self._clock())
        params = {"id": job_id, "status": new_status.value, "now": stamp}
        with self._job_write(f"updating job {job_id}") as conn:
            session_id = self._fence(conn, job_id, claiming=new_status is JobStatus.RUNNING)
            if conn.execute(self.queries.UPDATE_JOB_STATUS, params).rowcount == 0:
                raise JobNotFoundError(job_id)
            if session_id is not None:
                self._update_claim(conn, job_id, session_id, new_status, stamp)

    def update_job_results(self, job_id: str, results: Any, error: str | None = None) -> None:
        """Store a job's results (any JSON value) and error text."""
        params = {
            "id": job_id,
            "results": None if results is None else encode_json(results, job_id, "results"),
            "error": checked_error_text(error, job_id),
            "now": self.times.stamp(self._clock()),
        }
        with self._job_write(f"updating job {job_id}") as conn:
            self._fence(conn, job_id, claiming=False)
            if conn.execute(self.queries.UPDATE_JOB_RESULTS, params).rowcount == 0:
                raise JobNotFoundError(job_id)

    def _fence(self, conn: Conn, job_id: str, *, claiming: bool) -> str | None:
        """Refuse a write from a session declared gone; return the attached session, if any."""
        session_id = self._session_id
        if session_id is None:
            return None
        params = {"session_id": session_id, "id": job_id, "claiming": claiming}
        row = conn.execute(self.queries.SESSION_FENCED, params).fetchone()
        if row is not None:
            raise SessionLostError(
                f"job {job_id}: engine session {session_id} was declared gone ({row[0]}); "
                f"the job's recovered outcome stands: open a new session to go on"
            )
        return session_id

    def _update_claim(
        self, conn: Conn, job_id: str, session_id: str, status: JobStatus, now: object
    ) -> None:
        """Claim a job the session moved to `running`; let go of one it moved on."""
        params = {"id": job_id, "session_id": session_id, "now": now}
        if status is JobStatus.RUNNING:
            conn.execute(self.queries.CLAIM_JOB, params)
        else:
            conn.execute(self.queries.RELEASE_CLAIM, params)

    def delete_job(self, job_id: str) -> bool:
        """Delete a job; return True if it existed."""
        with self._pool.writing(f"deleting job {job_id}") as conn:
            return bool(conn.execute(self.queries.DELETE_JOB, (job_id,)).rowcount)

    def get_stats(self) -> JobStats:
        """Count jobs per status in one query."""
        with self._pool.querying("counting jobs") as conn:
            rows = conn.execute(self.queries.COUNT_JOBS_BY_STATUS).fetchall()
        return job_stats(rows)

    def cleanup_old_jobs(
        self,
        max_age: timedelta,
        *,
        now: datetime | None = None,
        should_stop: StopCheck | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete finished jobs older than `max_age`; return how many went (see `JobStore`)."""
        if max_age <= timedelta(0):
            raise InvalidJobError(f"max_age must be positive, got {max_age}")
        cutoff = self.times.bind((to_utc_or_none(now, "now") or self._clock()) - max_age)
        return self._delete_expired(cutoff, should_stop=should_stop, on_progress=on_progress)

    def count_expired_jobs(
        self, max_age: timedelta, *, now: datetime | None = None
    ) -> dict[JobStatus, int]:
        """Count, per status, the jobs `cleanup_old_jobs` would delete now."""
        cutoff = self.times.bind((to_utc_or_none(now, "now") or self._clock()) - max_age)
        with self._pool.querying("counting old jobs") as conn:
            query = self.queries.COUNT_EXPIRED_BY_STATUS
            rows = conn.execute(query, {"cutoff": cutoff}).fetchall()
        return expired_counts(rows)

    # -- engine sessions ---------------------------------------------------------
    def open_engine_session(self, identity: ProcessIdentity, name: str, lease: timedelta) -> str:
        """Record a new live session for the process `identity`; return its id."""
        session_id = secrets.token_hex(8)
        params = {
            "session_id": session_id,
            "name": name,
            "host": identity.host,
            "boot_id": identity.boot_id,
            "pid_namespace": identity.pid_namespace,
            "pid": identity.pid,
            "process_start": identity.start_time,
            "lease_seconds": lease.total_seconds(),
            "now": self.times.stamp(self._clock()),
        }
        with self._pool.writing("opening an engine session") as conn:
            conn.execute(self.queries.OPEN_SESSION, params)
        return session_id

    def renew_engine_session(self, session_id: str) -> bool:
        """Renew a session's lease (one write); False once it was declared gone."""
        params = {"session_id": session_id, "now": self.times.stamp(self._clock())}
        with self._pool.writing("renewing an engine session") as conn:
            return bool(conn.execute(self.queries.RENEW_SESSION, params).rowcount)

    def close_engine_session(self, session_id: str) -> None:
        """Mark a session closed; jobs it still claims as running are then recoverable."""
        params = {"session_id": session_id, "now": self.times.stamp(self._clock())}
        with self._pool.writing("closing an engine session") as conn:
            conn.execute(self.queries.CLOSE_SESSION, params)

    def engine_sessions(self, *, include_ended: bool = False) -> list[SessionRecord]:
        """Return the sessions a check looks at (with `include_ended`: all, with job counts)."""
        queries = self.queries
        query = queries.SELECT_ALL_SESSIONS if include_ended else queries.SELECT_SESSIONS_TO_CHECK
        with self._pool.querying("reading engine sessions") as conn:
            rows = conn.execute(query).fetchall()
        return [session_record(row, self.times) for row in rows]

    def job_claims(self, job_ids: Sequence[str]) -> dict[str, SessionRecord]:
        """Return, for each of `job_ids` a session claims, the session that does."""
        params = {"job_ids": self._bind_ids(job_ids)}
        with self._pool.querying("reading job claims") as conn:
            rows = conn.execute(self.queries.SELECT_JOB_CLAIMS, params).fetchall()
        return {str(row[0]): session_record(row[1:], self.times) for row in rows}
