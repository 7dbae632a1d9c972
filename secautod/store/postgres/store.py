"""The PostgreSQL backend: one job store shared by engines and secautods on several hosts.

`JobStore("postgresql://user@host/db")` opens it (`postgres://` too).
Connections come from a psycopg pool; every method runs one transaction
and returns `Job` objects or plain values, as on SQLite.

Types: times are `timestamptz` (every connection works in UTC); playbook,
context and results are JSON *text* in `text` columns, as on SQLite, so a
writer's exact text comes back, one decoding path serves both backends,
and escaped NUL characters are kept (`jsonb` refuses them). Readers that want
JSON operators cast (`playbook::jsonb`). See README, "Scaling out".
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from secautod.errors import (
    InvalidJobError,
    JobNotFoundError,
    SessionLostError,
    StopCheck,
)
from secautod.jobs import JOB_COLUMNS, Job, JobStats, JobStatus, checked_error_text
from secautod.processes import ProcessIdentity
from secautod.store.base import (
    DEFAULT_BUSY_TIMEOUT_SECONDS,
    BackupCheck,
    Clock,
    JobStore,
    RecoveryBody,
    Synchronous,
    redact_password,
)
from secautod.store.json_text import encode_job, encode_json
from secautod.store.postgres import queries
from secautod.store.postgres.checks import integrity_problems, quick_problems
from secautod.store.postgres.connection import (
    ConnectionPool,
    connect,
    connection_options,
    translating,
)
from secautod.store.postgres.dump import Server, database_name, write_dump
from secautod.store.postgres.rows import (
    decode_job,
    job_entry,
    job_summary,
    stored_time,
    utc_or_none,
)
from secautod.store.postgres.schema import migrate
from secautod.store.postgres.state import PostgresSupervisorState
from secautod.store.records import (
    Candidate,
    EncodedJob,
    ExportBatch,
    Fence,
    ImportCounts,
    JobFigures,
    JobSummary,
    LeaderRecord,
    RecoveredJob,
    Recovery,
    SessionRecord,
    StoreSize,
    UndatableJobs,
    UnreadableRow,
)
from secautod.timestamps import (
    format_timestamp,
    isoformat_utc,
    require_aware,
    to_utc_or_none,
    utc_now,
)

JOB_RECOVERED = "job_recovered"
# Cleanup deletes this many expired jobs per transaction.
CLEANUP_BATCH_ROWS = 500


class PostgresJobStore(JobStore):
    """The job store in a PostgreSQL database (its schema created and migrated on open).

    `password` is used when `url` carries none (else libpq's passfile or
    service file apply). `busy_timeout` becomes `lock_timeout`: how long a
    write waits for a row another session holds. `synchronous="NORMAL"`
    turns `synchronous_commit` off: faster, may lose the last commits on a
    server crash, never corrupts. With `create=False` a database without
    secautod's schema is an error. `backup_name` names backup files.
    """

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
        create: bool = True,
        clock: Clock = utc_now,
        backup_directory: Path | None = None,
    ) -> None:
        self.url = url
        self.display_url = redact_password(url)
        self._clock = clock
        database = database_name(url)
        # Backups are named after the database, in `backup_directory` (default: here).
        self.path = (backup_directory or Path.cwd()).absolute() / database
        options = connection_options(password, synchronous, busy_timeout)
        self._server = Server(url, password)
        with translating(url, "opening the job store"), connect(url, options) as conn:
            self.schema_version_found, self.schema_version = migrate(
                conn, url, clock(), create=create
            )
        self._pool = ConnectionPool(
            url, options, synchronous=synchronous, busy_timeout=busy_timeout
        )
        self.state = PostgresSupervisorState(self._pool, clock)

    def close(self) -> None:
        """Close every connection; later calls fail."""
        self._pool.close()

    def ping(self) -> None:
        """Raise `StoreError` unless the database answers a read."""
        with self._pool.querying("checking the database") as conn:
            conn.execute(queries.PING).fetchone()

    # -- jobs ----------------------------------------------------------------
    def save_job(self, job: Job) -> None:
        """Insert `job`, or replace the stored job with the same id."""
        params: dict[str, Any] = dict(zip(JOB_COLUMNS, encode_job(job, self._clock()), strict=True))
        with self._job_write(f"saving job {job.id}") as conn:
            session_id = self._fence(conn, job.id, claiming=job.status is JobStatus.RUNNING)
            conn.execute(queries.UPSERT_JOB, params)
            if session_id is not None:
                now = stored_time(job.updated_at or self._clock())
                self._update_claim(conn, job.id, session_id, job.status, now)

    def load_job(self, job_id: str) -> Job | None:
        """Return the job with `job_id`, or None if there is none."""
        with self._pool.querying(f"loading job {job_id}") as conn:
            row = conn.execute(queries.SELECT_JOB, (job_id,)).fetchone()
        return None if row is None else decode_job(tuple(row))

    def list_jobs(
        self,
        status: JobStatus | str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
    ) -> list[Job]:
        """Return jobs newest first (by creation time).

        `since` is inclusive and `until` exclusive; `after` is the id of the
        last job of the previous page, so the next page starts behind it.
        """
        params: dict[str, object] = {}
        if status is not None:
            params["status"] = JobStatus.parse(status).value
        if since is not None:
            params["since"] = require_aware(since, "since")
        if until is not None:
            params["until"] = require_aware(until, "until")
        if after is not None:
            params["after"] = after
        if limit is not None:
            if limit < 0:
                raise InvalidJobError(f"limit must not be negative, got {limit}")
            params["limit"] = limit
        query = queries.list_jobs_query(frozenset(params) - {"limit"}, limited=limit is not None)
        with self._listing(after) as conn:
            if after is not None and conn.execute(queries.JOB_EXISTS, (after,)).fetchone() is None:
                raise JobNotFoundError(after)
            rows = conn.execute(query, params).fetchall()
        return [decode_job(tuple(row)) for row in rows]

    def list_job_entries(
        self,
        status: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
    ) -> list[Job | UnreadableRow]:
        """Like `list_jobs`, but a row secautod cannot read becomes an `UnreadableRow`."""
        rows = self._listing_rows(queries.JOB_ENTRY_COLUMNS, status, limit, since, until, after)
        return [job_entry(row) for row in rows]

    def list_job_summaries(
        self,
        status: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
    ) -> list[JobSummary | UnreadableRow]:
        """Like `list_job_entries`, reading only the columns a listing prints."""
        rows = self._listing_rows(queries.JOB_SUMMARY_COLUMNS, status, limit, since, until, after)
        return [job_summary(row) for row in rows]

    def load_job_entry(self, job_id: str) -> Job | UnreadableRow | None:
        """Return the job with `job_id`, an `UnreadableRow` if it cannot be read, or None."""
        with self._pool.reading(f"loading job {job_id}") as conn:
            row = conn.execute(queries.SELECT_JOB_ENTRY, (job_id,)).fetchone()
        return None if row is None else job_entry(tuple(row))

    def _listing_rows(
        self,
        columns: str,
        status: str | None,
        limit: int | None,
        since: datetime | None,
        until: datetime | None,
        after: str | None,
    ) -> list[tuple[Any, ...]]:
        """Run one listing (any stored status is allowed) and return its raw rows."""
        params: dict[str, object] = {}
        if status is not None:
            if not isinstance(status, str) or not status:
                raise InvalidJobError(f"status must be non-empty text, got {status!r}")
            params["status"] = status
        if since is not None:
            params["since"] = require_aware(since, "since")
        if until is not None:
            params["until"] = require_aware(until, "until")
        if after is not None:
            params["after"] = after
        if limit is not None:
            if limit < 0:
                raise InvalidJobError(f"limit must not be negative, got {limit}")
            params["limit"] = limit
        query = queries.list_jobs_query(
            frozenset(params) - {"limit"}, limited=limit is not None, columns=columns
        )
        with self._listing(after) as conn:
            if after is not None and conn.execute(queries.JOB_EXISTS, (after,)).fetchone() is None:
                raise JobNotFoundError(after)
            return [tuple(row) for row in conn.execute(query, params).fetchall()]

    def _listing(self, after: str | None) -> AbstractContextManager[psycopg.Connection[Any]]:
        """Return the block for one listing: a snapshot only when `after`'s anchor is read too."""
        if after is None:
            return self._pool.querying("listing jobs")
        return self._pool.reading("listing jobs")

    def undatable_jobs(self, sample: int = 10) -> UndatableJobs:
        """Count finished jobs whose dates cannot be read: none (`timestamptz` columns)."""
        return UndatableJobs(0, ())

    def update_job_status(
        self, job_id: str, status: JobStatus | str, *, now: datetime | None = None
    ) -> None:
        """Set a job's status, stamping `started_at` or `completed_at` as it implies.

        `running` sets `started_at` and clears `completed_at`; a terminal
        status sets `completed_at`; `pending` clears both.
        """
        new_status = JobStatus.parse(status)
        stamp = stored_time(to_utc_or_none(now, "now") or self._clock())
        params = {"id": job_id, "status": new_status.value, "now": stamp}
        with self._job_write(f"updating job {job_id}") as conn:
            session_id = self._fence(conn, job_id, claiming=new_status is JobStatus.RUNNING)
            if conn.execute(queries.UPDATE_JOB_STATUS, params).rowcount == 0:
                raise JobNotFoundError(job_id)
            if session_id is not None:
                self._update_claim(conn, job_id, session_id, new_status, stamp)

    def update_job_results(self, job_id: str, results: Any, error: str | None = None) -> None:
        """Store a job's results (any JSON value) and error text."""
        params = {
            "id": job_id,
            "results": None if results is None else encode_json(results, job_id, "results"),
            "error": checked_error_text(error, job_id),
            "now": stored_time(self._clock()),
        }
        with self._job_write(f"updating job {job_id}") as conn:
            self._fence(conn, job_id, claiming=False)
            if conn.execute(queries.UPDATE_JOB_RESULTS, params).rowcount == 0:
                raise JobNotFoundError(job_id)

    def _job_write(self, action: str) -> AbstractContextManager[psycopg.Connection[Any]]:
        """Return the block for one job write: a transaction while a session is attached.

        With a session the write is several statements (fence, write, claim);
        without one it is a single statement, its own transaction.
        """
        if self._session_id is None:
            return self._pool.querying(action)
        return self._pool.writing(action)

    def _fence(self, conn: psycopg.Connection[Any], job_id: str, *, claiming: bool) -> str | None:
        """Refuse a write from a session declared gone; return the attached session, if any."""
        session_id = self._session_id
        if session_id is None:
            return None
        params = {"session_id": session_id, "id": job_id, "claiming": claiming}
        row = conn.execute(queries.SESSION_FENCED_LOCKING, params).fetchone()
        if row is not None:
            raise SessionLostError(
                f"job {job_id}: engine session {session_id} was declared gone ({row[0]}); "
                f"the job's recovered outcome stands: open a new session to go on"
            )
        return session_id

    @staticmethod
    def _update_claim(
        conn: psycopg.Connection[Any],
        job_id: str,
        session_id: str,
        status: JobStatus,
        now: datetime,
    ) -> None:
        """Claim a job the session moved to `running`; let go of one it moved on."""
        params = {"id": job_id, "session_id": session_id, "now": now}
        if status is JobStatus.RUNNING:
            conn.execute(queries.CLAIM_JOB, params)
        else:
            conn.execute(queries.RELEASE_CLAIM, params)

    def delete_job(self, job_id: str) -> bool:
        """Delete a job; return True if it existed."""
        with self._pool.writing(f"deleting job {job_id}") as conn:
            return bool(conn.execute(queries.DELETE_JOB, (job_id,)).rowcount)

    def get_stats(self) -> JobStats:
        """Count jobs per status in one query."""
        with self._pool.querying("counting jobs") as conn:
            rows = conn.execute(queries.COUNT_JOBS_BY_STATUS).fetchall()
        by_status = dict.fromkeys(JobStatus, 0)
        other = 0
        for status, count in rows:
            if status in by_status:
                by_status[JobStatus(status)] = count
            else:
                other += count
        return JobStats(total=sum(count for _, count in rows), by_status=by_status, other=other)

    def import_encoded_jobs(
        self,
        batches: Iterable[Sequence[EncodedJob]],
        on_progress: Callable[[int], None] | None = None,
    ) -> ImportCounts:
        """Like `import_jobs`, for jobs already in the table's text form (one transaction).

        The ids the import names are kept in a temporary table, so that one
        named twice is caught however far apart.
        """
        imported = skipped = 0
        now = self._clock()
        with self._pool.writing("importing jobs") as conn, conn.cursor() as cursor:
            cursor.execute(queries.CREATE_IMPORT_SEEN)
            for batch in batches:
                ids = [row[0] for row in batch]
                duplicate = _first_duplicate(ids)
                if duplicate is None:
                    seen = cursor.execute(queries.FIND_IMPORT_SEEN, (ids,)).fetchone()
                    duplicate = None if seen is None else str(seen[0])
                if duplicate is not None:
                    raise InvalidJobError(
                        f"job id {duplicate!r} appears more than once in the import"
                    )
                cursor.execute(queries.MARK_IMPORT_SEEN, (ids,))
                rows = [row if row[9] is not None else (*row[:9], now) for row in batch]
                inserted = _inserted_rows(cursor, rows)
                imported += inserted
                skipped += len(batch) - inserted
                if on_progress is not None:
                    on_progress(imported + skipped)
        return ImportCounts(imported, skipped)

    def export_jobs(self, after_rowid: int, limit: int) -> ExportBatch:
        """Read up to `limit` rows after `after_rowid` in rowid order (see `JobStore`)."""
        with self._pool.querying("reading jobs to copy") as conn:
            rows = conn.execute(queries.EXPORT_JOBS, (after_rowid, limit)).fetchall()
        # Typed columns: every row is one another database can hold.
        jobs: list[EncodedJob] = [
            (job_id, status, playbook, context, results, error,
             *(None if value is None else format_timestamp(value) for value in times))
            for _, job_id, status, playbook, context, results, error, *times in rows
        ]  # fmt: skip
        return ExportBatch(jobs, [], int(rows[-1][0]) if rows else None)

    def job_keys(self, after_id: str | None, limit: int) -> list[tuple[str, str]]:
        """Return (id, status) pairs after `after_id` in id order (see `JobStore`)."""
        with self._pool.querying("reading job ids") as conn:
            if after_id is None:
                rows = conn.execute(queries.JOB_KEYS_FIRST, (limit,)).fetchall()
            else:
                rows = conn.execute(queries.JOB_KEYS_AFTER, (after_id, limit)).fetchall()
        return [(str(job_id), str(status)) for job_id, status in rows]

    # -- maintenance ---------------------------------------------------------
    def cleanup_old_jobs(
        self,
        max_age: timedelta,
        *,
        now: datetime | None = None,
        should_stop: StopCheck | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete finished jobs older than `max_age`; return how many went.

        Only `completed`, `failed` and `cancelled` jobs go, aged by completion
        time (creation time if none), `CLEANUP_BATCH_ROWS` per transaction.
        Rows another session has locked are skipped (the next run takes
        them), so an engine never waits for cleanup longer than one batch.
        """
        from secautod.errors import CleanupAborted

        if max_age <= timedelta(0):
            raise InvalidJobError(f"max_age must be positive, got {max_age}")
        cutoff = (to_utc_or_none(now, "now") or self._clock()) - max_age
        params = {"cutoff": cutoff, "limit": CLEANUP_BATCH_ROWS}
        deleted = 0
        while True:
            if should_stop is not None and should_stop():
                raise CleanupAborted(deleted)
            with self._pool.writing("cleaning up old jobs") as conn:
                conn.execute(queries.SET_LOCAL_ASYNCHRONOUS_COMMIT)
                batch = conn.execute(queries.DELETE_EXPIRED_BATCH, params).rowcount
            deleted += batch
            if on_progress is not None and batch:
                on_progress(deleted)
            if batch < CLEANUP_BATCH_ROWS:
                return deleted

    def count_expired_jobs(
        self, max_age: timedelta, *, now: datetime | None = None
    ) -> dict[JobStatus, int]:
        """Count, per status, the jobs `cleanup_old_jobs` would delete now."""
        cutoff = (to_utc_or_none(now, "now") or self._clock()) - max_age
        with self._pool.querying("counting old jobs") as conn:
            rows = conn.execute(queries.COUNT_EXPIRED_BY_STATUS, {"cutoff": cutoff}).fetchall()
        counts = dict.fromkeys([status for status in JobStatus if status.is_terminal], 0)
        counts.update({JobStatus(status): count for status, count in rows})
        return counts

    def write_snapshot(
        self,
        target: Path,
        *,
        should_stop: StopCheck | None = None,
        check: BackupCheck = "integrity",
    ) -> None:
        """Write a `pg_dump` archive of secautod's tables to `target`, verified and synced.

        Verification restores it into a scratch database (needs `CREATEDB`)
        and compares the jobs per status with the dumped snapshot's; `check`
        makes no difference here. See `dump.py`.
        """
        write_dump(self._server, target, should_stop=should_stop)

    def integrity_check(self) -> list[str]:
        """Read every page of secautod's tables (indexes too, with amcheck); return damage found.

        See `checks.py`: missing tables, pages the server cannot read or
        whose checksum fails, and with `amcheck` index and tuple damage.
        """
        return integrity_problems(self._pool)

    def quick_check(self) -> list[str]:
        """Check that secautod's tables are there and each answers a one-row read."""
        return quick_problems(self._pool)

    def store_size(self) -> StoreSize:
        """Return the size of secautod's tables in the server (indexes and TOAST included).

        Not `pg_database_size`: the database may hold other programs' tables.
        No WAL figure: the server's WAL serves every database on it.
        """
        with self._pool.querying("measuring the store") as conn:
            row = conn.execute(queries.TABLES_SIZE, (list(queries.STORE_TABLES),)).fetchone()
        return StoreSize(int(row[0]) if row is not None else 0, None)

    def job_figures(self) -> JobFigures:
        """Count jobs per status and find the oldest pending and running ones, in one snapshot."""
        with self._pool.reading("reading job figures") as conn:
            counts = conn.execute(queries.COUNT_JOBS_BY_STATUS).fetchall()
            pending = conn.execute(queries.OLDEST_PENDING_CREATED).fetchone()
            running = conn.execute(queries.OLDEST_RUNNING_STARTED).fetchone()
        return JobFigures(
            by_status={str(status): int(count) for status, count in counts},
            oldest_pending_created_at=None if pending is None else utc_or_none(pending[0]),
            oldest_running_started_at=None if running is None else utc_or_none(running[0]),
        )

    def recover_jobs(
        self, recovery: Recovery, now: datetime, endpoints: Sequence[str], body: RecoveryBody
    ) -> list[RecoveredJob]:
        """Fail the running jobs `recovery` selects, queueing `body(job)` for each endpoint."""
        stamp = stored_time(require_aware(now, "now"))
        params: dict[str, Any] = {"now": stamp, "error": recovery.error}
        with self._pool.writing("recovering interrupted jobs") as conn, conn.cursor() as cursor:
            if recovery.session_id is not None:
                params["session_id"] = recovery.session_id
                gone = {"now": stamp, "reason": recovery.reason, "session_id": recovery.session_id}
                if cursor.execute(queries.DECLARE_SESSION_GONE, gone).rowcount == 0:
                    return []  # declared gone already, by another check
                rows = cursor.execute(queries.RECOVER_SESSION_JOBS, params).fetchall()
            else:
                params["started_before"] = recovery.started_before
                params["updated_before"] = recovery.updated_before
                rows = cursor.execute(queries.RECOVER_UNCLAIMED_JOBS, params).fetchall()
            recovered = [
                RecoveredJob(job_id, int(rowid), _iso(created), _iso(started))
                for job_id, rowid, created, started in rows
            ]
            notifications = [
                (endpoint, JOB_RECOVERED, job.id, body(job), stamp, stamp)
                for job in recovered
                for endpoint in endpoints
            ]
            if notifications:
                cursor.executemany(queries.QUEUE_NOTIFICATION, notifications)
        return recovered

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
            "now": stored_time(self._clock()),
        }
        with self._pool.writing("opening an engine session") as conn:
            conn.execute(queries.OPEN_SESSION, params)
        return session_id

    def renew_engine_session(self, session_id: str) -> bool:
        """Renew a session's lease (one write); False once it was declared gone."""
        params = {"session_id": session_id, "now": stored_time(self._clock())}
        with self._pool.writing("renewing an engine session") as conn:
            return bool(conn.execute(queries.RENEW_SESSION, params).rowcount)

    def close_engine_session(self, session_id: str) -> None:
        """Mark a session closed; jobs it still claims as running are then recoverable."""
        params = {"session_id": session_id, "now": stored_time(self._clock())}
        with self._pool.writing("closing an engine session") as conn:
            conn.execute(queries.CLOSE_SESSION, params)

    def engine_sessions(self, *, include_ended: bool = False) -> list[SessionRecord]:
        """Return the sessions a check looks at (with `include_ended`: all, with job counts)."""
        query = queries.SELECT_ALL_SESSIONS if include_ended else queries.SELECT_SESSIONS_TO_CHECK
        with self._pool.querying("reading engine sessions") as conn:
            rows = conn.execute(query).fetchall()
        return [_session_record(row) for row in rows]

    def job_claims(self, job_ids: Sequence[str]) -> dict[str, SessionRecord]:
        """Return, for each of `job_ids` a session claims, the session that does."""
        with self._pool.querying("reading job claims") as conn:
            rows = conn.execute(queries.SELECT_JOB_CLAIMS, {"job_ids": list(job_ids)}).fetchall()
        return {str(row[0]): _session_record(row[1:]) for row in rows}

    def prune_engine_sessions(self, ended_before: datetime) -> int:
        """Forget sessions that ended before `ended_before`, with their claims; return how many."""
        params = {"before": require_aware(ended_before, "ended_before")}
        with self._pool.writing("pruning engine sessions") as conn:
            return int(conn.execute(queries.PRUNE_SESSIONS, params).rowcount)

    def checkpoint(self) -> int:
        """Return 0: PostgreSQL checkpoints its write-ahead log itself."""
        return 0

    # -- leader election ---------------------------------------------------------
    elects_leader = True

    def claim_leadership(self, candidate: Candidate, lease: timedelta) -> int | None:
        """Take the maintenance lease, or renew it; return the term while leading, else None."""
        params = {
            "name": queries.LEASE_NAME,
            "holder": candidate.instance_id,
            "host": candidate.host,
            "pid": candidate.pid,
            "lease": lease.total_seconds(),
        }
        # Each statement in autocommit: it commits on the server before it answers, so
        # a claimant frozen (or cut off) after it holds no lock on the lease row. In a
        # BEGIN ... COMMIT it would hold it, without end, until it woke or the server noticed.
        with self._pool.querying("claiming the leadership") as conn:
            row = conn.execute(queries.RENEW_LEADERSHIP, params).fetchone()
            if row is None:
                row = conn.execute(queries.TAKE_LEADERSHIP, params).fetchone()
        return None if row is None else int(row[0])

    def release_leadership(self, fence: Fence) -> None:
        """Give the lease up at once, so a standby takes over without waiting it out."""
        params = {"name": queries.LEASE_NAME, "term": fence.term, "holder": fence.instance_id}
        with self._pool.querying("releasing the leadership") as conn:  # as a claim: no lock kept
            conn.execute(queries.RELEASE_LEADERSHIP, params)

    def current_leader(self) -> LeaderRecord | None:
        """Return who holds the maintenance lease (None: nobody ever did)."""
        with self._pool.querying("reading the leader") as conn:
            row = conn.execute(queries.SELECT_LEADER, {"name": queries.LEASE_NAME}).fetchone()
        if row is None:
            return None
        term, holder, host, pid, acquired_at, expires_at, remaining = row
        return LeaderRecord(
            int(term),
            Candidate(holder, host, int(pid)),
            utc_or_none(acquired_at) or self._clock(),
            utc_or_none(expires_at) or self._clock(),
            remaining,
        )

    def fenced(self, fence: Fence | None) -> AbstractContextManager[None]:
        """Make this thread's writes in the block carry `fence`: refused once the term is over."""
        return self._pool.fenced(fence)


def _first_duplicate(ids: list[str]) -> str | None:
    seen: set[str] = set()
    for job_id in ids:
        if job_id in seen:
            return job_id
        seen.add(job_id)
    return None


def _inserted_rows(cursor: psycopg.Cursor[Any], rows: list[Any]) -> int:
    """Insert `rows` if absent in one statement (an array per column); return how many went in."""
    if not rows:
        return 0
    cursor.execute(
        queries.INSERT_JOBS_IF_ABSENT, [list(column) for column in zip(*rows, strict=True)]
    )
    return int(cursor.rowcount)


def _iso(value: datetime | None) -> str | None:
    utc = utc_or_none(value)
    return None if utc is None else isoformat_utc(utc)


def _session_record(row: Sequence[Any]) -> SessionRecord:
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
        opened_at=utc_or_none(opened),
        renewed_at=utc_or_none(renewed),
        renewals=int(renewals),
        closed_at=utc_or_none(closed),
        gone_at=utc_or_none(gone),
        gone_reason=reason,
        running_jobs=int(running),
    )
