"""The exception hierarchy: every error secautod raises on purpose.

Each class carries the process exit status that `secautod` uses when the
error ends a command (sysexits.h numbering). `cli.main()` is the one place
that turns these into a one-line message and that status.
"""

from __future__ import annotations

from collections.abc import Callable

EX_OK = 0
EX_UNEXPECTED = 1
EX_USAGE = 2  # argparse's own status for bad command lines
EX_NEEDS_ATTENTION = 3  # `secautod status`: running, but something needs a look
EX_DATAERR = 65
EX_NOINPUT = 66
EX_SOFTWARE = 70
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78

# What each exit status means, for `--help` and the documentation.
EXIT_STATUS_HELP = {
    EX_OK: "success",
    EX_UNEXPECTED: "unexpected error (a bug: please report it with the traceback)",
    EX_USAGE: "invalid command line",
    EX_NEEDS_ATTENTION: "status: something needs attention",
    EX_DATAERR: "invalid input data (import file, job fields)",
    EX_NOINPUT: "no such job, backup or file",
    EX_SOFTWARE: "the daemon stopped but had to abandon a worker thread past its shutdown deadline",
    EX_IOERR: "the job store cannot be opened, is corrupt, or a write failed",
    EX_TEMPFAIL: "another secautod daemon holds the data directory",
    EX_CONFIG: "invalid configuration",
}


class SecautodError(Exception):
    """secautod could not do what was asked."""

    exit_status = EX_UNEXPECTED

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(SecautodError):
    """The configuration is invalid."""

    exit_status = EX_CONFIG


class StoreError(SecautodError):
    """The job store cannot be used."""

    exit_status = EX_IOERR


class StoreCorruptError(StoreError):
    """The database file is damaged or is not a secautod job store."""


class UnreadableJobError(StoreError):
    """A row in the jobs table holds values secautod cannot read.

    Another program wrote it; the file itself is sound, so a restore is not
    the cure: fix or delete the row (`secautod jobs delete ID`).
    """


class SchemaVersionError(StoreError):
    """The database was written by a newer secautod."""


class StoreUnreachableError(StoreError):
    """The database server could not be reached, or it dropped the connection.

    The pool opens a new connection for the next operation, so trying again
    soon may well succeed.
    """


class StoreBusyError(StoreError):
    """Another process held the database's write lock for too long."""


class StoreFullError(StoreError):
    """The disk holding the database or backup is full."""


class BackupError(StoreError):
    """A backup could not be made or verified."""


class OperationAborted(SecautodError):
    """The operation was stopped before it finished, on request."""


# Asked between the steps of a long operation; True makes it raise `OperationAborted`.
StopCheck = Callable[[], bool]


class BackupAborted(OperationAborted, BackupError):
    """The backup was stopped before it finished; nothing was kept."""


class LeadershipLostError(OperationAborted):
    """The instance no longer leads; its maintenance write was refused (SPEC §11).

    Another secautod instance took the lease (this one was paused, cut off
    or too slow to renew); its term now fences this one's writes out.
    """


class CleanupAborted(OperationAborted):
    """Cleanup was stopped between two batches; what it deleted stays deleted."""

    def __init__(self, deleted: int) -> None:
        super().__init__(f"cleanup stopped after deleting {deleted} job(s); the next run goes on")
        self.deleted = deleted


class InvalidJobError(SecautodError, ValueError):
    """A job, status or filter value is invalid."""

    exit_status = EX_DATAERR


class JobNotFoundError(SecautodError, LookupError):
    """No job has the given id."""

    exit_status = EX_NOINPUT

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class ImportFormatError(SecautodError):
    """A legacy JSON job file is malformed; nothing was imported."""

    exit_status = EX_DATAERR


class ImportParserFailed(SecautodError):
    """The process parsing a legacy JSON file stopped without finishing; nothing was imported."""


class LockHeldError(SecautodError):
    """Another secautod process holds the data directory's lock."""

    exit_status = EX_TEMPFAIL


class NotFoundError(SecautodError):
    """A file that was named does not exist."""

    exit_status = EX_NOINPUT


class SessionLostError(SecautodError):
    """The engine session was declared gone; the job's recovered outcome stands.

    secautod found the engine dead or silent past its lease and failed its
    running jobs; a write to one of them from the old session is refused.
    Open a new session to go on.
    """

    exit_status = EX_TEMPFAIL
