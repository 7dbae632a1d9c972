"""PostgreSQL connections: the pool, session settings, transactions, error translation.

Every connection gets the same session settings (UTC, lock timeout,
synchronous commit) from `configure`; every write runs in one transaction
of `writing()`; every driver error becomes a `StoreError` in
`translate_error()`, which shows the server's URL with its password
redacted. SQL text lives in `queries.py`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Literal

import psycopg
import psycopg_pool

from secautod.errors import (
    InvalidJobError,
    LeadershipLostError,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreUnreachableError,
)
from secautod.store.base import SYNCHRONOUS_LEVELS, Synchronous, redact_password
from secautod.store.postgres import queries
from secautod.store.records import Fence

# How long opening a connection may take before the server counts as unreachable.
CONNECT_TIMEOUT_SECONDS = 10
# Threads beyond this many wait for a free connection (up to the pool timeout).
POOL_MAX_CONNECTIONS = 10
APPLICATION_NAME = "secautod"
# synchronous_commit per `storage.synchronous`: FULL waits for the WAL flush;
# NORMAL may lose the last commits on a server crash, never corrupts.
_SYNCHRONOUS_COMMIT = {"FULL": "on", "NORMAL": "off"}
# SQLSTATE classes and codes that name a cause a person can act on.
_AUTH_FAILED = {"28000", "28P01"}
_NO_DATABASE = "3D000"
_BUSY = {"55P03", "40001", "40P01", "57014"}  # lock timeout, serialization, deadlock, cancel
_CORRUPT = {"XX001", "XX002"}
_AUTH_FAILED_TEXT = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "pg_hba.conf rejects",
)
_NO_ROLE_TEXT = re.compile(r'role "[^"]*" does not exist')
_NO_DATABASE_TEXT = re.compile(r'database "[^"]*" does not exist')
_FULL = {"53100"}
# The server ended the session (pg_terminate_backend, shutdown, restart), or a
# connection exception: the next connection from the pool may well work.
_CONNECTION_LOST = {"57P01", "57P02", "57P03", "57P05", "25P03"}  # + idle timeouts
_PRIVILEGE = "42501"


def translate_error(exc: BaseException, url: str, action: str) -> StoreError | InvalidJobError:
    """Turn a driver or pool error into the `StoreError` a person can act on."""
    shown = redact_password(url)
    detail = " ".join(str(exc).split()) or type(exc).__name__
    state = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return StoreUnreachableError(
            f"{action}: no connection to PostgreSQL at {shown} ({detail}); check that the "
            f"server runs and answers, and storage.url"
        )
    # Connecting fails before any SQLSTATE arrives: libpq's text names the cause.
    if (
        state in _AUTH_FAILED
        or any(sign in detail for sign in _AUTH_FAILED_TEXT)
        or _NO_ROLE_TEXT.search(detail)
    ):
        return StoreError(
            f"{action}: PostgreSQL at {shown} refused the credentials ({detail}); check the "
            f"user in storage.url and the password (storage.password_env, ~/.pgpass)"
        )
    if state == _NO_DATABASE or _NO_DATABASE_TEXT.search(detail):
        return StoreError(f"{action}: {shown}: {detail}; create it or fix storage.url")
    if state in _CONNECTION_LOST or state.startswith("08"):
        return StoreUnreachableError(
            f"{action}: PostgreSQL at {shown} closed the connection ({detail}); "
            f"secautod reconnects for the next try"
        )
    if state in _BUSY:
        return StoreBusyError(
            f"{action}: {shown}: a lock stayed held by another session for longer than the "
            f"busy timeout ({detail}); retry, or raise storage.busy_timeout_seconds"
        )
    if state in _FULL:
        return StoreFullError(f"{action}: the disk of PostgreSQL at {shown} is full ({detail})")
    if state in _CORRUPT:
        return StoreCorruptError(f"{action}: {shown} reports damaged data ({detail})")
    if state == _PRIVILEGE:
        return StoreError(
            f"{action}: the user of {shown} lacks a privilege secautod needs ({detail})"
        )
    if state.startswith("22"):  # data exception: a value the column cannot hold
        return InvalidJobError(f"{action}: {detail}")
    if isinstance(exc, psycopg.OperationalError) and not state:
        return StoreUnreachableError(
            f"{action}: cannot reach PostgreSQL at {shown} ({detail}); check that the "
            f"server runs and storage.url"
        )
    return StoreError(f"{action} failed on {shown}: {detail}")


class _Translated:
    """Turn driver errors raised in the block into `StoreError`s."""

    def __init__(self, url: str, action: str) -> None:
        self._url = url
        self._action = action

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if isinstance(exc, psycopg.Error | psycopg_pool.PoolTimeout):
            raise translate_error(exc, self._url, self._action) from exc
        return False


def translating(url: str, action: str) -> _Translated:
    """Return a context manager that translates driver errors for `action` on `url`."""
    return _Translated(url, action)


def connection_options(
    password: str | None, synchronous: Synchronous, busy_timeout: float
) -> dict[str, Any]:
    """Return the keyword arguments every connection is opened with."""
    if synchronous not in SYNCHRONOUS_LEVELS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS_LEVELS}, got {synchronous!r}")
    options: dict[str, Any] = {
        "application_name": APPLICATION_NAME,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    }
    if password is not None:
        # A password in storage.url wins; without either, libpq's passfile and service apply.
        options["password"] = password
    return options


def connect(url: str, options: dict[str, Any]) -> psycopg.Connection[Any]:
    """Open one connection to `url` (autocommit), outside the pool: for migrations."""
    return psycopg.connect(url, autocommit=True, **options)


class ConnectionPool:
    """A psycopg pool whose connections all carry secautod's session settings."""

    def __init__(
        self,
        url: str,
        options: dict[str, Any],
        *,
        synchronous: Synchronous,
        busy_timeout: float,
    ) -> None:
        self.url = url
        self._settings = (
            f"{int(busy_timeout * 1000)}ms",
            _SYNCHRONOUS_COMMIT[synchronous],
        )
        self._wait = CONNECT_TIMEOUT_SECONDS + busy_timeout
        self._closed = False
        self._close_lock = threading.Lock()
        self._fences = threading.local()  # each thread's fence (`fenced`)
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = (
            psycopg_pool.ConnectionPool(
                url,
                # Autocommit: a lone statement needs no BEGIN and COMMIT round trips.
                kwargs={**options, "autocommit": True},
                min_size=1,
                max_size=POOL_MAX_CONNECTIONS,
                configure=self._configure,
                name=APPLICATION_NAME,
                timeout=self._wait,
                open=False,
            )
        )
        self._pool.open(wait=False)

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """Give a new connection secautod's session settings (autocommit leaves it idle)."""
        lock_timeout, synchronous_commit = self._settings
        conn.execute(queries.SET_UTC)
        conn.execute(queries.SET_LOCK_TIMEOUT, (lock_timeout,))
        conn.execute(queries.SET_SYNCHRONOUS_COMMIT, (synchronous_commit,))

    @contextmanager
    def _connection(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            raise StoreError(f"the job store at {redact_password(self.url)} is closed")
        try:
            with translating(self.url, action), self._pool.connection(timeout=self._wait) as conn:
                yield conn
        except StoreUnreachableError:
            # The server may have ended every session (a restart, pg_terminate_backend):
            # drop the dead idle connections now rather than fail on each in turn.
            with suppress(psycopg.Error, psycopg_pool.PoolTimeout):
                self._pool.check()
            raise

    @contextmanager
    def writing(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        """Run the block as one transaction: committed at the end, rolled back on error.

        In a `fenced` block the transaction first checks the fence, and
        holds the lease row shared until it ends.
        """
        with self._connection(action) as conn, conn.transaction():
            fence: Fence | None = getattr(self._fences, "fence", None)
            if fence is not None:
                _check_fence(conn, fence)
            yield conn

    @contextmanager
    def fenced(self, fence: Fence | None) -> Iterator[None]:
        """Make every transaction of this thread in the block carry `fence`."""
        previous = getattr(self._fences, "fence", None)
        self._fences.fence = fence
        try:
            yield
        finally:
            self._fences.fence = previous

    @contextmanager
    def reading(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        """Run several reads against one consistent snapshot."""
        with self._connection(action) as conn, conn.transaction():
            conn.execute(queries.SNAPSHOT)
            yield conn

    @contextmanager
    def querying(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        """Run one statement (a read, or a write that stands alone) as its own transaction.

        Autocommit makes the statement one round trip; `writing` adds a
        `BEGIN` and a `COMMIT` round trip, worth it only for several statements.
        In a `fenced` block it is a `writing` transaction, so that no
        statement of a leader's maintenance escapes the fence.
        """
        if getattr(self._fences, "fence", None) is not None:
            with self.writing(action) as conn:
                yield conn
            return
        with self._connection(action) as conn:
            yield conn

    def close(self) -> None:
        """Close every connection; later calls fail with a clear error."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close()

    @property
    def closed(self) -> bool:
        """Tell whether `close` was called."""
        return self._closed


def _check_fence(conn: psycopg.Connection[Any], fence: Fence) -> None:
    """Refuse the transaction unless `fence`'s term is current; record the write in its term."""
    idle_limit = f"{max(1, int(fence.lease.total_seconds() * 1000))}ms"
    conn.execute(queries.SET_IDLE_IN_TRANSACTION_TIMEOUT, (idle_limit,))
    current = conn.execute(
        queries.CHECK_FENCE,
        {"name": queries.LEASE_NAME, "term": fence.term, "holder": fence.instance_id},
    ).fetchone()
    if current is None:
        raise LeadershipLostError(
            f"this instance no longer leads: its term {fence.term} is over (its lease ran "
            f"out or another instance took it); the write was refused"
        )
