"""A PostgreSQL store's own account of itself: its size in the server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from pg_server import admin_connection, schema_of, scratch_schema

from secautod import JobStore

TABLES_SIZE = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname <> ALL(%s)"""


@pytest.fixture
def store_url() -> Iterator[str]:
    """A PostgreSQL URL working in a fresh schema, dropped after the test."""
    with scratch_schema() as url:
        assert url is not None
        yield url


def tables_bytes(schema: str, leaving_out: tuple[str, ...] = ()) -> int:
    """The tables of `schema` (but `leaving_out`) with their indexes and TOAST, as the server counts."""
    with admin_connection() as admin:
        row = admin.execute(TABLES_SIZE, (schema, list(leaving_out))).fetchone()
    assert row is not None
    return int(row[0])


def test_store_size_is_secautods_tables_alone(store_url: str, make_job: Any) -> None:
    """The size is secautod's tables, indexes and TOAST: not other tables in its schema or database, no WAL."""
    schema = schema_of(store_url)
    with JobStore(store_url) as store, scratch_schema() as other_url:
        assert other_url is not None
        store.save_job(make_job(id="big", context={"blob": secrets.token_urlsafe(200_000)}))
        with (
            admin_connection() as admin
        ):  # an engine's table beside secautod's, and another schema's
            for table in (f"{schema}.engine_notes", f"{schema_of(other_url)}.ballast"):
                admin.execute(
                    f"CREATE TABLE {table} AS SELECT repeat('x', 1000) AS note"
                    " FROM generate_series(1, 2000)"
                )
        size = store.store_size()
    assert size.database_bytes == tables_bytes(schema, leaving_out=("engine_notes",))
    assert size.database_bytes > 200_000  # the job's context, in TOAST
    assert size.wal_bytes is None  # the server's WAL is shared by every database
