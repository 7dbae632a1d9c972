"""Checking a PostgreSQL store for damage: secautod's tables read page by page.

The full check reads every row of secautod's tables (every heap page, and
every TOAST value through its index), so a page the server cannot read or
whose checksum fails surfaces as a finding. Where the `amcheck` extension is
installed and the role may execute its functions, it also checks every
B-tree index (`bt_index_check` with `heapallindexed`: every page read, every
row found in it) and the heap's tuples (`verify_heapam`). secautod never
creates the extension (that needs privileges it should not have).

The quick check only looks for the tables and reads one row of each. Damage
is returned as findings ("table jobs: invalid page in block 7 ..."); any
other error (connection, lock timeout) is raised as a `StoreError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from secautod.store.postgres import queries
from secautod.store.postgres.connection import ConnectionPool

# SQLSTATE classes of damage: XX internal errors (XX001 data_corrupted, XX002
# index_corrupted) and 58 system errors (an unreadable or missing file).
_DAMAGE_CLASSES = ("XX", "58")
_ACTION = "checking the database"


def integrity_problems(pool: ConnectionPool) -> list[str]:
    """Read every page of secautod's tables (and, with amcheck, indexes); return the findings."""
    with pool.querying(_ACTION) as conn:
        missing = _missing_tables(conn)
        amcheck = conn.execute(queries.AMCHECK_FUNCTIONS).fetchone()
        indexes = conn.execute(queries.TABLE_INDEXES, (list(queries.STORE_TABLES),))
        btrees = [(int(oid), str(name)) for oid, name in indexes.fetchall()]
    schema = str(amcheck[0]) if amcheck is not None else ""
    may_check_indexes = amcheck is not None and bool(amcheck[1])
    may_verify_heap = amcheck is not None and bool(amcheck[2])
    problems = [f"table {name} is missing" for name in missing]
    for table in [name for name in queries.STORE_TABLES if name not in missing]:
        # One transaction per relation: no snapshot is held across the whole check.
        problems += _findings(pool, f"table {table}", _read_every_row(table))
        if may_verify_heap:
            problems += _findings(pool, f"table {table}", _verify_heap(schema, table))
    if may_check_indexes:
        for oid, name in btrees:
            problems += _findings(pool, f"index {name}", _check_index(schema, oid))
    return problems


def quick_problems(pool: ConnectionPool) -> list[str]:
    """Check that secautod's tables are there and each answers a one-row read."""
    with pool.querying(_ACTION) as conn:
        missing = _missing_tables(conn)
    problems = [f"table {name} is missing" for name in missing]
    for table in queries.STORE_TABLES:
        if table not in missing:
            problems += _findings(pool, f"table {table}", _read_one_row(table))
    return problems


Check = Callable[[psycopg.Connection[Any]], list[str]]


def _findings(pool: ConnectionPool, subject: str, check: Check) -> list[str]:
    """Run `check` in a transaction of its own; damage it meets becomes a finding on `subject`."""
    with pool.querying(_ACTION) as conn:
        try:
            with conn.transaction():  # a savepoint: damage ends this check, not the others
                return [f"{subject}{finding}" for finding in check(conn)]
        except psycopg.Error as exc:
            if not (exc.sqlstate or "").startswith(_DAMAGE_CLASSES):
                raise
            message = exc.diag.message_primary or str(exc)
            return [f"{subject}: {' '.join(message.split())}"]


def _missing_tables(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(queries.MISSING_TABLES, (list(queries.STORE_TABLES),)).fetchall()
    return [str(name) for (name,) in rows]


def _read_every_row(table: str) -> Check:
    def check(conn: psycopg.Connection[Any]) -> list[str]:
        query = sql.SQL(queries.READ_EVERY_ROW).format(table=sql.Identifier(table))
        conn.execute(query).fetchone()
        return []

    return check


def _read_one_row(table: str) -> Check:
    def check(conn: psycopg.Connection[Any]) -> list[str]:
        conn.execute(sql.SQL(queries.READ_ONE_ROW).format(table=sql.Identifier(table))).fetchall()
        return []

    return check


def _verify_heap(schema: str, table: str) -> Check:
    def check(conn: psycopg.Connection[Any]) -> list[str]:
        query = sql.SQL(queries.VERIFY_HEAP).format(amcheck=sql.Identifier(schema))
        rows = conn.execute(query, (table,)).fetchall()
        return [f", block {block}, offset {offset}: {message}" for block, offset, message in rows]

    return check


def _check_index(schema: str, oid: int) -> Check:
    def check(conn: psycopg.Connection[Any]) -> list[str]:
        query = sql.SQL(queries.CHECK_INDEX).format(amcheck=sql.Identifier(schema))
        conn.execute(query, (oid,)).fetchone()
        return []

    return check
