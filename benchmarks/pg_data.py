"""A scratch PostgreSQL database of 1,000,000 generated jobs for the PostgreSQL benchmarks.

`scratch_database()` creates `bench_<random>` on the server (an admin URL
with `CREATEDB`) and always drops it afterwards; `fill_jobs()` opens a
`JobStore` on it once (so secautod's migrations create every table and
index), then loads the jobs through `COPY` and runs `VACUUM (ANALYZE)` on
them, as autovacuum would after a bulk load (the test server runs with
`autovacuum = off`), then a `CHECKPOINT`, so that the load's WAL is not
checkpointed during the measurement that follows.

The jobs have `generate.py`'s mix (statuses, 120 days of creation times,
playbooks, ~2 KB rows), with two shortcuts that keep a load of 1M jobs near
a minute: contexts and results are drawn from pools of `JobFactory`'s values
(every row still carries its own text, so PostgreSQL stores and compresses
each as it would any other), and every timestamp is in secautod's UTC form
(PostgreSQL keeps `timestamptz`, whatever form a writer used).
"""

from __future__ import annotations

import argparse
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from generate import _ERRORS, AGE_DAYS, STATUS_WEIGHTS, JobFactory, _dumps

from secautod import JobStore
from secautod.store.postgres.queries import JOB_COLUMNS

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
CONTEXT_POOL = 20_000
RESULTS_POOL = 2_000
COPY_CHUNK_ROWS = 5_000
# COPY's text format: a backslash, tab, newline or carriage return in a value is escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"


def add_server_option(parser: argparse.ArgumentParser) -> None:
    """Add `--server`, the admin URL scratch databases are created through."""
    parser.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        help=f"an admin URL with CREATEDB (default {DEFAULT_SERVER})",
    )


def database_url(server: str, database: str) -> str:
    """Return `server`'s URL naming `database` instead."""
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


@contextmanager
def scratch_database(server: str, prefix: str = "bench") -> Iterator[str]:
    """Create an empty database `<prefix>_<random>`, yield its URL, and drop it afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")  # a generated name, never input
    try:
        yield database_url(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _stamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


class PooledRows:
    """Rows of `jobs` (COPY text lines) in creation order, from pools of generated values."""

    def __init__(self, seed: int = 20260121) -> None:
        self.factory = JobFactory(seed)
        rng = self.factory.rng
        start = datetime(2026, 8, 1)
        self.contexts = [
            _escape(_dumps(self.factory.context(start + timedelta(minutes=index))))
            for index in range(CONTEXT_POOL)
        ]
        self.results = {
            status: [_escape(_dumps(self.factory.results(status))) for _ in range(RESULTS_POOL)]
            for status in ("completed", "failed")
        }
        self.playbooks = [_escape(text) for text in self.factory.playbook_texts]
        self.rng = rng

    def lines(self, count: int, now: datetime) -> Iterator[str]:
        """Yield `count` COPY lines created over the AGE_DAYS days before `now` (minus an hour)."""
        rng = self.rng
        statuses = tuple(STATUS_WEIGHTS)
        weights = tuple(STATUS_WEIGHTS.values())
        span = AGE_DAYS * 86400.0
        start = now - timedelta(seconds=span + 3600)
        drawn = rng.choices(statuses, weights=weights, k=count)
        for index, status in enumerate(drawn):
            created = start + timedelta(seconds=span * (index + rng.random()) / count)
            started = created + timedelta(seconds=rng.uniform(0.05, 20))
            completed = started + timedelta(seconds=rng.uniform(1, 900))
            started_at: datetime | None = started
            completed_at: datetime | None = completed
            if status == "pending":
                started_at = completed_at = None
            elif status == "running":
                completed_at = None
            elif status == "cancelled":
                started_at = None
            updated = completed_at or started_at or created
            results = (
                rng.choice(self.results[status]) if status in ("completed", "failed") else _NULL
            )
            error = _NULL
            if status == "failed":
                error = rng.choice(_ERRORS)
            elif status == "cancelled":
                error = "cancelled by operator"
            yield (
                "\t".join(
                    (
                        str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                        status,
                        rng.choice(self.playbooks),
                        rng.choice(self.contexts),
                        results,
                        error,
                        _stamp(created),
                        _NULL if started_at is None else _stamp(started_at),
                        _NULL if completed_at is None else _stamp(completed_at),
                        _stamp(updated),
                    )
                )
                + "\n"
            )


def _escape(text: str) -> str:
    return text.translate(_COPY_ESCAPES)


def fill_jobs(url: str, count: int, now: datetime, *, quiet: bool = False) -> dict[str, Any]:
    """Create secautod's schema in `url` and load `count` jobs; return what the load took."""
    started = time.perf_counter()
    with JobStore(url):  # the migrations: the real tables and indexes
        pass
    rows = PooledRows()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        with conn.cursor() as cursor, cursor.copy(f"COPY jobs ({JOB_COLUMNS}) FROM STDIN") as copy:
            chunk: list[str] = []
            done = 0
            for line in rows.lines(count, now):
                chunk.append(line)
                if len(chunk) == COPY_CHUNK_ROWS:
                    copy.write("".join(chunk).encode())
                    done += len(chunk)
                    chunk.clear()
                    if not quiet and done % 200_000 == 0:
                        elapsed = time.perf_counter() - started
                        print(f"  loaded {done:,} / {count:,} jobs ({elapsed:.0f} s)", flush=True)
            if chunk:
                copy.write("".join(chunk).encode())
        copied = time.perf_counter() - started
        conn.execute("VACUUM (ANALYZE) jobs")
        try:  # the load's ~2 GB of WAL is checkpointed now, not during the measurement
            conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            print("  (no CHECKPOINT: the role lacks pg_checkpoint)", flush=True)
        (size,) = conn.execute("SELECT pg_total_relation_size('jobs')").fetchone() or (0,)
        counts = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
    figures = {
        "jobs": sum(counts.values()),
        "status_counts": counts,
        "copy_seconds": round(copied, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "total_relation_bytes": int(size),
    }
    if not quiet:
        print(
            f"  {figures['jobs']:,} jobs in {figures['seconds']} s (COPY "
            f"{figures['copy_seconds']} s, then VACUUM ANALYZE, CHECKPOINT); jobs with indexes "
            f"and TOAST {size / 1024**3:.2f} GiB",
            flush=True,
        )
    return figures
