"""PostgreSQL store locations: which backend a location opens, and URLs shown without passwords."""

from __future__ import annotations

import pytest

from secautod.errors import StoreBusyError, StoreError
from secautod.store.base import _backend_class, redact_password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:s3cret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u@h/db", "postgres://u@h/db"),
        (
            "postgresql://h/db?password=s3cret&sslmode=require",
            "postgresql://h/db?password=***&sslmode=require",
        ),
        ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
    ],
)
def test_passwords_never_show(url: str, shown: str) -> None:
    """A password in the authority or the query is replaced by *** and nothing else changes."""
    assert redact_password(url) == shown


def test_urls_open_postgresql_and_paths_open_sqlite() -> None:
    """postgresql:// and postgres:// pick the PostgreSQL backend; anything else is a SQLite path."""
    assert _backend_class("postgresql://h/db").__name__ == "PostgresJobStore"
    assert _backend_class("postgres://h/db").__name__ == "PostgresJobStore"
    assert _backend_class("data/jobs.db").__name__ == "SQLiteJobStore"
    assert _backend_class("postgresql.db").__name__ == "SQLiteJobStore"


def test_lock_timeouts_are_busy_errors_and_the_url_is_redacted() -> None:
    """A lock_timeout (55P03) becomes StoreBusyError; the message shows the URL without its password."""
    from psycopg import errors

    from secautod.store.postgres.connection import translate_error

    busy = translate_error(
        errors.LockNotAvailable("canceling statement due to lock timeout"),
        "postgresql://u:s3cret@h/db",
        "saving job j1",
    )
    assert isinstance(busy, StoreBusyError)
    assert "s3cret" not in str(busy)
    assert "postgresql://u:***@h/db" in str(busy)
    other = translate_error(errors.UndefinedTable("relation missing"), "postgresql://h/db", "x")
    assert isinstance(other, StoreError)
