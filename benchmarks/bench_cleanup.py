"""Cleanup alone, cleanup under the external writer, and one DELETE, in rounds.

A shorter companion to `bench_maintenance.py` for changes to cleanup: each
round takes a fresh copy of the 1,000,000-job database three times and runs
`JobStore.cleanup_old_jobs()` with nothing else running, the same while
`bench_maintenance.py`'s external writer inserts every 5 ms, and one
`DELETE` with the store's predicate. It prints each round's times, the
cleanup/DELETE ratio and the writer's latency during cleanup. Put a modified
package first on `PYTHONPATH` to compare two trees on one machine.

Usage: python benchmarks/bench_cleanup.py [--rounds 2] [--expire 250000]
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_maintenance import (
    SINGLE_DELETE,
    Writer,
    choose_cutoff,
    describe,
    window_stats,
)
from common import (
    Target,
    base_parser,
    copy_database,
    median,
    print_targets,
    remove_database,
    save_results,
    touch_memory,
    warm_page_cache,
    work_dir,
)
from generate import ensure_database

from secautod import JobStore
from secautod.database import connect

QUIET_SECONDS = 2.0


def fresh_copy(base: Path, folder: Path) -> Path:
    """Return a warm, synced copy of the database."""
    live = folder / "jobs.db"
    copy_database(base, live)
    warm_page_cache(live)
    return live


def cleanup_seconds(live: Path, max_age: timedelta, now: datetime) -> float:
    """Run cleanup with nothing else active; return its time."""
    with JobStore(live) as store:
        touch_memory()
        started = time.perf_counter()
        store.cleanup_old_jobs(max_age, now=now)
        return time.perf_counter() - started


def cleanup_under_writer(
    live: Path, folder: Path, max_age: timedelta, now: datetime
) -> dict[str, Any]:
    """Run cleanup while the external writer inserts; return its time and the latencies."""
    with JobStore(live) as store:
        writer = Writer(live, folder / "writer.json", 0.005, "FULL")
        time.sleep(QUIET_SECONDS)
        started = time.monotonic()
        store.cleanup_old_jobs(max_age, now=now)
        ended = time.monotonic()
        time.sleep(0.5)
        samples = writer.stop()
    return {"seconds": ended - started, "latency": window_stats(samples, started, ended)}


def delete_seconds(live: Path, cutoff: datetime) -> float:
    """Run one DELETE with the store's predicate; return its time."""
    conn = connect(live)
    stamp = f"{cutoff:%Y-%m-%d %H:%M:%S}.{cutoff.microsecond // 1000:03d}"
    touch_memory()
    started = time.perf_counter()
    conn.execute(SINGLE_DELETE, {"cutoff": stamp})
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def main() -> int:
    """Measure cleanup against one DELETE, alone and under the writer."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--expire", type=int, default=250_000, help="expired jobs to delete")
    args = parser.parse_args()
    base = ensure_database(args.cache, args.jobs)
    folder = work_dir(args.cache, "cleanup")
    now = datetime.now(UTC)
    cutoff = choose_cutoff(base, args.expire)
    rounds: list[dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        live = fresh_copy(base, folder)
        alone = cleanup_seconds(live, now - cutoff, now)
        remove_database(live)
        live = fresh_copy(base, folder)
        loaded = cleanup_under_writer(live, folder, now - cutoff, now)
        remove_database(live)
        live = fresh_copy(base, folder)
        single = delete_seconds(live, cutoff)
        remove_database(live)
        rounds.append({"alone_s": alone, "writer": loaded, "delete_s": single})
        print(
            f"round {number}: cleanup alone {alone:.1f} s, one DELETE {single:.1f} s "
            f"({alone / single:.2f}x); under the writer {loaded['seconds']:.1f} s, "
            f"{describe(loaded['latency'])}"
        )
    ratios = [item["alone_s"] / item["delete_s"] for item in rounds]
    worst = max(item["writer"]["latency"]["max_ms"] for item in rounds)
    errors = sum(item["writer"]["latency"]["errors"] for item in rounds)
    targets = [
        Target(
            "cleanup time <= 2x one DELETE",
            f"median {median(ratios):.2f}x over {len(ratios)} rounds "
            f"({min(ratios):.2f}-{max(ratios):.2f}x)",
            max(ratios) <= 2.0,
        ),
        Target(
            "writer worst latency <= 100 ms during cleanup",
            f"max {worst:.0f} ms over {len(rounds)} rounds, errors {errors}",
            worst <= 100 and errors == 0,
        ),
    ]
    print_targets("bench_cleanup", targets)
    save_results(args.cache, "cleanup", targets, {"rounds": rounds, "expire": args.expire})
    return 0


if __name__ == "__main__":
    sys.exit(main())
