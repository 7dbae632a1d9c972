"""Cleanup alone, cleanup under the external writer, and one DELETE, in rounds.

A shorter companion to `bench_maintenance.py` for changes to cleanup: each
round takes a fresh copy of the 1,000,000-job database three times and runs
`JobStore.cleanup_old_jobs()` with nothing else running, the same while
`bench_maintenance.py`'s external writer inserts every 5 ms, and one
`DELETE` with the store's predicate. It prints each round's times, the
cleanup/DELETE ratio, the bytes and write calls each made (which depend on
the batch sizes cleanup chose, not on the disk's speed) and the writer's
latency during cleanup. Put a modified package first on `PYTHONPATH` to
compare two trees on one machine.

Usage: python benchmarks/bench_cleanup.py [--rounds 2] [--expire 250000]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
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
    written_by_this_process,
)
from generate import ensure_database

from secautod import JobStore
from secautod.store.sqlite.connection import connect
from secautod.timestamps import format_timestamp

QUIET_SECONDS = 2.0


def fresh_copy(base: Path, folder: Path) -> Path:
    """Return a warm, synced copy of the database."""
    live = folder / "jobs.db"
    copy_database(base, live)
    warm_page_cache(live)
    return live


def cleanup_alone(live: Path, max_age: timedelta, now: datetime) -> dict[str, float]:
    """Run cleanup with nothing else active; return its time and what it wrote."""
    with JobStore(live) as store:
        touch_memory()
        return measured(lambda: store.cleanup_old_jobs(max_age, now=now))


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


def one_delete(live: Path, cutoff: datetime) -> dict[str, float]:
    """Run one DELETE with the store's predicate; return its time and what it wrote.

    Its commit checkpoints the WAL (automatic checkpoint), as cleanup's pauses do.
    """
    conn = connect(live)
    stamp = format_timestamp(cutoff)
    touch_memory()
    figures = measured(lambda: conn.execute(SINGLE_DELETE, {"cutoff": stamp}))
    conn.close()
    return figures


def measured(operation: Callable[[], object]) -> dict[str, float]:
    """Run `operation`; return its seconds, the bytes it wrote and its write calls."""
    bytes_before, calls_before = written_by_this_process()
    started = time.perf_counter()
    operation()
    seconds = time.perf_counter() - started
    bytes_after, calls_after = written_by_this_process()
    return {
        "seconds": seconds,
        "bytes": bytes_after - bytes_before,
        "calls": calls_after - calls_before,
    }


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
        alone = cleanup_alone(live, now - cutoff, now)
        remove_database(live)
        live = fresh_copy(base, folder)
        loaded = cleanup_under_writer(live, folder, now - cutoff, now)
        remove_database(live)
        live = fresh_copy(base, folder)
        single = one_delete(live, cutoff)
        remove_database(live)
        rounds.append({"alone": alone, "writer": loaded, "delete": single})
        print(
            f"round {number}: cleanup alone {alone['seconds']:.1f} s, one DELETE "
            f"{single['seconds']:.1f} s ({alone['seconds'] / single['seconds']:.2f}x); "
            f"written {gib(alone['bytes'])} vs {gib(single['bytes'])} "
            f"({alone['bytes'] / single['bytes']:.2f}x) in {alone['calls']:,.0f} vs "
            f"{single['calls']:,.0f} write calls; under the writer "
            f"{loaded['seconds']:.1f} s, {describe(loaded['latency'])}"
        )
    ratios = [item["alone"]["seconds"] / item["delete"]["seconds"] for item in rounds]
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


def gib(count: float) -> str:
    """Format a byte count in GiB."""
    return f"{count / 1024**3:.2f} GiB"


if __name__ == "__main__":
    sys.exit(main())
