"""The SQLite backend: the job store in one embedded file (WAL mode).

Each thread gets its own connection from the pool; every method runs one
transaction and returns `Job` objects or plain values.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from secautod.errors import (
    InvalidJobError,
    StopCheck,
    StoreError,
)
from secautod.files import create_owner_only_file, fsync_file, prepare_directory
from secautod.jobs import JOB_COLUMNS, Job, JobStatus
from secautod.store.base import (
    DEFAULT_BUSY_TIMEOUT_SECONDS,
    BackupCheck,
    Clock,
    RecoveryBody,
    Synchronous,
)
from secautod.store.common import first_duplicate, job_figures
from secautod.store.json_text import encode_job
from secautod.store.records import (
    JOB_RECOVERED,
    EncodedJob,
    ExportBatch,
    ImportCounts,
    JobFigures,
    JobSummary,
    RecoveredJob,
    Recovery,
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
from secautod.store.sqlite.state import SQLITE_TIMES, SQLiteSupervisorState
from secautod.store.table_store import TableJobStore
from secautod.timestamps import (
    format_optional,
    format_timestamp,
    require_aware,
    utc_now,
)


class SQLiteJobStore(TableJobStore[sqlite3.Connection]):
    """The job store in one SQLite file (created and migrated on open).

    `synchronous="FULL"` (the default) makes every committed change survive
    a power loss; `"NORMAL"` is faster and still never corrupts the file,
    but may lose the last transactions on power loss. `busy_timeout` is how
    long a write waits for another process's write lock (seconds). With
    `create=False` a missing file is an error instead of a new store.
    """

    queries: ClassVar[ModuleType] = queries
    times = SQLITE_TIMES
    _pool: ConnectionPool

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

    # -- hooks (see `TableJobStore`) ----------------------------------------------
    def _decode_job(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> Job:
        """Decode a row, reading rare timestamp forms with SQLite's date functions."""
        return decode_job(conn, row)

    def _raw_rows(
        self, conn: sqlite3.Connection, query: str, params: dict[str, object]
    ) -> list[tuple[Any, ...]]:
        """Fetch TEXT as bytes, so that one value that is not UTF-8 spoils only its row."""
        return fetch_raw(conn, query, params)

    def _job_entry(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> Job | UnreadableRow:
        return job_entry(conn, row)

    def _job_summary(
        self, conn: sqlite3.Connection, row: tuple[Any, ...]
    ) -> JobSummary | UnreadableRow:
        return job_summary(conn, row)

    @staticmethod
    def _bind_ids(job_ids: Sequence[str]) -> object:
        """Bind job ids as one JSON array (the query reads it with `json_each`)."""
        return json.dumps(list(job_ids))

    # -- jobs ----------------------------------------------------------------
    def save_job(self, job: Job) -> None:
        """Insert `job`, or replace the stored job with the same id."""
        params: dict[str, Any] = dict(zip(JOB_COLUMNS, encode_job(job, self._clock()), strict=True))
        with self._pool.writing(f"saving job {job.id}") as conn:
            session_id = self._fence(conn, job.id, claiming=job.status is JobStatus.RUNNING)
            conn.execute(queries.UPSERT_JOB, params)
            if session_id is not None:
                self._update_claim(conn, job.id, session_id, job.status, params["updated_at"])

    def load_job_entry(self, job_id: str) -> Job | UnreadableRow | None:
        """Return the job with `job_id`, an `UnreadableRow` if it cannot be read, or None."""
        with self._pool.querying(f"loading job {job_id}") as conn:
            raw = fetch_raw(conn, queries.SELECT_JOB_ENTRY, (job_id,))
            return job_entry(conn, raw[0]) if raw else None

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
                    duplicate = first_duplicate(ids)
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
    def _delete_expired(
        self,
        cutoff: object,
        *,
        should_stop: StopCheck | None,
        on_progress: Callable[[int], None] | None,
    ) -> int:
        """Delete expired jobs in short transactions (see `retention.py`)."""
        return delete_expired_jobs(
            self._pool, str(cutoff), should_stop=should_stop, on_progress=on_progress
        )

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
            counts = conn.execute(queries.COUNT_JOBS_BY_STATUS).fetchall()
            (pending,) = conn.execute(queries.OLDEST_PENDING_CREATED).fetchone()
            (running,) = conn.execute(queries.OLDEST_RUNNING_STARTED).fetchone()
        figures = job_figures(counts, pending, running, self.times)
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


def _readable_id(value: object) -> str | None:
    """Return a job id as text, or None for one no reader can use (a BLOB)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return None
