"""SQLite connections: the pragmas, transactions, the per-thread pool, error translation.

Every connection is made by `connect()`, which sets every pragma; every
write runs inside `transaction()`; every driver error is turned into a
`StoreError` by `translate_error()` at the boundary that knows which file
and action it was. SQL text lives in `queries.py`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from secautod.errors import (
    InvalidJobError,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
)
from secautod.store.base import DEFAULT_BUSY_TIMEOUT_SECONDS, SYNCHRONOUS_LEVELS, Synchronous
from secautod.store.sqlite import queries

# A huge transaction (an import) leaves a WAL this big at most once it is checkpointed.
JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


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
