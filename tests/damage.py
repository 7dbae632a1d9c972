"""Damage done on purpose to a real store file, as a crash or a foreign writer would leave it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

INDEX = "idx_jobs_status"


def write_rows_past_an_index(database: Path, count: int, index: str = INDEX) -> None:
    """Insert `count` jobs while `index` is switched off, so the index misses them.

    Made a partial index `WHERE 0` in the schema, the index takes no entries;
    its definition is then put back. `PRAGMA integrity_check` reports each
    row missing from the index, while `quick_check` (which does not compare
    index entries with the table) and reads through other indexes still work.
    """
    conn = sqlite3.connect(database, isolation_level=None)
    (definition,) = conn.execute(
        "SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?", (index,)
    ).fetchone()
    conn.close()
    _set_index_definition(database, index, definition + " WHERE 0")
    conn = sqlite3.connect(database, isolation_level=None)
    conn.executemany(
        "INSERT INTO jobs (id, status, playbook, context, created_at)"
        " VALUES (?, 'pending', '{}', '{}', '2026-11-01 00:00:00.000')",
        [(f"past-index-{number}",) for number in range(count)],
    )
    conn.close()
    _set_index_definition(database, index, definition)


def _set_index_definition(database: Path, index: str, definition: str) -> None:
    # A fresh connection per change: the schema is read again on the next open.
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute(
        "UPDATE sqlite_schema SET sql = ? WHERE type = 'index' AND name = ?", (definition, index)
    )
    conn.close()
