"""SQLite mechanics for the store: connections, transactions, migrations, errors.

Only this module and the rest of the store (`store.py`, `job_rows.py`,
`backup_copy.py`) import `sqlite3`; SQL text lives in `queries.py`. Every
connection is made by `connect()`, which sets every pragma; every write runs inside
`transaction()`; every driver error is turned into a `StoreError` by
`translate_error()` at the boundary that knows which file and action it was.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from secautod import queries
from secautod.errors import (
    InvalidJobError,
    SchemaVersionError,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
)
from secautod.timestamps import format_timestamp

Synchronous = Literal["FULL", "NORMAL"]
# How a backup copy is verified: `PRAGMA integrity_check` (every index entry
# matched against its row) or `PRAGMA quick_check` (structure and every page
# readable, not index contents: several times faster on a large file).
BackupCheck = Literal["integrity", "quick"]
BACKUP_CHECKS: tuple[BackupCheck, ...] = ("integrity", "quick")
SYNCHRONOUS_LEVELS: tuple[Synchronous, ...] = ("FULL", "NORMAL")
DEFAULT_BUSY_TIMEOUT_SECONDS = 5.0
# A huge transaction (an import) leaves a WAL this big at most once it is checkpointed.
JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
JOBS_COLUMNS = (
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
DATA_DIRECTORY_MODE = 0o700
DATABASE_FILE_MODE = 0o600


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change, read from `migrations/NNNN_name.sql`."""

    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(script: str) -> tuple[str, ...]:
    """Split an SQL script into statements, dropping comment-only leftovers."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    return tuple(statements)


def load_migrations() -> tuple[Migration, ...]:
    """Read the packaged migrations, ordered by version."""
    folder = resources.files("secautod").joinpath("migrations")
    migrations = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            script = entry.read_text(encoding="utf-8")
            migrations.append(Migration(int(number), rest[:-4], split_statements(script)))
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return tuple(migrations)


MIGRATIONS = load_migrations()
LATEST_SCHEMA_VERSION = MIGRATIONS[-1].version


def translate_error(exc: sqlite3.Error, path: Path, action: str) -> StoreError:
    """Turn a driver error into the `StoreError` a person can act on."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    detail = str(exc)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in detail:
        return StoreBusyError(
            f"{action}: {path} stayed locked by another writer for longer than the busy "
            f"timeout ({detail}); retry, or raise storage.busy_timeout_seconds"
        )
    if code == sqlite3.SQLITE_FULL or "disk is full" in detail:
        return StoreFullError(
            f"{action}: the disk holding {path.parent} is full ({detail}); free space there"
        )
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "malformed" in detail:
        return StoreCorruptError(f"{action}: {path} is damaged or not a database ({detail})")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return StoreError(
            f"{action}: cannot open or write {path} ({detail}); check that the file and "
            f"its directory exist and are writable by this user"
        )
    return StoreError(f"{action} failed on {path}: {detail}")


def prepare_directory(directory: Path) -> None:
    """Create `directory` (owner-only) if it does not exist yet."""
    try:
        directory.mkdir(mode=DATA_DIRECTORY_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create directory {directory}: {exc.strerror}") from exc


def create_owner_only_file(path: Path) -> None:
    """Create an empty file readable by the owner only, unless it exists.

    SQLite gives the WAL and shared-memory files the database file's mode, so
    creating the database 0600 keeps all three private.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, DATABASE_FILE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from exc
    os.close(fd)


def connect(
    path: Path,
    *,
    synchronous: Synchronous = "FULL",
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
    wal: bool = True,
) -> sqlite3.Connection:
    """Open `path` (which must exist) with every pragma secautod relies on.

    `wal=False` is for backup files, which stay in rollback-journal mode so
    they are single self-contained files.
    """
    if synchronous not in SYNCHRONOUS_LEVELS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS_LEVELS}, got {synchronous!r}")
    uri = f"file:{quote(str(path))}?mode=rw"
    conn = sqlite3.connect(
        uri, uri=True, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        # PRAGMA takes no bound parameters; both values are validated above.
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if wal:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{path}: cannot switch to WAL journal mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Deleted jobs (security context) are overwritten, not left in free
        # pages that backups would copy; some SQLite builds default to off.
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
    except BaseException:
        conn.close()
        raise
    return conn


def transaction(conn: sqlite3.Connection) -> _Transaction:
    """Run the block as one write transaction, taking the write lock up front."""
    return _Transaction(conn)


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run several reads against one consistent snapshot of the database."""
    conn.execute(queries.BEGIN_READ)
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute(queries.COMMIT)


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the highest migration recorded in the file (0 for none)."""
    if conn.execute(queries.MIGRATIONS_TABLE_EXISTS).fetchone() is None:
        return 0
    (version,) = conn.execute(queries.SELECT_SCHEMA_VERSION).fetchone()
    return int(version or 0)


def check_not_newer(version: int, path: Path) -> None:
    """Refuse a file that a newer secautod has migrated past what we know."""
    if version > LATEST_SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} has schema version {version}, but this secautod only knows up to "
            f"{LATEST_SCHEMA_VERSION}: upgrade secautod, or restore a backup made by this version"
        )


def migrate(conn: sqlite3.Connection, path: Path, now: datetime, target: int | None = None) -> int:
    """Apply every migration above the file's version, each in its own transaction.

    `target` stops early (tests build files of earlier versions with it).
    Returns the version the file is at afterwards.
    """
    target = LATEST_SCHEMA_VERSION if target is None else target
    current = schema_version(conn)
    check_not_newer(current, path)
    if current >= target:
        return current  # the usual case: a plain read, no write lock
    for migration in MIGRATIONS:
        if migration.version > target:
            break
        with transaction(conn):
            conn.execute(queries.CREATE_MIGRATIONS_TABLE)
            # Re-read under the write lock: another process may have migrated meanwhile.
            if schema_version(conn) >= migration.version:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                queries.RECORD_MIGRATION,
                (migration.version, migration.name, format_timestamp(now)),
            )
    return schema_version(conn)


def check_jobs_table(conn: sqlite3.Connection, path: Path, *, absent_ok: bool = False) -> None:
    """Refuse a file whose `jobs` table lacks a column of the shared contract.

    With `absent_ok`, a file with no `jobs` table at all passes (a new file).
    """
    columns = {row[1] for row in conn.execute(queries.JOBS_TABLE_INFO)}
    if not columns and absent_ok:
        return
    if not columns:
        raise StoreCorruptError(f"{path} has no jobs table: it is not a secautod job store")
    missing = [column for column in JOBS_COLUMNS if column not in columns]
    if missing:
        raise StoreCorruptError(
            f"{path}: the jobs table lacks the column(s) {', '.join(missing)}; "
            f"it is not a job store this secautod can use"
        )


def integrity_problems(
    conn: sqlite3.Connection, limit: int = 20, check: BackupCheck = "integrity"
) -> list[str]:
    """Run `PRAGMA integrity_check` (or `quick_check`); return its complaints (empty when ok)."""
    pragma = "quick_check" if check == "quick" else "integrity_check"
    rows = [str(row[0]) for row in conn.execute(f"PRAGMA {pragma}({int(limit)})")]
    if rows == ["ok"]:
        return []
    # One row may hold several newline-separated complaints.
    return [line.strip(" *") for row in rows for line in row.splitlines() if line.strip(" *")]


def describe_problems(problems: list[str], shown: int = 3) -> str:
    """Summarise integrity complaints on one line: the first few and a count."""
    text = "; ".join(problems[:shown])
    return text if len(problems) <= shown else f"{text} (and {len(problems) - shown} more)"


@dataclass(frozen=True, slots=True)
class DatabaseFileSummary:
    """What `verify_database_file` learned about a file it found sound."""

    path: Path
    schema_version: int
    jobs: int
    size_bytes: int


def verify_database_file(path: Path) -> DatabaseFileSummary:
    """Check that `path` is an intact secautod job store this version can open.

    Opens the file read-only, runs `PRAGMA integrity_check`, and checks the
    schema version and the `jobs` table. Raises `StoreCorruptError` or
    `SchemaVersionError` naming the file and the problem.
    """
    if not path.is_file():
        raise StoreCorruptError(f"{path} does not exist or is not a regular file")
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise translate_error(exc, path, "verifying") from exc
    try:
        problems = integrity_problems(conn)
        if problems:
            raise StoreCorruptError(
                f"{path} failed its integrity check: {describe_problems(problems)}"
            )
        version = schema_version(conn)
        check_not_newer(version, path)
        check_jobs_table(conn, path)
        (jobs,) = conn.execute(queries.COUNT_ALL_JOBS).fetchone()
    except sqlite3.Error as exc:
        raise translate_error(exc, path, "verifying") from exc
    finally:
        conn.close()
    return DatabaseFileSummary(path, version, int(jobs), path.stat().st_size)


class ConnectionPool:
    """One connection per thread to one database file, closed together.

    SQLite connections must not be shared between threads mid-statement, and
    WAL lets readers in different threads run while a writer writes, so each
    thread gets its own connection on first use.
    """

    def __init__(self, path: Path, *, synchronous: Synchronous, busy_timeout: float) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: dict[int, sqlite3.Connection] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        self._inherited: list[sqlite3.Connection] = []

    def connection(self) -> sqlite3.Connection:
        """Return this thread's connection, opening it on first use."""
        if self._closed:
            raise StoreError(f"the job store {self.path} is closed")
        if os.getpid() != self._pid:
            self._forget_inherited()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.open_connection("opening")
            with self._lock:
                self._close_orphans()
                # current_thread() registers a thread started outside `threading`
                # (by C code or `_thread`), so it is not taken for an ended one.
                self._connections[threading.current_thread().ident or 0] = conn
            self._local.conn = conn
        return conn

    def open_connection(self, action: str) -> sqlite3.Connection:
        """Open a connection that the caller owns and must close."""
        with self.translating(action):
            return connect(self.path, synchronous=self.synchronous, busy_timeout=self.busy_timeout)

    def translating(self, action: str) -> _Translated:
        """Turn driver errors raised by the block into `StoreError`s."""
        return _Translated(self.path, action)

    def querying(self, action: str) -> _Query:
        """Run one statement's worth of reads on this thread's connection (no snapshot)."""
        return _Query(self, action)

    def writing(self, action: str) -> _Write:
        """Run the block in one write transaction on this thread's connection."""
        return _Write(self, action)

    @contextmanager
    def reading(self, action: str) -> Iterator[sqlite3.Connection]:
        """Run several reads against one snapshot on this thread's connection."""
        conn = self.connection()
        with self.translating(action), read_snapshot(conn):
            yield conn

    def checkpoint(self, action: str) -> int:
        """Checkpoint what can be without blocking; return the WAL frames left."""
        conn = self.connection()
        with self.translating(action):
            _busy, wal_frames, checkpointed = conn.execute(queries.CHECKPOINT_PASSIVE).fetchone()
        return max(0, int(wal_frames) - int(checkpointed))

    @contextmanager
    def without_automatic_checkpoints(self, action: str) -> Iterator[sqlite3.Connection]:
        """Turn off this thread's automatic checkpoints (a commit's share) for the block.

        For work whose commits would otherwise each copy a big WAL into the
        file on the spot; the caller checkpoints at a time of its choosing.
        """
        conn = self.connection()
        with self.translating(action):
            conn.execute(queries.AUTOCHECKPOINT_OFF)
        try:
            yield conn
        finally:
            with suppress(sqlite3.Error):
                conn.execute(queries.AUTOCHECKPOINT_DEFAULT)

    def close(self) -> None:
        """Checkpoint the WAL into the database file and close every connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections = list(self._connections.values())
            self._connections.clear()
        if connections:
            # Best effort: a reader in another process may keep part of the WAL alive.
            with suppress(sqlite3.Error):
                connections[0].execute(queries.CHECKPOINT_PASSIVE)
        for conn in connections:
            with suppress(sqlite3.Error):
                conn.close()

    @property
    def closed(self) -> bool:
        """Tell whether `close()` has been called."""
        return self._closed

    def _forget_inherited(self) -> None:
        """After fork(), set the parent's connections aside unused and unclosed.

        SQLite connections must not cross fork(): using one in the child, or
        even closing it, can break the parent's locks and WAL. They are kept
        referenced (so garbage collection never closes them) and new ones open.
        """
        with self._lock:
            self._inherited.extend(self._connections.values())
            self._connections.clear()
            self._local = threading.local()
            self._pid = os.getpid()

    def _close_orphans(self) -> None:
        """Close connections whose threads have ended (called under the lock)."""
        alive = {thread.ident for thread in threading.enumerate()}
        for ident in [ident for ident in self._connections if ident not in alive]:
            with suppress(sqlite3.Error):
                self._connections.pop(ident).close()


def checkpoint_database_file(path: Path) -> None:
    """Fold the WAL of a database nobody else has open into the main file."""
    try:
        conn = connect(path)
    except sqlite3.Error as exc:
        raise translate_error(exc, path, "checkpointing") from exc
    try:
        conn.execute(queries.CHECKPOINT_TRUNCATE)
    except sqlite3.Error as exc:
        raise translate_error(exc, path, "checkpointing") from exc
    finally:
        conn.close()


# The guards below are plain classes, not @contextmanager generators: they sit
# on every store call, and a generator-based manager costs several times more.
class _Translated:
    """Translate driver errors raised inside the block (see `translate_error`)."""

    __slots__ = ("action", "path")

    def __init__(self, path: Path, action: str) -> None:
        self.path = path
        self.action = action

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if isinstance(exc, sqlite3.Error):
            raise translate_error(exc, self.path, self.action) from exc
        if isinstance(exc, UnicodeEncodeError):
            raise InvalidJobError(
                f"{self.action}: text contains an unpaired surrogate and is not valid "
                f"Unicode ({exc})"
            ) from exc
        return False


class _Query(_Translated):
    """Give this thread's connection, with errors translated; no transaction of its own."""

    __slots__ = ("pool",)

    def __init__(self, pool: ConnectionPool, action: str) -> None:
        super().__init__(pool.path, action)
        self.pool = pool

    def __enter__(self) -> sqlite3.Connection:  # type: ignore[override]
        return self.pool.connection()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT around the block; ROLLBACK if it or the commit fails."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute(queries.BEGIN_WRITE)
        return self.conn

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if exc is not None:
            _rollback(self.conn)
            return False
        try:
            self.conn.execute(queries.COMMIT)
        except BaseException:
            _rollback(self.conn)
            raise
        return False


class _Write(_Query):
    """One write transaction on this thread's connection, with errors translated."""

    __slots__ = ("transaction",)

    def __enter__(self) -> sqlite3.Connection:  # type: ignore[override]
        self.transaction = _Transaction(self.pool.connection())
        try:
            return self.transaction.__enter__()
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path, self.action) from exc

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        try:
            self.transaction.__exit__(exc_type, exc, tb)
        except sqlite3.Error as commit_error:
            raise translate_error(commit_error, self.path, self.action) from commit_error
        return super().__exit__(exc_type, exc, tb)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute(queries.ROLLBACK)
