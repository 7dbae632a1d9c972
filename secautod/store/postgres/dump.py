"""Backups of a PostgreSQL store: `pg_dump` archives, verified in a scratch database.

A backup is `pg_dump --format=custom` of secautod's tables alone. Its counts
per status are taken in the very snapshot the dump reads: one REPEATABLE READ
transaction exports its snapshot, counts the jobs, and stays open while
`pg_dump --snapshot` reads from it. The archive is then restored into a
scratch database secautod creates (`secautod_verify_<random>`, always
dropped, also on failure or abort); the restored counts must match. Without
the `CREATEDB` privilege verification fails: it never passes silently.

The password reaches `pg_dump`/`pg_restore` as `PGPASSWORD` in the child's
environment, never on its command line, and is never logged.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from secautod.errors import BackupAborted, BackupError, LockHeldError, StopCheck, StoreError
from secautod.files import create_owner_only_file
from secautod.log import get_logger
from secautod.store.base import redact_password
from secautod.store.postgres import queries
from secautod.store.postgres.connection import APPLICATION_NAME, connect, translating

log = get_logger("secautod.backup")

STOP_POLL_SECONDS = 0.1
# How long connections of a process that just exited may still be listed.
CLOSING_GRACE_SECONDS = 3.0
SCRATCH_PREFIX = "secautod_verify_"
_INSUFFICIENT_PRIVILEGE = "42501"


@dataclass(frozen=True, slots=True)
class Server:
    """How to reach the store's database: a URL, and the password the URL lacks (if any)."""

    url: str
    password: str | None

    @property
    def shown(self) -> str:
        """The URL for people: its password as `***`."""
        return redact_password(self.url)

    def conninfo(self, database: str | None = None) -> str:
        """Return a libpq conninfo string without the password (for a command line)."""
        params = conninfo_to_dict(self.url)
        params.pop("password", None)
        if database is not None:
            params["dbname"] = database
        params.setdefault("application_name", APPLICATION_NAME)
        return make_conninfo("", **params)

    def environment(self) -> dict[str, str]:
        """Return the child's environment: the password (if any) as PGPASSWORD."""
        env = dict(os.environ)
        password = conninfo_to_dict(self.url).get("password") or self.password
        if password:
            env["PGPASSWORD"] = str(password)
        return env

    def connect(self, database: str | None = None) -> psycopg.Connection[Any]:
        """Open one autocommit connection (to `database` instead of the URL's, if given)."""
        options: dict[str, Any] = {"application_name": APPLICATION_NAME}
        if self.password is not None:
            options["password"] = self.password
        if database is not None:
            options["dbname"] = database
        return connect(self.url, options)


@dataclass(frozen=True, slots=True)
class DumpSummary:
    """What a verified archive holds: its schema and its jobs per status."""

    path: Path
    schema: str
    counts: dict[str, int]

    @property
    def jobs(self) -> int:
        """How many jobs the archive holds."""
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class RestoredDump:
    """What `restore_dump` did: the archive restored, and the pre-restore dump (if any)."""

    backup: DumpSummary
    previous: Path | None


def write_dump(server: Server, target: Path, *, should_stop: StopCheck | None = None) -> None:
    """Dump secautod's tables into the new file `target`, verify it, and sync it.

    Raises `BackupError` (`BackupAborted` once `should_stop` says so); the
    caller removes `target`.
    """
    create_owner_only_file(target)
    with (
        translating(server.url, "backing up"),
        server.connect() as conn,
        conn.transaction(),
    ):
        conn.execute(queries.SNAPSHOT)
        schema = store_schema(conn, server)
        (snapshot,) = _row(conn.execute(queries.EXPORT_SNAPSHOT).fetchone())
        counts = _counts(conn)
        dump_tables(server, schema, target, snapshot=str(snapshot), should_stop=should_stop)
    verified = verify_dump(server, target, should_stop=should_stop)
    if verified.counts != counts:
        raise BackupError(
            f"the backup of {server.shown} failed verification: restored into a scratch "
            f"database it holds jobs per status {_shown(verified.counts)}, the database held "
            f"{_shown(counts)} in the dumped snapshot"
        )
    if should_stop is not None and should_stop():
        raise BackupAborted()
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dump_tables(
    server: Server,
    schema: str,
    target: Path,
    *,
    snapshot: str | None = None,
    should_stop: StopCheck | None = None,
) -> None:
    """Run `pg_dump --format=custom` of secautod's tables in `schema` into `target`."""
    command = ["pg_dump", "--format=custom", "--strict-names", f"--file={target}"]
    if snapshot is not None:
        command.append(f"--snapshot={snapshot}")
    command += [f"--table={_pattern(schema)}.{_pattern(name)}" for name in queries.SECAUTOD_TABLES]
    command.append(f"--dbname={server.conninfo()}")
    run_tool(command, server, "pg_dump", should_stop)


def verify_dump(
    server: Server, archive: Path, *, should_stop: StopCheck | None = None
) -> DumpSummary:
    """Restore `archive` into a scratch database and count its jobs per status there.

    The scratch database is always dropped. Raises `BackupError` if it cannot
    be created (no `CREATEDB`), the archive does not restore, or tables are missing.
    """
    schema = archive_schema(archive, server)
    with scratch_database(server) as scratch:
        with translating(server.url, "verifying the backup"), server.connect(scratch) as conn:
            if schema != "public":
                conn.execute(sql.SQL(queries.CREATE_SCHEMA).format(schema=sql.Identifier(schema)))
        restore_archive(server, archive, scratch, should_stop=should_stop)
        with translating(server.url, "verifying the backup"), server.connect(scratch) as conn:
            path = sql.Identifier(schema).as_string(conn)
            conn.execute(queries.SET_SEARCH_PATH, (path,))
            rows = conn.execute(queries.MISSING_TABLES, (list(queries.SECAUTOD_TABLES),))
            missing = [name for (name,) in rows.fetchall()]
            if missing:
                raise BackupError(
                    f"backup {archive} lacks secautod's tables {', '.join(missing)}: "
                    f"it is not a complete secautod backup"
                )
            counts = _counts(conn)
    return DumpSummary(archive, schema, counts)


def restore_archive(
    server: Server,
    archive: Path,
    database: str | None = None,
    *,
    clean: bool = False,
    should_stop: StopCheck | None = None,
) -> None:
    """Run `pg_restore` of `archive` into `database` (default: the URL's), in one transaction.

    With `clean` (a restore in place) the tables it holds are dropped first
    and their grants restored; the restoring role becomes their owner.
    """
    command = ["pg_restore", "--single-transaction", "--exit-on-error", "--no-owner"]
    if clean:
        command += ["--clean", "--if-exists"]
    else:
        # A scratch copy needs no grants (their roles may not even exist).
        command.append("--no-privileges")
    command += [f"--dbname={server.conninfo(database)}", str(archive)]
    run_tool(command, server, "pg_restore", should_stop)


def archive_schema(archive: Path, server: Server) -> str:
    """Return the schema the archive's `jobs` table belongs to (from `pg_restore --list`)."""
    listing = run_tool(["pg_restore", "--list", str(archive)], server, "pg_restore", None)
    for line in listing.splitlines():
        # "215; 1259 16390 TABLE <schema> jobs <owner>"
        fields = line.split(";", 1)[-1].split()
        if len(fields) >= 5 and fields[2:3] == ["TABLE"] and fields[4] == "jobs":
            return fields[3]
    raise BackupError(f"{archive} holds no jobs table: it is not a secautod backup")


def store_schema(conn: psycopg.Connection[Any], server: Server) -> str:
    """Return the schema holding secautod's tables on `conn`'s search path."""
    row = conn.execute(queries.STORE_SCHEMA).fetchone()
    if row is None:
        raise BackupError(f"no jobs table at {server.shown}: nothing to back up")
    return str(row[0])


@contextmanager
def scratch_database(server: Server) -> Iterator[str]:
    """Create a scratch database, yield its name, and always drop it."""
    name = f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"
    identifier = sql.Identifier(name)
    with translating(server.url, "verifying the backup"):
        admin = server.connect()
    with admin:
        try:
            admin.execute(sql.SQL(queries.CREATE_DATABASE).format(database=identifier))
        except psycopg.Error as exc:
            raise _scratch_refused(admin, server, exc) from exc
        try:
            yield name
        except BaseException:
            _drop_scratch(admin, name, identifier, server, raising=False)
            raise
        _drop_scratch(admin, name, identifier, server, raising=True)


def _drop_scratch(
    admin: psycopg.Connection[Any],
    name: str,
    identifier: sql.Identifier,
    server: Server,
    *,
    raising: bool,
) -> None:
    """Drop the scratch database; a failure is logged, and raised unless another error is."""
    try:
        admin.execute(sql.SQL(queries.DROP_DATABASE).format(database=identifier))
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        log.warning("backup_scratch_database_left", database=name, error=detail)
        if raising:
            raise BackupError(
                f"cannot drop the scratch database {name} on {server.shown} ({detail}): "
                f"drop it by hand"
            ) from exc


def _scratch_refused(
    conn: psycopg.Connection[Any], server: Server, exc: psycopg.Error
) -> Exception:
    detail = " ".join(str(exc).split())
    if getattr(exc, "sqlstate", None) == _INSUFFICIENT_PRIVILEGE:
        (role,) = _row(conn.execute(queries.CURRENT_ROLE).fetchone())
        return BackupError(
            f"cannot verify the backup of {server.shown}: verification restores it into a "
            f"scratch database, and the role {role} lacks the CREATEDB privilege ({detail}); "
            f"grant it (ALTER ROLE {role} CREATEDB) or disable backups"
        )
    return BackupError(f"cannot create a scratch database on {server.shown}: {detail}")


def run_tool(
    command: Sequence[str], server: Server, tool: str, should_stop: StopCheck | None
) -> str:
    """Run a libpq tool, stopping it when `should_stop` says so; return its output."""
    try:
        # The command is secautod's own: fixed tools and options, names it generated.
        process = subprocess.Popen(  # noqa: S603
            command,
            env=server.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except FileNotFoundError:
        raise BackupError(
            f"{tool} is not installed: backups of a PostgreSQL store need it "
            f"(Debian: apt install postgresql-client)"
        ) from None
    while True:
        try:
            output, errors = process.communicate(timeout=STOP_POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            if should_stop is not None and should_stop():
                process.kill()
                process.communicate()
                raise BackupAborted() from None
    if process.returncode != 0:
        detail = " ".join(errors.split()) or f"exit status {process.returncode}"
        raise BackupError(f"{tool} failed on {server.shown}: {detail}")
    return output


def database_name(url: str) -> str:
    """Return the database a URL names (backups are named after it)."""
    return unquote(urlsplit(url).path.lstrip("/")) or "postgres"


def restore_dump(server: Server, archive: Path, pre_restore: Path) -> RestoredDump:
    """Replace secautod's tables in the configured database with `archive`'s.

    The archive is verified first (in a scratch database); the tables it
    replaces are dumped to `pre_restore` first (when there are any). Refuses
    (`LockHeldError`) while other secautod connections use the database:
    daemons or engines on any host. The replacement is one transaction.
    """
    verified = verify_dump(server, archive)
    with translating(server.url, "restoring"), server.connect() as conn:
        in_use(conn, server)
        row = conn.execute(queries.STORE_SCHEMA).fetchone()
        schema = None if row is None else str(row[0])
        if schema is not None and schema != verified.schema:
            raise BackupError(
                f"backup {archive} holds the tables of schema {verified.schema}, but the job "
                f"store at {server.shown} is in schema {schema}: restore it with a storage.url "
                f"whose search_path names {verified.schema}"
            )
        if schema is None:
            conn.execute(
                sql.SQL(queries.CREATE_SCHEMA).format(schema=sql.Identifier(verified.schema))
            )
    previous = None
    if schema is not None:
        create_owner_only_file(pre_restore)
        try:
            dump_tables(server, schema, pre_restore)
        except BaseException:
            pre_restore.unlink(missing_ok=True)
            raise
        previous = pre_restore
    restore_archive(server, archive, clean=True)
    return RestoredDump(verified, previous)


def in_use(conn: psycopg.Connection[Any], server: Server) -> None:
    """Raise `LockHeldError` if other secautod connections use the database.

    A process that just exited (a CLI command run before this one) may
    still be listed while its server process ends: such connections get
    `CLOSING_GRACE_SECONDS` to go away.
    """
    give_up = time.monotonic() + CLOSING_GRACE_SECONDS
    while True:
        count, hosts = _row(
            conn.execute(queries.OTHER_SECAUTOD_CONNECTIONS, (APPLICATION_NAME,)).fetchone()
        )
        if not count or time.monotonic() >= give_up:
            break
        time.sleep(0.1)
    if count:
        raise LockHeldError(
            f"{count} other secautod connection(s) use {server.shown} (from {hosts}): stop "
            f"every secautod daemon and engine using this database, then restore"
        )


def _counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute(queries.COUNT_JOBS_BY_STATUS).fetchall()
    return {str(status): int(count) for status, count in rows}


def _pattern(name: str) -> str:
    """Quote `name` as a pg_dump pattern that matches it literally."""
    return '"' + name.replace('"', '""') + '"'


def _shown(counts: dict[str, int]) -> str:
    return ", ".join(f"{status}: {count}" for status, count in sorted(counts.items())) or "none"


def _row(row: Any) -> tuple[Any, ...]:
    if row is None:
        raise StoreError("the server returned no row")
    return tuple(row)
