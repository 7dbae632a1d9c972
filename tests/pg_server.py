"""The PostgreSQL server tests use: 127.0.0.1:5432, trust auth, database `test`.

Each test works in a schema of its own (`scratch_schema`), dropped after it,
or in a database of its own (`scratch_database`) when it needs one.
In CI (CI=true) a server that does not answer fails the test (`require`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
from harness import require

SERVER = os.environ.get("SECAUTOD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def schema_url(schema: str, server: str = SERVER) -> str:
    """Return `server`'s URL with `schema` first on the search path."""
    separator = "&" if "?" in server else "?"
    return f"{server}{separator}options={quote(f'-csearch_path={schema}')}"


def schema_of(url: str) -> str:
    """Return the schema a `schema_url` URL works in."""
    return unquote(url).rsplit("-csearch_path=", 1)[1]


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


def database_of(url: str) -> str:
    """Return the database a URL names."""
    return urlsplit(url).path.lstrip("/")


@contextmanager
def scratch_database(template: str | None = None) -> Iterator[str]:
    """Create a fresh database, yield its URL, drop it afterwards.

    For tests that look at the whole database (who else is connected), where
    a schema of the shared `test` database would see other tests'. With
    `template`, the new database is a file-level copy of that one
    (`STRATEGY FILE_COPY`): none of its pages is in the server's buffers yet,
    so the first read of each comes from its file. Nobody may be connected
    to `template` meanwhile.
    """
    name = f"secautod_test_{secrets.token_hex(6)}"  # generated names, never input
    copy = f" TEMPLATE {template} STRATEGY FILE_COPY" if template is not None else ""
    with admin_connection() as admin:
        admin.execute(f"CREATE DATABASE {name}{copy}")
    try:
        yield urlunsplit(urlsplit(SERVER)._replace(path=f"/{name}"))
    finally:
        with admin_connection() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
