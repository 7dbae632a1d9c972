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

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import psycopg

from secautod.errors import InvalidJobError, StopCheck
from secautod.jobs import JOB_COLUMNS, Job, JobStatus
from secautod.store.base import (
    DEFAULT_BUSY_TIMEOUT_SECONDS,
    BackupCheck,
    Clock,
    RecoveryBody,
    Synchronous,
    redact_password,
)
from secautod.store.common import first_duplicate, job_figures
from secautod.store.json_text import encode_job
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
from secautod.store.postgres.state import POSTGRES_TIMES, PostgresSupervisorState
from secautod.store.records import (
    JOB_RECOVERED,
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
    StoreSize,
    UndatableJobs,
    UnreadableRow,
)
from secautod.store.table_store import TableJobStore
from secautod.timestamps import (
    format_timestamp,
    isoformat_utc,
    require_aware,
    utc_now,
)

# Cleanup deletes this many expired jobs per transaction.
CLEANUP_BATCH_ROWS = 500


class PostgresJobStore(TableJobStore[psycopg.Connection[Any]]):
    """The job store in a PostgreSQL database (its schema created and migrated on open).

    `password` is used when `url` carries none (else libpq's passfile or
    service file apply). `busy_timeout` becomes `lock_timeout`: how long a
    write waits for a row another session holds. `synchronous="NORMAL"`
    turns `synchronous_commit` off: faster, may lose the last commits on a
    server crash, never corrupts. With `create=False` a database without
    secautod's schema is an error. `backup_name` names backup files.
    """

    queries: ClassVar[ModuleType] = queries
    times = POSTGRES_TIMES
    _pool: ConnectionPool

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

    # -- hooks (see `TableJobStore`) ----------------------------------------------
    def _decode_job(self, conn: psycopg.Connection[Any], row: tuple[Any, ...]) -> Job:
        return decode_job(row)

    def _raw_rows(
        self, conn: psycopg.Connection[Any], query: str, params: dict[str, object]
    ) -> list[tuple[Any, ...]]:
        """Fetch the rows as they are: typed columns hold nothing a reader cannot take."""
        return [tuple(row) for row in conn.execute(query, params).fetchall()]

    def _job_entry(
        self, conn: psycopg.Connection[Any], row: tuple[Any, ...]
    ) -> Job | UnreadableRow:
        return job_entry(row)

    def _job_summary(
        self, conn: psycopg.Connection[Any], row: tuple[Any, ...]
    ) -> JobSummary | UnreadableRow:
        return job_summary(row)

    @staticmethod
    def _bind_ids(job_ids: Sequence[str]) -> object:
        """Bind job ids as one array (the query compares with `= ANY`)."""
        return list(job_ids)

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

    def load_job_entry(self, job_id: str) -> Job | UnreadableRow | None:
        """Return the job with `job_id`, an `UnreadableRow` if it cannot be read, or None."""
        with self._pool.reading(f"loading job {job_id}") as conn:
            row = conn.execute(queries.SELECT_JOB_ENTRY, (job_id,)).fetchone()
        return None if row is None else job_entry(tuple(row))

    def undatable_jobs(self, sample: int = 10) -> UndatableJobs:
        """Count finished jobs whose dates cannot be read: none (`timestamptz` columns)."""
        return UndatableJobs(0, ())

    def _job_write(self, action: str) -> AbstractContextManager[psycopg.Connection[Any]]:
        """Return the block for one job write: a transaction while a session is attached.

        With a session the write is several statements (fence, write, claim);
        without one it is a single statement, its own transaction.
        """
        if self._session_id is None:
            return self._pool.querying(action)
        return self._pool.writing(action)

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
                duplicate = first_duplicate(ids)
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
    def _delete_expired(
        self,
        cutoff: object,
        *,
        should_stop: StopCheck | None,
        on_progress: Callable[[int], None] | None,
    ) -> int:
        """Delete expired jobs, `CLEANUP_BATCH_ROWS` per transaction.

        Rows another session has locked are skipped (the next run takes
        them), so an engine never waits for cleanup longer than one batch.
        """
        from secautod.errors import CleanupAborted

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
        return job_figures(
            counts,
            None if pending is None else pending[0],
            None if running is None else running[0],
            self.times,
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
