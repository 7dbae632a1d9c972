"""secautod's own records in PostgreSQL (migration 1 here): times as `timestamptz`.

The tables and what is done with them are shared (`secautod.store.state`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import ModuleType
from typing import Any, ClassVar, cast

import psycopg

from secautod.store.common import Connection, TimeForm
from secautod.store.postgres import queries
from secautod.store.postgres.rows import stored_time, utc_or_none
from secautod.store.state import TableSupervisorState


def as_given(value: datetime) -> datetime:
    """Bind an aware datetime as it is: the server compares (or rounds) it itself."""
    return value


POSTGRES_TIMES = TimeForm(bind=as_given, stamp=stored_time, read=utc_or_none)


class PostgresSupervisorState(TableSupervisorState):
    """secautod's bookkeeping tables in the PostgreSQL database."""

    queries: ClassVar[ModuleType] = queries
    times = POSTGRES_TIMES

    @staticmethod
    def execute_many(conn: Connection, query: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run `query` once per row, through a cursor (psycopg connections lack `executemany`)."""
        with cast(psycopg.Connection[Any], conn).cursor() as cursor:
            cursor.executemany(query, rows)
