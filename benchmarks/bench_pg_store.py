"""JobStore on PostgreSQL against raw psycopg running the same SQL, side by side, on 1M jobs.

Creates a scratch database `bench_<random>` on the server (`--server`, an
admin URL with CREATEDB), loads 1,000,000 jobs (`pg_data.py`), and drops
the database at the end, whatever happens. Both sides run in this process
against that database, with the same session settings (UTC, lock timeout,
`synchronous_commit` as the store's `synchronous` level). The raw side is
one plain psycopg connection in autocommit mode that executes the very
statements the store uses (imported from `secautod.store.postgres.queries`)
and does what any caller must do to get the same values in and out:

- writes: the JSON encoding of playbook/context/results and the timestamps;
  one statement, which autocommit makes one transaction;
- reads: the same SELECT and `json.loads` of the JSON columns (psycopg
  already returns `timestamptz` as aware datetimes).

The store adds its pool, its transaction handling, error translation,
argument checks and `Job` objects: that is the overhead the ratio measures.
No engine session is attached (a session adds the fencing query to every
write: other SQL than the raw side's).

Rounds alternate which side goes first (`bench_store.compare`); each
side's ops/s is the median of its rounds, and the ratio is the median of
the rounds' own ratios (each round's two blocks run back to back): on a
machine shared with other work, a round's two sides see the same load,
while the load can change several-fold from one round to the next. Also
measured: the calling thread's CPU per call on each side (client-side work
only: the server's is the same SQL on both sides), which the machine's load
does not change as it changes throughput; and, for reference, the latency
of `list_jobs(status, limit=100)` and `get_stats()` on 1M jobs.

Usage: python benchmarks/bench_pg_store.py [--server URL] [--jobs 1000000]
    [--synchronous FULL|NORMAL] [--rounds 9] [--only TEXT]
"""

from __future__ import annotations

import functools
import json
import random
import sys
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from bench_store import STATUSES, Op, Prepare, compare, latencies
from common import (
    Target,
    base_parser,
    median,
    percentile,
    print_targets,
    save_results,
    table,
)
from generate import JobFactory
from pg_data import add_server_option, fill_jobs, scratch_database

from secautod import Job, JobStore
from secautod.store.postgres import queries

LIST_QUERY = queries.list_jobs_query(frozenset({"status"}), limited=True)
LOCK_TIMEOUT = "5000ms"  # the store's default busy timeout, as its lock_timeout
SYNCHRONOUS_COMMIT = {"FULL": "on", "NORMAL": "off"}


# -- the raw side ---------------------------------------------------------------------
def raw_connect(url: str, synchronous: str) -> psycopg.Connection[Any]:
    """Open a plain autocommit connection with the store's session settings."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(queries.SET_UTC)
    conn.execute(queries.SET_LOCK_TIMEOUT, (LOCK_TIMEOUT,))
    conn.execute(queries.SET_SYNCHRONOUS_COMMIT, (SYNCHRONOUS_COMMIT[synchronous],))
    return conn


def _stamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _decode(row: tuple[Any, ...]) -> tuple[Any, ...]:
    job_id, status, playbook, context, results, error, created, started, completed, updated = row
    return (
        job_id,
        status,
        json.loads(playbook),
        json.loads(context),
        None if results is None else json.loads(results),
        error,
        created,
        started,
        completed,
        updated,
    )


def raw_save(conn: psycopg.Connection[Any], job: Job) -> None:
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


def raw_update_status(conn: psycopg.Connection[Any], job_id: str, status: str) -> None:
    """Set a job's status with the store's statement."""
    params = {"id": job_id, "status": status, "now": datetime.now(UTC)}
    if conn.execute(queries.UPDATE_JOB_STATUS, params).rowcount == 0:
        raise LookupError(job_id)


def raw_update_results(conn: psycopg.Connection[Any], job_id: str, results: Any) -> None:
    """Store a job's results with the store's statement."""
    params = {"id": job_id, "results": _dumps(results), "error": None, "now": datetime.now(UTC)}
    if conn.execute(queries.UPDATE_JOB_RESULTS, params).rowcount == 0:
        raise LookupError(job_id)


def raw_load(conn: psycopg.Connection[Any], job_id: str) -> tuple[Any, ...] | None:
    """Read and decode one job."""
    row = conn.execute(queries.SELECT_JOB, (job_id,)).fetchone()
    return None if row is None else _decode(row)


def raw_list(conn: psycopg.Connection[Any], status: str) -> list[tuple[Any, ...]]:
    """List the newest 100 jobs in `status`, decoded."""
    rows = conn.execute(LIST_QUERY, {"status": status, "limit": 100}).fetchall()
    return [_decode(row) for row in rows]


def raw_stats(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Count jobs per status."""
    counts = dict(conn.execute(queries.COUNT_JOBS_BY_STATUS).fetchall())
    counts["total"] = sum(counts.values())
    return counts


class Metered:
    """An operation that also adds up its calls and the calling thread's CPU time."""

    def __init__(self, op: Op) -> None:
        self.op = op
        self.calls = 0
        self.cpu = 0.0

    def __call__(self, index: int) -> object:
        started = time.thread_time()
        result = self.op(index)
        self.cpu += time.thread_time() - started
        self.calls += 1
        return result

    def cpu_per_call(self) -> float:
        """Return the mean CPU seconds per call so far."""
        return self.cpu / max(1, self.calls)


def measure(url: str, args: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run every comparison and the latencies on the loaded database."""
    sync = args.synchronous
    # The ids come through a connection of their own: a server process that has
    # just read the whole table ran get_stats 1.2-1.9x slower than a fresh one.
    with psycopg.connect(url) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM jobs WHERE rowid % 53 = 0")]
    store = JobStore(url, synchronous=sync)
    raw = raw_connect(url, sync)
    random.Random(7).shuffle(ids)
    factory = JobFactory(seed=11)
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
            "save_job (new job)",
            lambda i: store.save_job(job_for(i)),
            lambda i: raw_save(raw, job_for(i)),
            prebuild,
        ),
        (
            "update_job_status",
            lambda i: store.update_job_status(ids[i % len(ids)], cycle[i % 5]),
            lambda i: raw_update_status(raw, ids[i % len(ids)], cycle[i % 5]),
            None,
        ),
        (
            "update_job_results",
            lambda i: store.update_job_results(ids[i % len(ids)], results_values[i % 1000]),
            lambda i: raw_update_results(raw, ids[i % len(ids)], results_values[i % 1000]),
            None,
        ),
        (
            "get_job",
            lambda i: store.get_job(ids[i % len(ids)]),
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
    print(f"store vs raw psycopg, synchronous={sync}, {args.rounds} rounds", flush=True)
    figures: list[dict[str, Any]] = []
    for name, store_op, raw_op, prepare in operations:
        if args.only and args.only not in name:
            continue
        metered_store, metered_raw = Metered(store_op), Metered(raw_op)
        result = compare(name, metered_store, metered_raw, args.rounds, args.block_seconds, prepare)
        result["store_cpu_us"] = metered_store.cpu_per_call() * 1e6
        result["raw_cpu_us"] = metered_raw.cpu_per_call() * 1e6
        result["cpu_ratio"] = result["store_cpu_us"] / result["raw_cpu_us"]
        rounds = zip(result["store_rounds"], result["raw_rounds"], strict=True)
        paired = [store_rate / raw_rate for store_rate, raw_rate in rounds]
        result["ratio_of_medians"] = result["ratio"]
        result["ratio"] = median(paired)
        result["round_ratios"] = paired
        figures.append(result)
        print(
            f"  {name:<30} store {result['store_ops_per_s']:>9.1f} ops/s   "
            f"raw {result['raw_ops_per_s']:>9.1f} ops/s   ratio {result['ratio']:.2f} "
            f"(rounds {min(paired):.2f}-{max(paired):.2f}); CPU per call "
            f"{result['store_cpu_us']:.0f} vs {result['raw_cpu_us']:.0f} µs "
            f"({result['cpu_ratio']:.2f}x)",
            flush=True,
        )
    new_jobs.clear()
    list_latency = {
        status: latencies(functools.partial(store.list_jobs, status=status, limit=100), 20)
        for status in STATUSES
    }
    stats_latency = latencies(store.get_stats, 10)
    total = store.get_stats().total
    store.close()
    raw.close()
    return figures, {
        "jobs": total,
        "list_latency_s": list_latency,
        "stats_latency_s": stats_latency,
    }


def main() -> int:
    """Load the scratch database, compare both sides, print ops/s and ratios, drop it."""
    parser = base_parser(__doc__.splitlines()[0])
    add_server_option(parser)
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--block-seconds", type=float, default=0.4)
    parser.add_argument(
        "--only", metavar="TEXT", help="measure only the operations whose name contains TEXT"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    with scratch_database(args.server) as url:
        print(f"loading {args.jobs:,} jobs into {url}", flush=True)
        load = fill_jobs(url, args.jobs, datetime.now(UTC))
        figures, latency = measure(url, args)
    print(f"(scratch database dropped; {time.perf_counter() - started:.0f} s in all)")

    rows = [
        [
            item["operation"],
            f"{item['store_ops_per_s']:.1f}",
            f"{item['raw_ops_per_s']:.1f}",
            f"{item['ratio']:.2f}",
            "yes" if item["ratio"] >= 0.8 else "NO",
            f"{item['store_cpu_us']:.0f} / {item['raw_cpu_us']:.0f} ({item['cpu_ratio']:.2f}x)",
        ]
        for item in figures
    ]
    print()
    headers = ["operation", "store ops/s", "raw ops/s", "ratio", ">= 0.8", "CPU µs store / raw"]
    print(table(headers, rows))
    all_list = [value for values in latency["list_latency_s"].values() for value in values]
    stats_latency = latency["stats_latency_s"]
    print(
        f"\nlatency on {latency['jobs']:,} jobs: list_jobs(status, limit=100) median "
        f"{median(all_list) * 1000:.2f} ms, p95 {percentile(all_list, 0.95) * 1000:.2f} ms, max "
        f"{max(all_list) * 1000:.2f} ms; get_stats() median {median(stats_latency) * 1000:.0f} "
        f"ms, max {max(stats_latency) * 1000:.0f} ms"
    )
    label = f"[PostgreSQL, {args.synchronous}]"
    targets = [
        Target(
            f"store/raw ratio {item['operation']} {label}",
            f"{item['ratio']:.2f} (rounds {min(item['round_ratios']):.2f}-"
            f"{max(item['round_ratios']):.2f}; {item['store_ops_per_s']:.1f} vs "
            f"{item['raw_ops_per_s']:.1f} ops/s; CPU per call {item['cpu_ratio']:.2f}x)",
            item["ratio"] >= 0.8,
        )
        for item in figures
    ]
    targets.append(
        Target(
            f"list_jobs(status, limit=100) on {load['jobs']:,} jobs {label}",
            f"median {median(all_list) * 1000:.2f} ms, p95 "
            f"{percentile(all_list, 0.95) * 1000:.2f} ms, max {max(all_list) * 1000:.2f} ms",
            None,
        )
    )
    targets.append(
        Target(
            f"get_stats() on {load['jobs']:,} jobs {label}",
            f"median {median(stats_latency) * 1000:.0f} ms, max {max(stats_latency) * 1000:.0f} ms",
            None,
        )
    )
    print_targets(f"bench_pg_store {label}", targets)
    save_results(
        args.cache,
        f"pg-store-{args.synchronous.lower()}",
        targets,
        {"synchronous": args.synchronous, "load": load, "operations": figures, **latency},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
