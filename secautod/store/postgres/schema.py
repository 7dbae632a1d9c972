"""The PostgreSQL schema: numbered migrations applied under an advisory lock.

Migrations are `migrations/NNNN_name.sql` (this backend's own numbering),
each applied in the transaction that records it in `schema_migrations`.
Several secautod instances may start at once against one database: the
first takes the advisory lock and migrates, the others wait and find the
work done. A database from a newer secautod is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import psycopg

from secautod.errors import SchemaVersionError, StoreError
from secautod.log import get_logger
from secautod.store.base import redact_password
from secautod.store.postgres import queries

log = get_logger("secautod.store")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change, read from `migrations/NNNN_name.sql`."""

    version: int
    name: str
    script: str


def load_migrations() -> tuple[Migration, ...]:
    """Read the packaged migrations, ordered by version."""
    folder = resources.files("secautod.store.postgres").joinpath("migrations")
    migrations = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            migrations.append(Migration(int(number), rest[:-4], entry.read_text(encoding="utf-8")))
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return tuple(migrations)


MIGRATIONS = load_migrations()
LATEST_VERSION = MIGRATIONS[-1].version


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """Return the applied schema version (0: no secautod schema yet)."""
    (exists,) = _one(conn, queries.MIGRATIONS_TABLE_EXISTS)
    if not exists:
        return 0
    (version,) = _one(conn, queries.SELECT_SCHEMA_VERSION)
    return int(version)


def migrate(
    conn: psycopg.Connection[Any], url: str, now: datetime, *, create: bool
) -> tuple[int, int]:
    """Apply pending migrations on `conn` (autocommit), one transaction each.

    Returns the versions found and reached.
    With `create=False` a database without secautod's schema is an error.
    """
    conn.execute(queries.TAKE_MIGRATION_LOCK, (queries.MIGRATION_LOCK_KEY,))
    try:
        found = schema_version(conn)
        if found > LATEST_VERSION:
            raise SchemaVersionError(
                f"{redact_password(url)} has schema version {found}, newer than this "
                f"secautod knows ({LATEST_VERSION}): upgrade secautod"
            )
        if found == 0 and not create:
            raise StoreError(
                f"no job store at {redact_password(url)}: start the daemon once to create "
                f"it, or check storage.url"
            )
        conn.execute(queries.CREATE_MIGRATIONS_TABLE)
        for migration in MIGRATIONS[found:]:
            with conn.transaction():
                conn.execute(migration.script.encode("utf-8"))
                conn.execute(queries.RECORD_MIGRATION, (migration.version, migration.name, now))
            log.info("schema_migrated", version=migration.version, name=migration.name)
        return found, LATEST_VERSION
    finally:
        conn.execute(queries.RELEASE_MIGRATION_LOCK, (queries.MIGRATION_LOCK_KEY,))


def _one(conn: psycopg.Connection[Any], query: str) -> tuple[Any, ...]:
    row = conn.execute(query).fetchone()
    if row is None:
        raise StoreError(f"no answer to {query!r}")
    return tuple(row)
