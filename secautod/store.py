"""The job store: secautod's Python API over the shared `jobs` table.

```python
from secautod import JobStore, Job, JobStatus
with JobStore("data/jobs.db") as store:
    store.save_job(Job.create({"name": "triage"}, {"alert": 42}))
```

A `JobStore` may be used from many threads at once; each thread gets its
own SQLite connection. Every method runs one transaction and returns `Job`
objects or plain values.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from secautod import queries
from secautod.backup import (
    fsync_file,
    partial_path,
    publish_backup,
    remove_stale_partials,
)
from secautod.database import (
    DEFAULT_BUSY_TIMEOUT_SECONDS,
    BackupCheck,
    ConnectionPool,
    Synchronous,
    check_jobs_table,
    connect,
    create_owner_only_file,
    describe_problems,
    integrity_problems,
    migrate,
    prepare_directory,
    schema_version,
)
from secautod.errors import (
    BackupAborted,
    BackupError,
    CleanupAborted,
    InvalidJobError,
    JobNotFoundError,
    StoreError,
    StoreFullError,
    UnreadableJobError,
)
from secautod.jobs import Job, JobStats, JobStatus
from secautod.json_text import decode_json, encode_json
from secautod.supervisor_state import SupervisorState
from secautod.timestamps import (
    format_optional,
    format_timestamp,
    is_go_zero_time,
    isoformat_utc,
    parse_timestamp,
    require_aware,
    to_utc_or_none,
    utc_now,
)

Clock = Callable[[], datetime]
StopCheck = Callable[[], bool]

# Cleanup finds expired rows with plain reads, this many rowids at a time, then
# deletes them in short transactions so other writers never wait long: each
# batch takes 20-40 ms (a writer that has waited since a batch began next
# retries 53 ms in), starting small, then pauses so a waiting writer gets in
# (see `_pause_between_batches`).
CLEANUP_SCAN_ROWS = 8192
CLEANUP_BATCH_SECONDS = 0.04
CLEANUP_PAUSE_SECONDS = 0.025
CLEANUP_BATCH_ROWS = (256, CLEANUP_SCAN_ROWS)
# WAL frames a reader's snapshot (a backup's copy) may keep from being
# checkpointed before cleanup waits for it: folding a bigger backlog at once
# means one long fsync that every other commit on the disk waits behind.
CLEANUP_MAX_WAL_BACKLOG_FRAMES = 512
CLEANUP_MAX_BACKLOG_WAIT_SECONDS = 300.0
BACKUP_PAGES_PER_STEP = 1024
IMPORT_BATCH_JOBS = 500
BACKUP_SYNC_EVERY_STEPS = 4  # fdatasync the copy every 16 MiB (4 KiB pages)
STOP_POLL_SECONDS = 0.05


# One job as the table stores it: id, status, playbook, context, results, error,
# created_at, started_at, completed_at, updated_at (see `import_encoded_jobs`).
EncodedJob = tuple[
    str, str, str, str, str | None, str | None, str, str | None, str | None, str | None
]


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """What `import_jobs` did."""

    imported: int
    skipped: int


class JobStore:
    """The persistent job store in one SQLite file (created and migrated on open).

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
                self.schema_version = migrate(conn, self.path, clock())
                check_jobs_table(conn, self.path)
        except BaseException:
            self._pool.close()
            raise
        self.state = SupervisorState(self._pool, clock)

    # -- lifecycle -----------------------------------------------------------
    def close(self) -> None:
        """Checkpoint the WAL and close every connection; later calls fail."""
        self._pool.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def ping(self) -> None:
        """Raise `StoreError` unless the database answers a read."""
        with self._pool.querying("checking the database") as conn:
            conn.execute(queries.PING).fetchone()

    # -- jobs ----------------------------------------------------------------
    def save_job(self, job: Job) -> None:
        """Insert `job`, or replace the stored job with the same id."""
        params = self._job_params(job, self._clock())
        with self._pool.writing(f"saving job {job.id}") as conn:
            conn.execute(queries.UPSERT_JOB, params)

    def load_job(self, job_id: str) -> Job | None:
        """Return the job with `job_id`, or None if there is none."""
        with self._pool.querying(f"loading job {job_id}") as conn:
            row = conn.execute(queries.SELECT_JOB, (job_id,)).fetchone()
            return None if row is None else self._decode(conn, row)

    def get_job(self, job_id: str) -> Job:
        """Return the job with `job_id`, raising `JobNotFoundError` if there is none."""
        job = self.load_job(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

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
            params["since"] = format_timestamp(require_aware(since, "since"))
        if until is not None:
            params["until"] = format_timestamp(require_aware(until, "until"))
        if after is not None:
            params["after"] = after
        if limit is not None:
            if limit < 0:
                raise InvalidJobError(f"limit must not be negative, got {limit}")
            params["limit"] = limit
        query = queries.list_jobs_query(frozenset(params) - {"limit"}, limited=limit is not None)
        # Paging needs the anchor and the page from one snapshot; a plain listing is one read.
        guard = self._pool.reading if after is not None else self._pool.querying
        with guard("listing jobs") as conn:
            if after is not None and conn.execute(queries.JOB_EXISTS, (after,)).fetchone() is None:
                raise JobNotFoundError(after)
            return [self._decode(conn, row) for row in conn.execute(query, params)]

    def update_job_status(
        self, job_id: str, status: JobStatus | str, *, now: datetime | None = None
    ) -> None:
        """Set a job's status, stamping `started_at` or `completed_at` as it implies.

        `running` sets `started_at` and clears `completed_at`; a terminal
        status sets `completed_at`; `pending` clears both.
        """
        params = {
            "id": job_id,
            "status": JobStatus.parse(status).value,
            "now": format_timestamp(to_utc_or_none(now, "now") or self._clock()),
        }
        with self._pool.writing(f"updating job {job_id}") as conn:
            if conn.execute(queries.UPDATE_JOB_STATUS, params).rowcount == 0:
                raise JobNotFoundError(job_id)

    def update_job_results(self, job_id: str, results: Any, error: str | None = None) -> None:
        """Store a job's results (any JSON value) and error text."""
        params = {
            "id": job_id,
            "results": encode_json(results, job_id, "results"),
            "error": error,
            "now": format_timestamp(self._clock()),
        }
        with self._pool.writing(f"updating job {job_id}") as conn:
            if conn.execute(queries.UPDATE_JOB_RESULTS, params).rowcount == 0:
                raise JobNotFoundError(job_id)

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

    def import_jobs(
        self, jobs: Iterable[Job], on_progress: Callable[[int], None] | None = None
    ) -> ImportCounts:
        """Insert jobs that are not stored yet, all in one transaction.

        Jobs whose id exists are skipped (the store is newer than any import),
        so importing twice changes nothing. The same id twice in `jobs` is an
        `InvalidJobError`. If `jobs` raises, nothing is kept.
        """
        now = self._clock()
        batches = (
            [
                cast(EncodedJob, tuple(self._job_params(job, job.updated_at or now).values()))
                for job in batch
            ]
            for batch in _batches(jobs, IMPORT_BATCH_JOBS)
        )
        return self.import_encoded_jobs(batches, on_progress)

    def import_encoded_jobs(
        self,
        batches: Iterable[Sequence[EncodedJob]],
        on_progress: Callable[[int], None] | None = None,
    ) -> ImportCounts:
        """Like `import_jobs`, for jobs already in the table's text form.

        Each `EncodedJob` holds the ten columns in table order: JSON texts
        (valid JSON, as `json_text.encode_json` writes or as read from a
        legacy file), timestamps in secautod's form; a None `updated_at`
        becomes now. The importer uses this to skip building `Job` objects.
        """
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
        """Delete finished jobs older than `max_age`; return how many went.

        Only `completed`, `failed` and `cancelled` jobs go, aged by completion
        time (creation time if none). Work is split into short transactions;
        if `should_stop` returns True between two of them, `CleanupAborted`
        is raised and what was deleted so far stays deleted.
        """
        if max_age <= timedelta(0):
            raise InvalidJobError(f"max_age must be positive, got {max_age}")
        cutoff = format_timestamp((to_utc_or_none(now, "now") or self._clock()) - max_age)
        with self._pool.querying("cleaning up old jobs") as conn:
            (last_rowid,) = conn.execute(queries.MAX_JOB_ROWID).fetchone()
        deleted = low = 0
        batch = CLEANUP_BATCH_ROWS[0]
        backlog_wait_ends = time.monotonic() + CLEANUP_MAX_BACKLOG_WAIT_SECONDS
        with self._checkpointing_myself("cleaning up old jobs") as conn:
            while low < last_rowid:
                if should_stop is not None and should_stop():
                    raise CleanupAborted(deleted)
                high = min(low + CLEANUP_SCAN_ROWS, last_rowid)
                rowids = self._expired_rowids(conn, low, high, cutoff)
                low = high
                while rowids:
                    if should_stop is not None and should_stop():
                        raise CleanupAborted(deleted)
                    chunk, rowids = rowids[:batch], rowids[batch:]
                    started = time.monotonic()
                    with self._pool.writing("cleaning up old jobs"):
                        # The predicate again: another writer may have changed a row since.
                        params = {"rowids": json.dumps(chunk), "cutoff": cutoff}
                        deleted += conn.execute(queries.DELETE_EXPIRED_ROWIDS, params).rowcount
                    batch = _next_batch_rows(batch, time.monotonic() - started)
                    if on_progress is not None:
                        on_progress(deleted)
                    self._pause_between_batches(conn, backlog_wait_ends, should_stop)
        return deleted

    def _expired_rowids(
        self, conn: sqlite3.Connection, low: int, high: int, cutoff: str
    ) -> list[int]:
        """Return the rowids in (low, high] that cleanup deletes, with a plain read.

        A read takes no lock, so stretches with nothing to delete cost no pause.
        """
        window = {"low": low, "high": high, "cutoff": cutoff}
        with self._pool.translating("cleaning up old jobs"):
            return [row[0] for row in conn.execute(queries.EXPIRED_IN_ROWID_RANGE, window)]

    @contextmanager
    def _checkpointing_myself(self, action: str) -> Iterator[sqlite3.Connection]:
        """Turn off this thread's automatic checkpoints (a commit's share) for the block.

        For work whose commits would otherwise each copy a big WAL into the
        file on the spot; the caller checkpoints at a time of its choosing.
        """
        conn = self._pool.connection()
        with self._pool.translating(action):
            conn.execute(queries.AUTOCHECKPOINT_OFF)
        try:
            yield conn
        finally:
            with suppress(sqlite3.Error):
                conn.execute(queries.AUTOCHECKPOINT_DEFAULT)

    def _pause_between_batches(
        self, conn: sqlite3.Connection, backlog_wait_ends: float, should_stop: StopCheck | None
    ) -> None:
        """Leave the write lock free long enough for a waiting writer to get it.

        SQLite's busy handler polls a waiting writer every 20-25 ms after its
        first 33 ms, so the gap lasts `CLEANUP_PAUSE_SECONDS`; the WAL is
        checkpointed inside it (never blocking) rather than in someone's commit.
        While a reader's snapshot (a backup's copy) keeps more than
        `CLEANUP_MAX_WAL_BACKLOG_FRAMES` from being checkpointed, the gap lasts
        until it ends, `backlog_wait_ends` passes or a stop is requested.
        """
        gap_started = time.monotonic()
        while (
            self._checkpoint_backlog(conn, "cleaning up old jobs") > CLEANUP_MAX_WAL_BACKLOG_FRAMES
            and time.monotonic() < backlog_wait_ends
            and not (should_stop is not None and should_stop())
        ):
            time.sleep(STOP_POLL_SECONDS)
        rest = CLEANUP_PAUSE_SECONDS - (time.monotonic() - gap_started)
        if rest > 0:
            time.sleep(rest)

    def _checkpoint_backlog(self, conn: sqlite3.Connection, action: str) -> int:
        """Checkpoint what can be without blocking; return the WAL frames left."""
        with self._pool.translating(action):
            _busy, wal_frames, checkpointed = conn.execute(queries.CHECKPOINT_PASSIVE).fetchone()
        return max(0, int(wal_frames) - int(checkpointed))

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

    def backup_jobs(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        now: datetime | None = None,
        should_stop: StopCheck | None = None,
        check: BackupCheck = "integrity",
    ) -> Path:
        """Write a verified online backup and return its path.

        The copy is taken from one consistent snapshot while other writers go
        on, written under a temporary name, checked with `PRAGMA
        integrity_check` (`quick_check` with `check="quick"`), synced, and
        only then given its final name
        `jobs.db.backup.YYYYMMDD-HHMMSS` (UTC) in `directory` (default: the
        database's). On any failure no file is left under a final name.
        """
        taken_at = to_utc_or_none(now, "now") or self._clock()
        target_dir = Path(directory).absolute() if directory is not None else self.path.parent
        prepare_directory(target_dir)
        remove_stale_partials(target_dir, self.path.name)
        partial = partial_path(target_dir, self.path.name, taken_at)
        try:
            self._copy_verified(partial, should_stop, check)
            fsync_file(partial)
            final = publish_backup(partial, target_dir, self.path.name, taken_at)
        except OSError as exc:
            _remove_database_files(partial)
            if exc.errno == errno.ENOSPC:
                raise StoreFullError(f"backup to {target_dir} failed: the disk is full") from exc
            raise BackupError(f"backup to {target_dir} failed: {exc.strerror or exc}") from exc
        except BaseException:
            _remove_database_files(partial)
            raise
        # The verified backup exists whatever happens now; if the bookkeeping
        # write fails, `status` merely shows it as not recorded.
        with suppress(StoreError):
            self.state.record_backup(final, taken_at, final.stat().st_size)
        return final

    def integrity_check(self) -> list[str]:
        """Run `PRAGMA integrity_check` on the live database; return its complaints."""
        with self._pool.querying("checking integrity") as conn:
            return integrity_problems(conn)

    def recover_interrupted_jobs(
        self, boot_id: str, *, now: datetime | None = None, notify: Iterable[str] = ()
    ) -> list[str]:
        """Mark every `running` job `failed` as interrupted by a restart.

        For each recovered job a `job_recovered` notification is queued for
        every endpoint in `notify`, in the same transaction. Running it again
        finds nothing to do. Rows another program wrote with values secautod
        cannot read are recovered all the same. Returns the recovered job ids.
        """
        at = to_utc_or_none(now, "now") or self._clock()
        stamp = format_timestamp(at)
        error = (
            f"interrupted: the job was running when secautod restarted "
            f"(recovered by boot {boot_id} at {stamp} UTC)"
        )
        params = {
            "now": stamp,
            "endpoints": json.dumps(list(notify)),
            **_recovery_body_parts(boot_id, isoformat_utc(at), error),
            "error": error,
        }
        # The daemon checkpoints these (maybe 100,000) rows once it is ready,
        # rather than making start-up wait for it (see `checkpoint`).
        with (
            self._checkpointing_myself("recovering interrupted jobs"),
            self._pool.writing("recovering interrupted jobs") as conn,
        ):
            conn.execute(queries.QUEUE_RECOVERY_NOTIFICATIONS, params)
            rows = conn.execute(queries.RECOVER_RUNNING_JOBS, params).fetchall()
        return [str(row[0]) for row in rows]

    def checkpoint(self) -> int:
        """Copy what the WAL holds into the database file, without waiting for anyone.

        Returns the WAL frames that could not be copied yet (a reader still
        needs them). Never blocks other readers or writers.
        """
        return self._checkpoint_backlog(self._pool.connection(), "checkpointing the WAL")

    # -- internals -------------------------------------------------------------
    def _copy_verified(
        self, partial: Path, should_stop: StopCheck | None, check: BackupCheck
    ) -> None:
        """Copy one snapshot of the database into `partial` and verify it."""
        create_owner_only_file(partial)

        sync_fd = os.open(partial, os.O_RDONLY)
        steps = 0

        def check_stop(_status: int, _remaining: int, _total: int) -> None:
            nonlocal steps
            if should_stop is not None and should_stop():
                raise BackupAborted()
            # Write the copy out as it grows: gigabytes of dirty pages flushed at
            # the end would stall every other fsync on the disk (the engine's commits).
            steps += 1
            if steps % BACKUP_SYNC_EVERY_STEPS == 0:
                os.fdatasync(sync_fd)

        source = self._pool.open_connection("backing up")
        try:
            with self._pool.translating(f"writing backup {partial}"):
                target = connect(partial, wal=False)
            try:
                with self._pool.translating(f"writing backup {partial}"):
                    # An open read transaction pins one snapshot for every step,
                    # so concurrent writers never force the copy to restart.
                    source.execute(queries.BEGIN_READ)
                    source.execute(queries.PING).fetchone()
                    source.backup(target, pages=BACKUP_PAGES_PER_STEP, progress=check_stop)
                    source.execute(queries.COMMIT)
                    # The snapshot held back every checkpoint: fold the WAL now,
                    # before an engine commit inherits the whole backlog.
                    source.execute(queries.CHECKPOINT_PASSIVE).fetchone()
                    target.execute(queries.USE_ROLLBACK_JOURNAL)
                    try:
                        with _interrupted_on_stop(target, should_stop):
                            problems = integrity_problems(target, check=check)
                    except sqlite3.OperationalError:
                        if should_stop is not None and should_stop():
                            raise BackupAborted() from None
                        raise
                    # A stop requested at any point before publishing aborts, even
                    # if the check finished before the interrupt could land.
                    if should_stop is not None and should_stop():
                        raise BackupAborted()
                    version = schema_version(target)
                if problems:
                    raise BackupError(
                        f"the backup copy failed its integrity check "
                        f"({describe_problems(problems)}); the database itself may be "
                        f"damaged: run 'secautod check'"
                    )
                if version != self.schema_version:
                    raise BackupError(f"backup {partial} has schema version {version}")
            finally:
                target.close()
        finally:
            source.close()
            os.close(sync_fd)

    def _job_params(self, job: Job, now: datetime) -> dict[str, object]:
        return {
            "id": job.id,
            "status": JobStatus.parse(job.status).value,
            "playbook": encode_json(job.playbook, job.id, "playbook"),
            "context": encode_json(job.context, job.id, "context"),
            "results": encode_json(job.results, job.id, "results"),
            "error": job.error,
            "created_at": format_timestamp(require_aware(job.created_at, "created_at")),
            "started_at": format_optional(job.started_at),
            "completed_at": format_optional(job.completed_at),
            "updated_at": format_timestamp(now),
        }

    def _decode(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> Job:
        """Turn a `JOB_COLUMNS` row into a `Job`, whoever wrote it."""
        job_id, status, playbook, context, results, error, created, started, completed, updated = (
            row
        )
        if not isinstance(job_id, str) or not job_id:
            raise UnreadableJobError(f"a stored job has the id {job_id!r}, which is not usable")
        job_status = _STATUSES.get(status)
        if job_status is None:
            raise UnreadableJobError(
                f"job {job_id} has status {status!r}, which secautod does not know"
            )
        created_at = _decode_time(conn, created, job_id, "created_at")
        if created_at is None:
            raise UnreadableJobError(f"job {job_id}: created_at is empty")
        # Every value is checked and UTC at millisecond precision here, so the
        # validating constructor (a third of a load's time) is skipped.
        return Job.from_store(
            id=job_id,
            status=job_status,
            playbook=decode_json(playbook, job_id, "playbook"),
            context=decode_json(context, job_id, "context"),
            results=None if results is None else decode_json(results, job_id, "results"),
            error=error,
            created_at=created_at,
            started_at=None
            if started is None
            else _decode_time(conn, started, job_id, "started_at"),
            completed_at=None
            if completed is None
            else _decode_time(conn, completed, job_id, "completed_at"),
            updated_at=None
            if updated is None
            else _decode_time(conn, updated, job_id, "updated_at"),
        )


_STATUSES = {status.value: status for status in JobStatus}
_OWN_TIMESTAMP_LENGTH = len("2026-01-21 10:00:00.000")


def _recovery_body_parts(boot_id: str, now_iso: str, error: str) -> dict[str, str]:
    """Return the parts of a `job_recovered` body that are the same for every job.

    `QUEUE_RECOVERY_NOTIFICATIONS` puts the notification id, the job id and
    the job's times between them, giving
    `{"id", "event", "boot_id", "timestamp", "job": {"id", "status", "error",
    "created_at", "started_at", "completed_at", "updated_at"}}`.
    """
    event = {"event": "job_recovered", "boot_id": boot_id, "timestamp": now_iso}
    return {
        "body_to_job_id": '",' + json.dumps(event, separators=(",", ":"))[1:-1] + ',"job":{"id":',
        "body_to_created_at": f',"status":"failed","error":{json.dumps(error)},"created_at":',
        "body_end": f',"completed_at":{json.dumps(now_iso)},"updated_at":{json.dumps(now_iso)}}}}}',
    }


def _decode_time(
    conn: sqlite3.Connection, value: object, job_id: str, column: str
) -> datetime | None:
    """Read a timestamp in any form SQLite's date functions accept."""
    if value is None:
        return None
    if type(value) is str:
        if len(value) == _OWN_TIMESTAMP_LENGTH and value[10] == " ":  # secautod's own form
            with suppress(ValueError):
                return datetime.fromisoformat(value).replace(tzinfo=UTC)
        parsed = parse_timestamp(value)
        if parsed is not None:
            return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)
        if is_go_zero_time(value):
            return None
    # Julian day numbers, time-only values and other rarities: let SQLite decide.
    (normalized,) = conn.execute(queries.NORMALIZE_TIMESTAMP, (value,)).fetchone()
    if normalized is None:
        raise UnreadableJobError(
            f"job {job_id}: {column} holds {value!r}, which is not a date SQLite understands"
        )
    return datetime.fromisoformat(normalized).replace(tzinfo=UTC)


@contextmanager
def _interrupted_on_stop(conn: sqlite3.Connection, should_stop: StopCheck | None) -> Iterator[None]:
    """Interrupt `conn`'s running statement as soon as `should_stop` says so.

    `PRAGMA integrity_check` runs as one VM step, so a progress handler never
    gets a say; `interrupt()` from another thread does.
    """
    if should_stop is None:
        yield
        return
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if should_stop():
                conn.interrupt()
                return
            finished.wait(STOP_POLL_SECONDS)

    watcher = threading.Thread(target=watch, name="backup-stop-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        watcher.join()


def _batches(items: Iterable[Job], size: int) -> Iterator[list[Job]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _first_duplicate(ids: list[str]) -> str | None:
    seen: set[str] = set()
    for job_id in ids:
        if job_id in seen:
            return job_id
        seen.add(job_id)
    return None


def _next_batch_rows(rows: int, elapsed: float) -> int:
    """Halve the cleanup batch after one over the target time; double it after one under half."""
    smallest, largest = CLEANUP_BATCH_ROWS
    if elapsed > CLEANUP_BATCH_SECONDS:
        return max(smallest, rows // 2)
    if elapsed < CLEANUP_BATCH_SECONDS / 2:
        return min(largest, rows * 2)
    return rows


def _remove_database_files(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
