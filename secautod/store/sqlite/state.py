"""secautod's own records in the SQLite file (migration 2): times as UTC text.

The tables and what is done with them are shared (`secautod.store.state`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from types import ModuleType
from typing import Any, ClassVar, cast

from secautod.store.common import Connection, TimeForm
from secautod.store.sqlite import queries
from secautod.store.state import TableSupervisorState
from secautod.timestamps import format_timestamp, parse_timestamp


def read_time(value: Any) -> datetime | None:
    """Read a time secautod stored as text (None, or empty, for a missing one)."""
    return parse_timestamp(value) if value else None


SQLITE_TIMES = TimeForm(bind=format_timestamp, stamp=format_timestamp, read=read_time)


class SQLiteSupervisorState(TableSupervisorState):
    """secautod's bookkeeping tables in the SQLite file."""

    queries: ClassVar[ModuleType] = queries
    times = SQLITE_TIMES

    @staticmethod
    def execute_many(conn: Connection, query: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run `query` once per row (the connection's own `executemany`)."""
        cast(sqlite3.Connection, conn).executemany(query, rows)
