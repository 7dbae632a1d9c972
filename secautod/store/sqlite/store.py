"""The SQLite backend: the job store in one embedded file (WAL mode).

Each thread gets its own connection from the pool; every method runs one
transaction and returns `Job` objects or plain values.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from secautod.errors import (
    InvalidJobError,
    JobNotFoundError,
    SessionLostError,
    StopCheck,
    StoreError,
)
from secautod.files import create_owner_only_file, fsync_file, prepare_directory
from secautod.jobs import JOB_COLUMNS, Job, JobStats, JobStatus, checked_error_text
from secautod.processes import ProcessIdentity
from secautod.store.base import (
    DEFAULT_BUSY_TIMEOUT_SECONDS,
    BackupCheck,
    Clock,
    JobStore,
    RecoveryBody,
    Synchronous,
)
from secautod.store.json_text import encode_job, encode_json
from secautod.store.records import (
    EncodedJob,
    ExportBatch,
    ImportCounts,
    JobFigures,
    JobSummary,
    RecoveredJob,
    Recovery,
    SessionRecord,
    StoreSize,
    UndatableJobs,
    UnreadableRow,
)
from secautod.store.sqlite import queries
from secautod.store.sqlite.connection import ConnectionPool
from secautod.store.sqlite.listing import export_entry, fetch_raw, job_entry, job_summary
from secautod.store.sqlite.retention import delete_expired_jobs
from secautod.store.sqlite.rows import decode_job
from secautod.store.sqlite.schema import check_jobs_table, migrate, schema_version
from secautod.store.sqlite.snapshot import copy_verified, integrity_problems
from secautod.store.sqlite.state import SQLiteSupervisorState
from secautod.timestamps import (
    format_optional,
    format_timestamp,
    parse_timestamp,
    require_aware,
    to_utc_or_none,
    utc_now,
)

JOB_RECOVERED = "job_recovered"


class SQLiteJobStore(JobStore):
    """The job store in one SQLite file (created and migrated on open).

    `synchronous="FULL"` (the default) makes every committed change survive
    a power loss; `"NORMAL"` is faster and still never corrupts the file,
    but may lose the last transactions on power loss. `busy_timeout` is how
    long a write waits for another process's write lock (seconds). With
    `create=False` a missing file is an error instead of a new store.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
        create: bool = True,
        clock: Clock = utc_now,
    ) -> None:
        self.path = Path(path).absolute()
        self._clock = clock
        self._figures: tuple[tuple[int, int, int], JobFigures] | None = None
        if create:
            prepare_directory(self.path.parent)
            create_owner_only_file(self.path)
        elif not self.path.is_file():
            raise StoreError(
                f"no job store at {self.path}: start the daemon once to create it, "
                f"or check data_directory in the config"
            )
        self._pool = ConnectionPool(self.path, synchronous=synchronous, busy_timeout=busy_timeout)
        try:
            conn = self._pool.connection()
            with self._pool.translating("opening"):
                check_jobs_table(conn, self.path, absent_ok=True)
                self.schema_version_found = schema_version(conn)
                self.schema_version = migrate(conn, self.path, clock())
                check_jobs_table(conn, self.path)
        except BaseException:
            self._pool.close()
            raise
        self.state = SQLiteSupervisorState(self._pool, clock)

    def close(self) -> None:
        """Checkpoint the WAL and close every connection; later calls fail."""
        self._pool.close()

    def ping(self) -> None:
        """Raise `StoreError` unless the database answers a read."""
        with self._pool.querying("checking the database") as conn:
            conn.execute(queries.PING).fetchone()

    # -- jobs ----------------------------------------------------------------
    def save_job(self, job: Job) -> None:
        """Insert `job`, or replace the stored job with the same id."""
        params: dict[str, Any] = dict(zip(JOB_COLUMNS, encode_job(job, self._clock()), strict=True))
        with self._pool.writing(f"saving job {job.id}") as conn:
            session_id = self._fence(conn, job.id, claiming=job.status is JobStatus.RUNNING)
            conn.execute(queries.UPSERT_JOB, params)
            if session_id is not None:
                self._update_claim(conn, job.id, session_id, job.status, params["updated_at"])

    def load_job(self, job_id: str) -> Job | None:
        """Return the job with `job_id`, or None if there is none."""
        with self._pool.querying(f"loading job {job_id}") as conn:
            row = conn.execute(queries.SELECT_JOB, (job_id,)).fetchone()
            return None if row is None else decode_job(conn, row)

    def list_jobs(
        self,
        status: JobStatus | str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
    ) -> list[Job]:
        """Return jobs newest first, by creation time (see `JobStore`)."""
        params: dict[str, object] = {}
        if status is not None:
            status = JobStatus.parse(status).value
        params = _listing_params(status, limit, since, until, after)
        query = queries.list_jobs_query(frozenset(params) - {"limit"}, limited=limit is not None)
        with self._listing(after) as conn:
            return [decode_job(conn, row) for row in conn.execute(query, params)]

    def list_job_entries(
        self,
        status: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
    ) -> list[Job | UnreadableRow]:
        """Like `list_jobs`, but a row secautod cannot read becomes an `UnreadableRow`."""
        params = _listing_params(status, limit, since, until, after)
        query = queries.list_jobs_query(
            frozenset(params) - {"limit"},
            limited=limit is not None,
            columns=queries.JOB_ENTRY_COLUMNS,
        )
        with self._listing(after) as conn:
            raw = fetch_raw(conn, query, params)
            return [job_entry(conn, row) for row in raw]

    def list_job_summaries(
        self,
        status: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
    ) -> list[JobSummary | UnreadableRow]:
        """Like `list_job_entries`, reading only the columns a listing prints."""
        params = _listing_params(status, limit, since, until, after)
        query = queries.list_jobs_query(
            frozenset(params) - {"limit"},
            limited=limit is not None,
            columns=queries.JOB_SUMMARY_COLUMNS,
        )
        with self._listing(after) as conn:
            raw = fetch_raw(conn, query, params)
            return [job_summary(conn, row) for row in raw]

    def load_job_entry(self, job_id: str) -> Job | UnreadableRow | None:
        """Return the job with `job_id`, an `UnreadableRow` if it cannot be read, or None."""
        with self._pool.querying(f"loading job {job_id}") as conn:
            raw = fetch_raw(conn, queries.SELECT_JOB_ENTRY, (job_id,))
            return job_entry(conn, raw[0]) if raw else None

    @contextmanager
    def _listing(self, after: str | None) -> Iterator[sqlite3.Connection]:
        """Give the connection for one listing, checking the page anchor `after` exists."""
        # Paging needs the anchor and the page from one snapshot; a plain listing is one read.
        guard = self._pool.reading if after is not None else self._pool.querying
        with guard("listing jobs") as conn:
            if after is not None and conn.execute(queries.JOB_EXISTS, (after,)).fetchone() is None:
                raise JobNotFoundError(after)
            yield conn

    def update_job_status(
        self, job_id: str, status: JobStatus | str, *, now: datetime | None = None
    ) -> None:
        """Set a job's status and the times it implies (see `JobStore`)."""
        params = {
            "id": job_id,
            "status": JobStatus.parse(status).value,
            "now": format_timestamp(to_utc_or_none(now, "now") or self._clock()),
        }
        running = params["status"] == JobStatus.RUNNING
        with self._pool.writing(f"updating job {job_id}") as conn:
            session_id = self._fence(conn, job_id, claiming=running)
            if conn.execute(queries.UPDATE_JOB_STATUS, params).rowcount == 0:
                raise JobNotFoundError(job_id)
            if session_id is not None:
                status_now = JobStatus(params["status"])
                self._update_claim(conn, job_id, session_id, status_now, params["now"])

    def update_job_results(self, job_id: str, results: Any, error: str | None = None) -> None:
        """Store a job's results (any JSON value) and error text."""
        params = {
            "id": job_id,
            "results": None if results is None else encode_json(results, job_id, "results"),
            "error": checked_error_text(error, job_id),
            "now": format_timestamp(self._clock()),
        }
        with self._pool.writing(f"updating job {job_id}") as conn:
            self._fence(conn, job_id, claiming=False)
            if conn.execute(queries.UPDATE_JOB_RESULTS, params).rowcount == 0:
                raise JobNotFoundError(job_id)

    def _fence(self, conn: sqlite3.Connection, job_id: str, *, claiming: bool) -> str | None:
        """Refuse a write from a session declared gone; return the attached session, if any."""
        session_id = self._session_id
        if session_id is None:
            return None
        params = {"session_id": session_id, "id": job_id, "claiming": claiming}
        row = conn.execute(queries.SESSION_FENCED, params).fetchone()
        if row is not None:
            raise SessionLostError(
                f"job {job_id}: engine session {session_id} was declared gone ({row[0]}); "
                f"the job's recovered outcome stands: open a new session to go on"
            )
        return session_id

    @staticmethod
    def _update_claim(
        conn: sqlite3.Connection, job_id: str, session_id: str, status: JobStatus, now: str
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
        """Like `import_jobs`, for jobs already in the table's text form (see `JobStore`)."""
        imported = skipped = 0
        now = format_timestamp(self._clock())
        with self._pool.writing("importing jobs") as conn:
            conn.execute(queries.CREATE_IMPORT_SEEN)
            conn.execute(queries.CLEAR_IMPORT_SEEN)
            # A bulk insert touches index pages all over the file; with the
            # default 2 MiB cache they are written out and read back many times.
            (cache_size,) = conn.execute(queries.CACHE_SIZE).fetchone()
            conn.execute(queries.IMPORT_CACHE_SIZE)
            try:
                (import_start,) = conn.execute(queries.NEXT_JOB_ROWID).fetchone()
                for batch in batches:
                    ids = [row[0] for row in batch]
                    (batch_start,) = conn.execute(queries.NEXT_JOB_ROWID).fetchone()
                    rows = [row if row[9] is not None else (*row[:9], now) for row in batch]
                    inserted = conn.executemany(queries.INSERT_JOB_IF_ABSENT, rows).rowcount
                    duplicate = _first_duplicate(ids)
                    if duplicate is None and inserted < len(ids):
                        duplicate = self._mentioned_before(conn, ids, import_start, batch_start)
                    if duplicate is not None:
                        raise InvalidJobError(
                            f"job id {duplicate!r} appears more than once in the import"
                        )
                    imported += inserted
                    skipped += len(batch) - inserted
                    if on_progress is not None:
                        on_progress(imported + skipped)
            finally:
                with suppress(sqlite3.Error):  # never hide the import's own error
                    conn.execute(queries.set_cache_size(int(cache_size)))
        return ImportCounts(imported, skipped)

    def export_jobs(self, after_rowid: int, limit: int) -> ExportBatch:
        """Read up to `limit` rows after `after_rowid` in rowid order (see `JobStore`)."""
        with self._pool.querying("reading jobs to copy") as conn:
            raw = fetch_raw(conn, queries.EXPORT_JOBS, (after_rowid, limit))
            entries = [export_entry(conn, row) for row in raw]
        jobs = [entry for entry in entries if not isinstance(entry, UnreadableRow)]
        unreadable = [entry for entry in entries if isinstance(entry, UnreadableRow)]
        return ExportBatch(jobs, unreadable, int(raw[-1][0]) if raw else None)

    def job_keys(self, after_id: str | None, limit: int) -> list[tuple[str, str]]:
        """Return (id, status) pairs after `after_id` in id order (see `JobStore`)."""
        with self._pool.querying("reading job ids") as conn:
            if after_id is None:
                raw = fetch_raw(conn, queries.JOB_KEYS_FIRST, (limit,))
            else:
                raw = fetch_raw(conn, queries.JOB_KEYS_AFTER, (after_id, limit))
        return [(_text(job_id), _text(status)) for job_id, status in raw]

    @staticmethod
    def _mentioned_before(
        conn: sqlite3.Connection, ids: list[str], import_start: int, batch_start: int
    ) -> str | None:
        """Return one of a batch's skipped `ids` that this import met before, if any.

        A skipped id was either inserted by an earlier batch (its rowid lies
        between `import_start` and `batch_start`: new rows get the next rowid)
        or stored before the import; those are remembered in a temporary table,
        so that a second mention of one is caught too. A fresh import skips
        nothing and never gets here.
        """
        ids_json = json.dumps(ids)
        window = (ids_json, import_start, batch_start)
        row = conn.execute(queries.FIND_IMPORTED_EARLIER, window).fetchone()
        if row is None:
            row = conn.execute(queries.FIND_IMPORT_SEEN, (ids_json,)).fetchone()
        if row is not None:
            return str(row[0])
        conn.execute(queries.MARK_STORED_BEFORE_IMPORT, (ids_json, import_start))
        return None

    # -- maintenance ---------------------------------------------------------
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
        cutoff = format_timestamp((to_utc_or_none(now, "now") or self._clock()) - max_age)
        return delete_expired_jobs(
            self._pool, cutoff, should_stop=should_stop, on_progress=on_progress
        )

    def count_expired_jobs(
        self, max_age: timedelta, *, now: datetime | None = None
    ) -> dict[JobStatus, int]:
        """Count, per status, the jobs `cleanup_old_jobs` would delete now."""
        cutoff = format_timestamp((to_utc_or_none(now, "now") or self._clock()) - max_age)
        with self._pool.querying("counting old jobs") as conn:
            rows = conn.execute(queries.COUNT_EXPIRED_BY_STATUS, {"cutoff": cutoff}).fetchall()
        counts = dict.fromkeys([status for status in JobStatus if status.is_terminal], 0)
        counts.update({JobStatus(status): count for status, count in rows})
        return counts

    def undatable_jobs(self, sample: int = 10) -> UndatableJobs:
        """Count the finished jobs whose dates no date function reads (never deleted)."""
        with self._pool.reading("counting jobs without readable dates") as conn:
            (count,) = conn.execute(queries.COUNT_UNDATABLE_JOBS).fetchone()
            rows = conn.execute(queries.SAMPLE_UNDATABLE_JOBS, (sample,)).fetchall()
        return UndatableJobs(int(count), tuple(int(row[0]) for row in rows))

    def write_snapshot(
        self,
        target: Path,
        *,
        should_stop: StopCheck | None = None,
        check: BackupCheck = "integrity",
    ) -> None:
        """Copy one snapshot into the new file `target` (rollback journal), verify it, sync it."""
        copy_verified(self._pool, target, self.schema_version, should_stop=should_stop, check=check)
        fsync_file(target)

    def integrity_check(self) -> list[str]:
        """Run `PRAGMA integrity_check` on the live database; return its complaints."""
        with self._pool.querying("checking integrity") as conn:
            return integrity_problems(conn)

    def quick_check(self) -> list[str]:
        """Run `PRAGMA quick_check` on the live database; return its complaints."""
        with self._pool.querying("checking the database") as conn:
            return integrity_problems(conn, check="quick")

    def store_size(self) -> StoreSize:
        """Return the sizes of the database file and its WAL (0 for one not there)."""
        return StoreSize(
            _file_size(self.path), _file_size(self.path.with_name(self.path.name + "-wal"))
        )

    def job_figures(self) -> JobFigures:
        """Count jobs per status and find the oldest pending and running ones, in one snapshot.

        The count reads the whole status index (a million entries: tens of
        ms), so while nothing was committed since the last call on this
        thread's connection (by another connection: `data_version`; by this
        one: `total_changes`), that call's figures are returned as they were:
        an idle daemon counts nothing.
        """
        with self._pool.querying("reading job figures") as conn:
            (version,) = conn.execute(queries.DATA_VERSION).fetchone()
        seen = (id(conn), int(version), conn.total_changes)
        if self._figures is not None and self._figures[0] == seen:
            return self._figures[1]
        with self._pool.reading("reading job figures") as conn:
            counts = dict(conn.execute(queries.COUNT_JOBS_BY_STATUS).fetchall())
            (pending,) = conn.execute(queries.OLDEST_PENDING_CREATED).fetchone()
            (running,) = conn.execute(queries.OLDEST_RUNNING_STARTED).fetchone()
        figures = JobFigures(
            by_status={str(status): int(count) for status, count in counts.items()},
            oldest_pending_created_at=None if pending is None else parse_timestamp(pending),
            oldest_running_started_at=None if running is None else parse_timestamp(running),
        )
        self._figures = (seen, figures)
        return figures

    def recover_jobs(
        self, recovery: Recovery, now: datetime, endpoints: Sequence[str], body: RecoveryBody
    ) -> list[RecoveredJob]:
        """Fail the running jobs `recovery` selects, queueing `body(job)` for each endpoint."""
        stamp = format_timestamp(require_aware(now, "now"))
        params: dict[str, Any] = {"now": stamp, "error": recovery.error}
        if recovery.session_id is None:
            params["started_before"] = format_optional(recovery.started_before)
            params["updated_before"] = format_optional(recovery.updated_before)
            with self._pool.querying("looking for interrupted jobs") as conn:
                (found,) = conn.execute(queries.ANY_UNCLAIMED_TO_RECOVER, params).fetchone()
            if not found:
                return []
        # The daemon checkpoints these (maybe 100,000) rows once it is ready,
        # rather than making start-up wait for it (see `checkpoint`).
        with (
            self._pool.without_automatic_checkpoints("recovering interrupted jobs"),
            self._pool.writing("recovering interrupted jobs") as conn,
        ):
            if recovery.session_id is not None:
                params["session_id"] = recovery.session_id
                gone = {"now": stamp, "reason": recovery.reason, "session_id": recovery.session_id}
                if conn.execute(queries.DECLARE_SESSION_GONE, gone).rowcount == 0:
                    return []  # declared gone already, by another check
                rows = conn.execute(queries.RECOVER_SESSION_JOBS, params).fetchall()
            else:
                rows = conn.execute(queries.RECOVER_UNCLAIMED_JOBS, params).fetchall()
            recovered = [
                RecoveredJob(_readable_id(job_id), rowid, created, started)
                for job_id, rowid, created, started in rows
            ]
            conn.executemany(
                queries.QUEUE_NOTIFICATION,
                (
                    (endpoint, JOB_RECOVERED, job.id, body(job), stamp)
                    for job in recovered
                    for endpoint in endpoints
                ),
            )
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
            "now": format_timestamp(self._clock()),
        }
        with self._pool.writing("opening an engine session") as conn:
            conn.execute(queries.OPEN_SESSION, params)
        return session_id

    def renew_engine_session(self, session_id: str) -> bool:
        """Renew a session's lease (one write); False once it was declared gone."""
        params = {"session_id": session_id, "now": format_timestamp(self._clock())}
        with self._pool.writing("renewing an engine session") as conn:
            return bool(conn.execute(queries.RENEW_SESSION, params).rowcount)

    def close_engine_session(self, session_id: str) -> None:
        """Mark a session closed; jobs it still claims as running are then recoverable."""
        params = {"session_id": session_id, "now": format_timestamp(self._clock())}
        with self._pool.writing("closing an engine session") as conn:
            conn.execute(queries.CLOSE_SESSION, params)

    def engine_sessions(self, *, include_ended: bool = False) -> list[SessionRecord]:
        """Return the sessions a check looks at (with `include_ended`: all, with job counts)."""
        query = queries.SELECT_ALL_SESSIONS if include_ended else queries.SELECT_SESSIONS_TO_CHECK
        with self._pool.querying("reading engine sessions") as conn:
            return [_session_record(row) for row in conn.execute(query)]

    def job_claims(self, job_ids: Sequence[str]) -> dict[str, SessionRecord]:
        """Return, for each of `job_ids` a session claims, the session that does."""
        with self._pool.querying("reading job claims") as conn:
            rows = conn.execute(queries.SELECT_JOB_CLAIMS, {"job_ids": json.dumps(list(job_ids))})
            return {str(row[0]): _session_record(row[1:]) for row in rows}

    def prune_engine_sessions(self, ended_before: datetime) -> int:
        """Forget sessions that ended before `ended_before`, with their claims; return how many."""
        params = {"before": format_timestamp(require_aware(ended_before, "ended_before"))}
        with self._pool.writing("pruning engine sessions") as conn:
            pruned = conn.execute(queries.PRUNE_SESSIONS, params).rowcount
            conn.execute(queries.PRUNE_CLAIMS)
        return int(pruned)

    def checkpoint(self) -> int:
        """Copy what the WAL holds into the database file, without waiting for anyone.

        Returns the WAL frames that could not be copied yet (a reader still
        needs them). Never blocks other readers or writers.
        """
        return self._pool.checkpoint("checkpointing the WAL")


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _text(value: object) -> str:
    """Read a value `fetch_raw` returned as text (bytes that are not UTF-8 are replaced)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _listing_params(
    status: str | None,
    limit: int | None,
    since: datetime | None,
    until: datetime | None,
    after: str | None,
) -> dict[str, object]:
    """Return the bound parameters of a listing; their names pick its filters."""
    params: dict[str, object] = {}
    if status is not None:
        if not isinstance(status, str) or not status:
            raise InvalidJobError(f"status must be non-empty text, got {status!r}")
        params["status"] = status
    if since is not None:
        params["since"] = format_timestamp(require_aware(since, "since"))
    if until is not None:
        params["until"] = format_timestamp(require_aware(until, "until"))
    if after is not None:
        params["after"] = after
    if limit is not None:
        if limit < 0:
            raise InvalidJobError(f"limit must not be negative, got {limit}")
        params["limit"] = limit
    return params


def _first_duplicate(ids: list[str]) -> str | None:
    seen: set[str] = set()
    for job_id in ids:
        if job_id in seen:
            return job_id
        seen.add(job_id)
    return None


def _readable_id(value: object) -> str | None:
    """Return a job id as text, or None for one no reader can use (a BLOB)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return None


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
        opened_at=parse_timestamp(opened) if opened else None,
        renewed_at=parse_timestamp(renewed) if renewed else None,
        renewals=int(renewals),
        closed_at=parse_timestamp(closed) if closed else None,
        gone_at=parse_timestamp(gone) if gone else None,
        gone_reason=reason,
        running_jobs=int(running),
    )
