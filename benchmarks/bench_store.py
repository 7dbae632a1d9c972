"""JobStore throughput against raw `sqlite3` running the same SQL, side by side.

Both sides work on one copy of the 1,000,000-job database, in one process,
with the same pragmas (WAL, the same `synchronous` level, busy timeout).
The raw side executes the very statements the store uses (imported from
`secautod.queries`) and does the work any caller must do to get the same
values in and out:

- writes: one transaction per call (the statement in autocommit mode), the
  JSON encoding of playbook/context/results and the timestamp formatting;
- reads: the same SELECT, `json.loads` of the JSON columns and
  `datetime.fromisoformat` of the timestamps (aware UTC), returned as a tuple.

The store additionally opens an explicit transaction (`BEGIN IMMEDIATE` /
`BEGIN` ... `COMMIT`), translates errors, validates arguments and builds
`Job` objects: that is the overhead the ratio measures.

Rounds alternate which side goes first; each side's figure is the median
of its rounds. Also measured: the latency of `list_jobs(status, limit=100)`
and `get_stats()` on the 1,000,000-job file.

Usage: python benchmarks/bench_store.py [--synchronous FULL|NORMAL] [--rounds 5]
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    Target,
    base_parser,
    copy_database,
    median,
    percentile,
    print_targets,
    save_results,
    table,
    warm_page_cache,
    work_dir,
)
from generate import JobFactory, ensure_database

from secautod import Job, JobStore
from secautod.store.sqlite import queries

STATUSES = ("pending", "running", "completed", "failed", "cancelled")
LIST_QUERY = queries.list_jobs_query(frozenset({"status"}), limited=True)
Op = Callable[[int], object]
Prepare = Callable[[int, int], None]


# -- the raw side ---------------------------------------------------------------------
def raw_connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """Open a plain connection with the store's durability settings."""
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _stamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _decode(row: tuple[Any, ...]) -> tuple[Any, ...]:
    job_id, status, playbook, context, results, error, created, started, completed, updated = row
    return (
        job_id,
        status,
        json.loads(playbook),
        json.loads(context),
        None if results is None else json.loads(results),
        error,
        _time(created),
        _time(started),
        _time(completed),
        _time(updated),
    )


def raw_save(conn: sqlite3.Connection, job: Job) -> None:
    """Upsert a job the way any caller of the shared table would."""
    params = {
        "id": job.id,
        "status": job.status.value,
        "playbook": _dumps(job.playbook),
        "context": _dumps(job.context),
        "results": None if job.results is None else _dumps(job.results),
        "error": job.error,
        "created_at": _stamp(job.created_at),
        "started_at": None if job.started_at is None else _stamp(job.started_at),
        "completed_at": None if job.completed_at is None else _stamp(job.completed_at),
        "updated_at": _stamp(datetime.now(UTC)),
    }
    conn.execute(queries.UPSERT_JOB, params)


def raw_update_status(conn: sqlite3.Connection, job_id: str, status: str) -> None:
    """Set a job's status with the store's statement."""
    params = {"id": job_id, "status": status, "now": _stamp(datetime.now(UTC))}
    if conn.execute(queries.UPDATE_JOB_STATUS, params).rowcount == 0:
        raise LookupError(job_id)


def raw_update_results(conn: sqlite3.Connection, job_id: str, results: Any) -> None:
    """Store a job's results with the store's statement."""
    params = {
        "id": job_id,
        "results": _dumps(results),
        "error": None,
        "now": _stamp(datetime.now(UTC)),
    }
    if conn.execute(queries.UPDATE_JOB_RESULTS, params).rowcount == 0:
        raise LookupError(job_id)


def raw_load(conn: sqlite3.Connection, job_id: str) -> tuple[Any, ...] | None:
    """Read and decode one job."""
    row = conn.execute(queries.SELECT_JOB, (job_id,)).fetchone()
    return None if row is None else _decode(row)


def raw_list(conn: sqlite3.Connection, status: str) -> list[tuple[Any, ...]]:
    """List the newest 100 jobs in `status`, decoded."""
    rows = conn.execute(LIST_QUERY, {"status": status, "limit": 100}).fetchall()
    return [_decode(row) for row in rows]


def raw_stats(conn: sqlite3.Connection) -> dict[str, int]:
    """Count jobs per status."""
    counts = dict(conn.execute(queries.COUNT_JOBS_BY_STATUS).fetchall())
    counts["total"] = sum(counts.values())
    return counts


# -- measuring ----------------------------------------------------------------------------
def run_block(op: Op, count: int, offset: int, prepare: Prepare | None = None) -> float:
    """Run `op` `count` times; return operations per second."""
    if prepare is not None:
        prepare(offset, count)
    started = time.perf_counter()
    for index in range(offset, offset + count):
        op(index)
    return count / (time.perf_counter() - started)


def calibrate(op: Op, block_seconds: float, offset: int, prepare: Prepare | None) -> int:
    """Return how many calls of `op` fill about `block_seconds`."""
    if prepare is not None:
        prepare(offset, 50_000)
    started = time.perf_counter()
    done = 0
    while done < 3 or time.perf_counter() - started < 0.1:
        op(offset + done)
        done += 1
    per_call = (time.perf_counter() - started) / done
    return max(3, int(block_seconds / per_call))


def compare(
    name: str,
    store_op: Op,
    raw_op: Op,
    rounds: int,
    block_seconds: float,
    prepare: Prepare | None = None,
) -> dict[str, Any]:
    """Measure both sides in alternating rounds; return the figures.

    `prepare(offset, count)` runs before each block, outside the timing.
    """
    count = calibrate(store_op, block_seconds, 10_000_000, prepare)
    calibrate(raw_op, block_seconds, 20_000_000, prepare)
    store_rates: list[float] = []
    raw_rates: list[float] = []
    for round_number in range(rounds):
        offset = round_number * count
        if round_number % 2 == 0:
            store_rates.append(run_block(store_op, count, offset, prepare))
            raw_rates.append(run_block(raw_op, count, 1_000_000 + offset, prepare))
        else:
            raw_rates.append(run_block(raw_op, count, 1_000_000 + offset, prepare))
            store_rates.append(run_block(store_op, count, offset, prepare))
    store_rate, raw_rate = median(store_rates), median(raw_rates)
    return {
        "operation": name,
        "calls_per_round": count,
        "store_ops_per_s": store_rate,
        "raw_ops_per_s": raw_rate,
        "ratio": store_rate / raw_rate,
        "store_rounds": store_rates,
        "raw_rounds": raw_rates,
    }


def latencies(call: Callable[[], object], count: int) -> list[float]:
    """Time `count` calls; return their durations in seconds."""
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        durations.append(time.perf_counter() - started)
    return durations


def main() -> int:
    """Run the comparison and print ops/s and ratios."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block-seconds", type=float, default=0.4)
    parser.add_argument(
        "--only", metavar="TEXT", help="measure only the operations whose name contains TEXT"
    )
    args = parser.parse_args()
    sync = args.synchronous

    base = ensure_database(args.cache, args.jobs)
    folder = work_dir(args.cache, f"store-{sync.lower()}")
    path = folder / "jobs.db"
    copy_database(base, path)
    warm_page_cache(path)

    # A fresh store on the file, as the CLI opens it: the first calls read cold pages.
    store = JobStore(path, synchronous=sync)
    started = time.perf_counter()
    store.list_jobs(status="completed", limit=100)
    first_list = time.perf_counter() - started
    started = time.perf_counter()
    store.get_stats()
    first_stats = time.perf_counter() - started
    raw = raw_connect(path, sync)

    rng = random.Random(7)
    factory = JobFactory(seed=11)
    ids = [row[0] for row in raw.execute("SELECT id FROM jobs WHERE rowid % 53 = 0")]
    rng.shuffle(ids)
    cycle = ["running", "completed", "failed", "pending", "cancelled"]
    new_jobs: dict[int, Job] = {}

    def job_for(index: int) -> Job:
        return new_jobs.pop(index)

    def prebuild(offset: int, count: int) -> None:
        """Build the jobs a block will save, outside the timing."""
        new_jobs.clear()
        for index in range(offset, offset + count):
            new_jobs[index] = Job.create(
                factory.playbook(), factory.context(datetime.now(UTC)), job_id=f"bench-{index}"
            )

    results_values = [factory.results("completed") for _ in range(1000)]

    operations: list[tuple[str, Op, Op, Prepare | None]] = [
        (
            "save (new job)",
            lambda i: store.save_job(job_for(i)),
            lambda i: raw_save(raw, job_for(i)),
            prebuild,
        ),
        (
            "update_status",
            lambda i: store.update_job_status(ids[i % len(ids)], cycle[i % 5]),
            lambda i: raw_update_status(raw, ids[i % len(ids)], cycle[i % 5]),
            None,
        ),
        (
            "update_results",
            lambda i: store.update_job_results(ids[i % len(ids)], results_values[i % 1000]),
            lambda i: raw_update_results(raw, ids[i % len(ids)], results_values[i % 1000]),
            None,
        ),
        (
            "load",
            lambda i: store.load_job(ids[i % len(ids)]),
            lambda i: raw_load(raw, ids[i % len(ids)]),
            None,
        ),
        (
            "list_jobs(status, limit=100)",
            lambda i: store.list_jobs(status=STATUSES[i % 5], limit=100),
            lambda i: raw_list(raw, STATUSES[i % 5]),
            None,
        ),
        ("get_stats", lambda i: store.get_stats(), lambda i: raw_stats(raw), None),
    ]
    print(f"store vs raw sqlite3, synchronous={sync}, {args.rounds} rounds, file {path}")
    figures: list[dict[str, Any]] = []
    for name, store_op, raw_op, prepare in operations:
        if args.only and args.only not in name:
            continue
        result = compare(name, store_op, raw_op, args.rounds, args.block_seconds, prepare)
        figures.append(result)
        print(
            f"  {name:<30} store {result['store_ops_per_s']:>9.0f} ops/s   "
            f"raw {result['raw_ops_per_s']:>9.0f} ops/s   ratio {result['ratio']:.2f}",
            flush=True,
        )
    new_jobs.clear()

    # Latency on the large file (warm): each status, and the stats.
    list_latency = {
        status: latencies(functools.partial(store.list_jobs, status=status, limit=100), 30)
        for status in STATUSES
    }
    all_list = [value for values in list_latency.values() for value in values]
    stats_latency = latencies(store.get_stats, 10)
    total = store.get_stats().total
    store.close()
    raw.close()

    rows = [
        [
            item["operation"],
            f"{item['store_ops_per_s']:.0f}",
            f"{item['raw_ops_per_s']:.0f}",
            f"{item['ratio']:.2f}",
            "yes" if item["ratio"] >= 0.8 else "NO",
        ]
        for item in figures
    ]
    print()
    print(table(["operation", "store ops/s", "raw ops/s", "ratio", ">= 0.8"], rows))
    print(f"\nlatency on the {total:,}-job file (warm page cache):")
    for status, values in list_latency.items():
        print(
            f"  list_jobs(status={status!r}, limit=100): median {median(values) * 1000:.2f} ms, "
            f"p95 {percentile(values, 0.95) * 1000:.2f} ms, max {max(values) * 1000:.2f} ms"
        )
    print(
        f"  get_stats(): median {median(stats_latency) * 1000:.1f} ms, "
        f"max {max(stats_latency) * 1000:.1f} ms"
    )
    print(
        f"  first calls on a freshly opened store: list_jobs {first_list * 1000:.1f} ms, "
        f"get_stats {first_stats * 1000:.1f} ms"
    )

    label = f"[{sync}]"
    targets = [
        Target(
            f"store/raw ratio {item['operation']} {label}",
            f"{item['ratio']:.2f} ({item['store_ops_per_s']:.0f} vs "
            f"{item['raw_ops_per_s']:.0f} ops/s)",
            item["ratio"] >= 0.8,
        )
        for item in figures
    ]
    list_p95 = percentile(all_list, 0.95)
    targets.append(
        Target(
            f"list_jobs(status, limit=100) on 1M jobs < 10 ms {label}",
            f"median {median(all_list) * 1000:.2f} ms, p95 {list_p95 * 1000:.2f} ms, "
            f"max {max(all_list) * 1000:.2f} ms",
            list_p95 < 0.010,
        )
    )
    targets.append(
        Target(
            f"get_stats() on 1M jobs < 300 ms {label}",
            f"median {median(stats_latency) * 1000:.0f} ms, max {max(stats_latency) * 1000:.0f} ms",
            max(stats_latency) < 0.300,
        )
    )
    print_targets(f"bench_store {label}", targets)
    save_results(
        args.cache,
        f"store-{sync.lower()}",
        targets,
        {
            "synchronous": sync,
            "jobs": total,
            "operations": figures,
            "list_latency_s": list_latency,
            "stats_latency_s": stats_latency,
            "first_list_s": first_list,
            "first_stats_s": first_stats,
        },
    )
    shutil.rmtree(folder, ignore_errors=True)  # a 3.4 GB copy
    return 0


if __name__ == "__main__":
    sys.exit(main())
