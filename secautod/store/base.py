"""The storage boundary: what the daemon, the scheduler, the CLI and maintenance need.

`JobStore` is the public API of SPEC §2 and the contract every backend
fulfils; `JobStore(location)` opens the backend that `location` names (a
path: the embedded SQLite file). `SupervisorState` is secautod's own
bookkeeping beside the shared `jobs` table, reached as `store.state`.
Backends implement the abstract methods; everything else here is shared.
"""

from __future__ import annotations

import abc
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

from secautod.errors import JobNotFoundError, StopCheck, StoreError
from secautod.jobs import Job, JobStats, JobStatus
from secautod.store.records import (
    BackupRecord,
    Boot,
    Candidate,
    EncodedJob,
    ExportBatch,
    Fence,
    ImportCounts,
    JobFigures,
    JobSummary,
    LeaderRecord,
    Notification,
    OutboxSummary,
    RecoveredJob,
    Recovery,
    SessionRecord,
    StoreSize,
    TaskRun,
    UndatableJobs,
    UnreadableRow,
)

if TYPE_CHECKING:
    from secautod.processes import ProcessIdentity
    from secautod.sessions import EngineSession

Clock = Callable[[], datetime]
# FULL: every committed change survives a power loss; NORMAL: faster, may lose
# the last transactions on power loss, never corrupts.
Synchronous = Literal["FULL", "NORMAL"]
SYNCHRONOUS_LEVELS: tuple[Synchronous, ...] = ("FULL", "NORMAL")
# How a backup copy is verified: a full check (every index entry matched
# against its row) or a quick one (structure and every page readable, not
# index contents: several times faster on a large store).
BackupCheck = Literal["integrity", "quick"]
BACKUP_CHECKS: tuple[BackupCheck, ...] = ("integrity", "quick")
DEFAULT_BUSY_TIMEOUT_SECONDS = 5.0
# A store location with one of these schemes is a PostgreSQL server (SPEC §11).
POSTGRES_URL_SCHEMES = ("postgresql", "postgres")
IMPORT_BATCH_JOBS = 500
# Builds the webhook body of one recovered job (the store queues it atomically).
RecoveryBody = Callable[[RecoveredJob], str]
# What every backend implements (the rest of `JobStore` is shared).
BACKEND_METHODS = (
    "close",
    "ping",
    "save_job",
    "load_job",
    "list_jobs",
    "list_job_entries",
    "list_job_summaries",
    "load_job_entry",
    "update_job_status",
    "update_job_results",
    "delete_job",
    "get_stats",
    "import_encoded_jobs",
    "export_jobs",
    "job_keys",
    "cleanup_old_jobs",
    "count_expired_jobs",
    "undatable_jobs",
    "write_snapshot",
    "integrity_check",
    "recover_jobs",
    "open_engine_session",
    "renew_engine_session",
    "close_engine_session",
    "engine_sessions",
    "job_claims",
    "prune_engine_sessions",
    "quick_check",
    "job_figures",
    "checkpoint",
    "store_size",
)


class SupervisorState(abc.ABC):
    """secautod's bookkeeping: daemon starts, maintenance runs, backups, the webhook outbox."""

    @abc.abstractmethod
    def record_boot(self, boot: Boot) -> None:
        """Remember a daemon start (again with the final recovered count)."""

    @abc.abstractmethod
    def latest_boot(self) -> Boot | None:
        """Return the most recent daemon start, if any."""

    @abc.abstractmethod
    def task_runs(self) -> dict[str, TaskRun]:
        """Return the remembered outcome of each maintenance task, by task name."""

    @abc.abstractmethod
    def record_task_success(self, task: str, at: datetime, result: dict[str, Any]) -> None:
        """Remember that `task` succeeded at `at` with `result` (JSON values)."""

    @abc.abstractmethod
    def record_task_failure(self, task: str, at: datetime, error: str) -> None:
        """Remember that `task` failed at `at`."""

    @abc.abstractmethod
    def record_backup(self, path: Path, created_at: datetime, size_bytes: int) -> None:
        """Remember a backup that passed its integrity check."""

    @abc.abstractmethod
    def backup_record(self, path: Path) -> BackupRecord | None:
        """Return what is remembered about the backup at `path`, if anything."""

    @abc.abstractmethod
    def forget_backups(self, paths: Sequence[Path]) -> None:
        """Drop the records of backups that were deleted."""

    @abc.abstractmethod
    def due_notifications(
        self, endpoint: str, now: datetime, limit: int, latest: datetime
    ) -> list[Notification]:
        """Return notifications for `endpoint` whose next attempt is due, oldest first.

        One scheduled after `latest` also counts as due: no backoff is that
        long, so the wall clock must have been set back since it was stored.
        """

    @abc.abstractmethod
    def next_notification_due(self, endpoint: str) -> datetime | None:
        """Return when the next notification for `endpoint` is due, if any is queued."""

    @abc.abstractmethod
    def mark_delivered(self, notification_id: int) -> None:
        """Delete a notification the endpoint accepted."""

    @abc.abstractmethod
    def reschedule(self, notification_id: int, next_attempt_at: datetime, error: str) -> None:
        """Count a failed attempt and set when to try again."""

    @abc.abstractmethod
    def outbox_summary(self) -> list[OutboxSummary]:
        """Summarise undelivered notifications per endpoint."""

    @abc.abstractmethod
    def engine_sessions_alive(self) -> int:
        """Count the engine sessions neither closed nor declared gone (SPEC §9)."""


class JobStore:
    """The persistent job store; safe to use from several threads.

    `JobStore(path)` opens (creating and migrating) the SQLite file at
    `path`. Every method runs one transaction and returns `Job` objects or
    plain values; errors are `SecautodError`s carrying an exit status.
    """

    path: Path
    schema_version: int
    schema_version_found: int  # before this open applied pending migrations
    state: SupervisorState
    _clock: Clock
    _session_id: str | None = None

    def __init_subclass__(cls, *, partial: bool = False, **kwargs: Any) -> None:
        """Refuse a backend class that leaves part of the boundary unimplemented.

        `partial=True` marks a class that backends build on (not checked).
        """
        super().__init_subclass__(**kwargs)
        if partial:
            return
        missing = [
            name for name in BACKEND_METHODS if getattr(cls, name) is getattr(JobStore, name)
        ]
        if missing:
            raise TypeError(f"{cls.__name__} does not implement {', '.join(missing)}")

    def __new__(cls, *args: Any, **options: Any) -> JobStore:
        """Open the backend `JobStore(location, ...)` names; subclasses construct themselves.

        A `postgresql://` (or `postgres://`) URL opens PostgreSQL; anything
        else is the path of a SQLite file.
        """
        if cls is JobStore:
            cls = _backend_class(args[0] if args else options.get("path"))
        return super().__new__(cls)

    # -- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        """Flush and close every connection; later calls fail."""
        raise NotImplementedError

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
        raise NotImplementedError

    # -- jobs (SPEC §2) ----------------------------------------------------------
    def save_job(self, job: Job) -> None:
        """Insert `job`, or replace the stored job with the same id."""
        raise NotImplementedError

    def load_job(self, job_id: str) -> Job | None:
        """Return the job with `job_id`, or None if there is none."""
        raise NotImplementedError

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
        raise NotImplementedError

    def list_job_entries(
        self,
        status: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
    ) -> list[Job | UnreadableRow]:
        """Like `list_jobs`, but a row secautod cannot read becomes an `UnreadableRow`.

        One foreign row never hides the others. `status` may be any stored
        text, including statuses only other writers use (`queued`).
        """
        raise NotImplementedError

    def list_job_summaries(
        self,
        status: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
    ) -> list[JobSummary | UnreadableRow]:
        """Like `list_job_entries`, reading only the columns a listing prints.

        Contexts and results are never read, so huge jobs cost no memory.
        """
        raise NotImplementedError

    def load_job_entry(self, job_id: str) -> Job | UnreadableRow | None:
        """Return the job with `job_id`, an `UnreadableRow` if it cannot be read, or None."""
        raise NotImplementedError

    def update_job_status(
        self, job_id: str, status: JobStatus | str, *, now: datetime | None = None
    ) -> None:
        """Set a job's status, stamping `started_at` or `completed_at` as it implies.

        `running` sets `started_at` and clears `completed_at`; a terminal
        status sets `completed_at`; `pending` clears both.
        """
        raise NotImplementedError

    def update_job_results(self, job_id: str, results: Any, error: str | None = None) -> None:
        """Store a job's results (any JSON value) and error text."""
        raise NotImplementedError

    def delete_job(self, job_id: str) -> bool:
        """Delete a job; return True if it existed."""
        raise NotImplementedError

    def get_stats(self) -> JobStats:
        """Count jobs per status in one query."""
        raise NotImplementedError

    def import_jobs(
        self, jobs: Iterable[Job], on_progress: Callable[[int], None] | None = None
    ) -> ImportCounts:
        """Insert jobs that are not stored yet, all in one transaction.

        Jobs whose id exists are skipped (the store is newer than any import),
        so importing twice changes nothing. The same id twice in `jobs` is an
        `InvalidJobError`. If `jobs` raises, nothing is kept.
        """
        from secautod.store.json_text import encode_job

        now = self._clock()
        batches = (
            [encode_job(job, job.updated_at or now) for job in batch]
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
        raise NotImplementedError

    def export_jobs(self, after_rowid: int, limit: int) -> ExportBatch:
        """Read up to `limit` rows after `after_rowid`, in rowid order, for a copy elsewhere.

        Rows come back in the table's text form (`import_encoded_jobs` takes
        them) with values kept as stored: any status text, JSON text unparsed,
        timestamps in secautod's UTC form. A row whose values another database
        cannot hold (an id that is not text, bytes that are not UTF-8, a NUL,
        a date no reader knows) is an `UnreadableRow`, never an error. Keyset
        paging: memory stays one batch whatever the table's size.
        """
        raise NotImplementedError

    def job_keys(self, after_id: str | None, limit: int) -> list[tuple[str, str]]:
        """Return up to `limit` (id, status) pairs with ids after `after_id`, in id order.

        Reads only the two columns, for verifying a copy; statuses are the
        stored text (other writers' too). Rows whose id is not text are left out.
        """
        raise NotImplementedError

    # -- maintenance -------------------------------------------------------------
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
        raise NotImplementedError

    def count_expired_jobs(
        self, max_age: timedelta, *, now: datetime | None = None
    ) -> dict[JobStatus, int]:
        """Count, per status, the jobs `cleanup_old_jobs` would delete now."""
        raise NotImplementedError

    def undatable_jobs(self, sample: int = 10) -> UndatableJobs:
        """Count the finished jobs cleanup can never delete: no date of theirs can be read.

        Another writer stored `created_at` (and `completed_at`) in a form no
        date function reads; `sample` of their rowids name them.
        """
        raise NotImplementedError

    def write_snapshot(
        self,
        target: Path,
        *,
        should_stop: StopCheck | None = None,
        check: BackupCheck = "integrity",
    ) -> None:
        """Write one consistent copy of the store to the new file `target`, verified and synced.

        Raises `BackupError` (`BackupAborted` once `should_stop` says so) if
        the copy cannot be made or fails `check`; the caller removes `target`.
        """
        raise NotImplementedError

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
        on, written under a temporary name, verified (`check`), synced, and
        only then given its final name `<database>.backup.YYYYMMDD-HHMMSS`
        (UTC) in `directory` (default: the database's). On any failure no
        file is left under a final name.
        """
        from secautod.backup import take_backup

        target = Path(directory).absolute() if directory is not None else self.path.parent
        return take_backup(self, target, now=now, should_stop=should_stop, check=check)

    def integrity_check(self) -> list[str]:
        """Check the live database for damage; return the complaints (empty when sound)."""
        raise NotImplementedError

    def quick_check(self) -> list[str]:
        """Check the live database's structure and pages (not index contents); return complaints.

        Cheaper than `integrity_check`, so the daemon runs it on a schedule
        while other writers go on.
        """
        raise NotImplementedError

    def store_size(self) -> StoreSize:
        """Return the room the store takes (see `StoreSize`)."""
        raise NotImplementedError

    def job_figures(self) -> JobFigures:
        """Count jobs per status and find the oldest pending and running ones, in one snapshot."""
        raise NotImplementedError

    def recover_jobs(
        self, recovery: Recovery, now: datetime, endpoints: Sequence[str], body: RecoveryBody
    ) -> list[RecoveredJob]:
        """Fail the running jobs `recovery` selects, queueing one notification per endpoint.

        One transaction: each job gets status `failed`, `completed_at` `now`
        and `recovery.error`, and `body(job)` is queued for every endpoint;
        a session it names is declared gone. A job is only ever recovered
        while it is `running`, so running it twice recovers nothing twice.
        """
        raise NotImplementedError

    # -- engine sessions (SPEC §9) ------------------------------------------------
    def engine_session(self, name: str = "engine", lease: timedelta | None = None) -> EngineSession:
        """Return a session for this store; `with` opens it (see `secautod.sessions`)."""
        from secautod.sessions import DEFAULT_LEASE, EngineSession

        return EngineSession(self, name, lease or DEFAULT_LEASE)

    def attach_session(self, session_id: str | None) -> None:
        """Claim the jobs this store moves to `running` for `session_id` (None: stop)."""
        self._session_id = session_id

    def open_engine_session(self, identity: ProcessIdentity, name: str, lease: timedelta) -> str:
        """Record a new live session for the process `identity`; return its id."""
        raise NotImplementedError

    def renew_engine_session(self, session_id: str) -> bool:
        """Renew a session's lease (one write); False once it was declared gone."""
        raise NotImplementedError

    def close_engine_session(self, session_id: str) -> None:
        """Mark a session closed; jobs it still claims as running are then recoverable."""
        raise NotImplementedError

    def engine_sessions(self, *, include_ended: bool = False) -> list[SessionRecord]:
        """Return the live sessions (with `include_ended`, closed and gone ones too)."""
        raise NotImplementedError

    def job_claims(self, job_ids: Sequence[str]) -> dict[str, SessionRecord]:
        """Return, for each of `job_ids` a session claims, the session that does."""
        raise NotImplementedError

    def prune_engine_sessions(self, ended_before: datetime) -> int:
        """Forget sessions that ended before `ended_before`, with their claims; return how many."""
        raise NotImplementedError

    def checkpoint(self) -> int:
        """Move what the write-ahead log holds into the database without waiting for anyone.

        Returns what could not be moved yet (0 when nothing is pending).
        """
        raise NotImplementedError

    # -- leader election (SPEC §11) ------------------------------------------------
    # Several secautod instances may share a store that elects a leader; a
    # SQLite file has one daemon (its data directory's lock), always in charge.
    elects_leader: ClassVar[bool] = False

    def claim_leadership(self, candidate: Candidate, lease: timedelta) -> int | None:
        """Take the maintenance lease, or renew it; return the term while leading, else None.

        A lease that ran out (or was released) goes to the next claimant
        with the next term; the holder renewing keeps its term.
        """
        raise StoreError(f"{type(self).__name__} elects no leader: one daemon runs on it")

    def release_leadership(self, fence: Fence) -> None:
        """Give the lease up at once, so a standby takes over without waiting it out."""

    def current_leader(self) -> LeaderRecord | None:
        """Return who holds the maintenance lease (None: nobody ever did, or no election)."""
        return None

    def fenced(self, fence: Fence | None) -> AbstractContextManager[None]:
        """Make this thread's writes in the block carry `fence`: refused once the term is over.

        A refused write raises `LeadershipLostError`; None fences nothing.
        """
        return nullcontext()


def redact_password(url: str) -> str:
    """Return `url` with its password (in the authority or the query) replaced by `***`."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        if ":" in credentials:
            credentials = credentials.split(":", 1)[0] + ":***"
        netloc = f"{credentials}@{host}"
    query = "&".join(
        "password=***" if pair.lower().startswith("password=") else pair
        for pair in parts.query.split("&")
        if pair
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _backend_class(location: object) -> type[JobStore]:
    """Return the backend class for a store location (a path or a PostgreSQL URL)."""
    if isinstance(location, str) and location.split("://", 1)[0] in POSTGRES_URL_SCHEMES:
        try:
            from secautod.store.postgres.store import PostgresJobStore
        except ImportError as exc:
            raise StoreError(
                f"a PostgreSQL store needs psycopg 3 and psycopg_pool ({exc}): install "
                f"secautod[postgresql], or Debian's python3-psycopg and python3-psycopg-pool"
            ) from None
        return PostgresJobStore
    from secautod.store.sqlite.store import SQLiteJobStore

    return SQLiteJobStore


def _batches(items: Iterable[Job], size: int) -> Iterator[list[Job]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
