"""The SQLite schema: numbered migrations, the recorded version, the shared table's shape.

Migrations are `migrations/NNNN_name.sql`, each applied in the transaction
that records it; a file from a newer secautod is refused.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from secautod.errors import SchemaVersionError, StoreCorruptError
from secautod.jobs import JOB_COLUMNS
from secautod.log import get_logger
from secautod.store.sqlite import queries
from secautod.store.sqlite.connection import transaction
from secautod.timestamps import format_timestamp

log = get_logger("secautod.store")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change, read from `migrations/NNNN_name.sql`."""

    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(script: str) -> tuple[str, ...]:
    """Split an SQL script into statements, dropping comment-only leftovers."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    return tuple(statements)


def load_migrations() -> tuple[Migration, ...]:
    """Read the packaged migrations, ordered by version."""
    folder = resources.files("secautod.store.sqlite").joinpath("migrations")
    migrations = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            script = entry.read_text(encoding="utf-8")
            migrations.append(Migration(int(number), rest[:-4], split_statements(script)))
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return tuple(migrations)


MIGRATIONS = load_migrations()
LATEST_SCHEMA_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the highest migration recorded in the file (0 for none)."""
    if conn.execute(queries.MIGRATIONS_TABLE_EXISTS).fetchone() is None:
        return 0
    (version,) = conn.execute(queries.SELECT_SCHEMA_VERSION).fetchone()
    return int(version or 0)


def check_not_newer(version: int, path: Path) -> None:
    """Refuse a file that a newer secautod has migrated past what we know."""
    if version > LATEST_SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} has schema version {version}, but this secautod only knows up to "
            f"{LATEST_SCHEMA_VERSION}: upgrade secautod, or restore a backup made by this version"
        )


def migrate(conn: sqlite3.Connection, path: Path, now: datetime, target: int | None = None) -> int:
    """Apply every migration above the file's version, each in its own transaction.

    `target` stops early (tests build files of earlier versions with it).
    Returns the version the file is at afterwards.
    """
    target = LATEST_SCHEMA_VERSION if target is None else target
    current = schema_version(conn)
    check_not_newer(current, path)
    if current >= target:
        return current  # the usual case: a plain read, no write lock
    for migration in MIGRATIONS:
        if migration.version > target:
            break
        if migration.version <= current:
            continue
        # Said before the write lock is taken: building an index on a big
        # jobs table holds it for seconds (README, "Upgrading").
        log.info(
            "schema_migration_started",
            path=str(path),
            version=migration.version,
            name=migration.name,
            database_bytes=_file_size(path),
        )
        started = time.monotonic()
        with transaction(conn):
            conn.execute(queries.CREATE_MIGRATIONS_TABLE)
            # Re-read under the write lock: another process may have migrated meanwhile.
            if schema_version(conn) >= migration.version:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                queries.RECORD_MIGRATION,
                (migration.version, migration.name, format_timestamp(now)),
            )
        log.info(
            "schema_migration_completed",
            version=migration.version,
            name=migration.name,
            duration_ms=round((time.monotonic() - started) * 1000),
        )
    return schema_version(conn)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def check_jobs_table(conn: sqlite3.Connection, path: Path, *, absent_ok: bool = False) -> None:
    """Refuse a file whose `jobs` table lacks a column of the shared contract.

    With `absent_ok`, a file with no `jobs` table at all passes (a new file).
    """
    columns = {row[1] for row in conn.execute(queries.JOBS_TABLE_INFO)}
    if not columns and absent_ok:
        return
    if not columns:
        raise StoreCorruptError(f"{path} has no jobs table: it is not a secautod job store")
    missing = [column for column in JOB_COLUMNS if column not in columns]
    if missing:
        raise StoreCorruptError(
            f"{path}: the jobs table lacks the column(s) {', '.join(missing)}; "
            f"it is not a job store this secautod can use"
        )
