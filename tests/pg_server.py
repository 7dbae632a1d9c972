"""The PostgreSQL server tests use: 127.0.0.1:5432, trust auth, database `test`.

Each test works in a schema of its own (`scratch_schema`), dropped after it.
In CI (CI=true) a server that does not answer fails the test (`require`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from harness import require

SERVER = os.environ.get("SECAUTOD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def schema_url(schema: str, server: str = SERVER) -> str:
    """Return `server`'s URL with `schema` first on the search path."""
    separator = "&" if "?" in server else "?"
    return f"{server}{separator}options={quote(f'-csearch_path={schema}')}"


def admin_connection() -> psycopg.Connection[object]:
    """Connect to the test server (autocommit), or skip (fail in CI) when it does not answer."""
    try:
        return psycopg.connect(SERVER, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        require(False, f"PostgreSQL at {SERVER} does not answer: {exc}")
        raise  # not reached: require skipped or failed


@contextmanager
def scratch_schema(*, enabled: bool = True) -> Iterator[str | None]:
    """Create a fresh schema, yield a URL that works in it, drop it afterwards."""
    if not enabled:
        yield None
        return
    schema = f"secautod_test_{secrets.token_hex(6)}"
    with admin_connection() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")  # a generated name, never input
        try:
            yield schema_url(schema)
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def scratch_database() -> Iterator[str]:
    """Create a fresh database, yield its URL, drop it afterwards.

    For tests that look at the whole database (who else is connected),
    where a schema of the shared `test` database would see other tests'.
    """
    name = f"secautod_test_{secrets.token_hex(6)}"
    with admin_connection() as admin:
        admin.execute(f"CREATE DATABASE {name}")  # a generated name, never input
        try:
            parts = urlsplit(SERVER)
            yield urlunsplit(parts._replace(path=f"/{name}"))
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
