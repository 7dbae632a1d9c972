import sqlite3

import pytest

from secautod.store.sqlite import queries
from secautod.store.sqlite.schema import MIGRATIONS, split_statements


def test_list_query_refuses_unknown_filter_names() -> None:
    """Only the fixed filter fragments can become SQL."""
    with pytest.raises(ValueError, match="unknown listing filters"):
        queries.list_jobs_query(frozenset({"status; DROP TABLE jobs"}), limited=False)


def test_list_query_binds_every_value() -> None:
    """Every filter is a named parameter, and the limit is bound too."""
    sql = queries.list_jobs_query(frozenset({"status", "since", "until", "after"}), limited=True)
    for name in ("status", "since", "until", "after", "limit"):
        assert f":{name}" in sql


def test_split_statements_keeps_whole_statements_and_drops_comments() -> None:
    """The migration splitter yields complete statements, even with ';' inside text."""
    script = (
        "-- note\nCREATE TABLE a (x TEXT DEFAULT 'a;b');\nINSERT INTO a VALUES ('1');\n-- end\n"
    )
    statements = split_statements(script)
    assert statements == (
        "-- note\nCREATE TABLE a (x TEXT DEFAULT 'a;b');",
        "INSERT INTO a VALUES ('1');",
    )
    assert all(sqlite3.complete_statement(statement) for statement in statements)


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    """Packaged migrations load in order, each with at least one statement."""
    assert [migration.version for migration in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert all(migration.statements for migration in MIGRATIONS)
