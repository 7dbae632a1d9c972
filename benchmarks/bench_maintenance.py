"""Maintenance against the engine: cleanup and backup while an external writer inserts.

Three parts, on fresh copies of the 1,000,000-job database:

1. Reference times, with nothing else running: `cp` of the file (and
   `cp` + fsync), `JobStore.backup_jobs()` with each `backup_check` (and,
   to locate its cost, the bare SQLite backup API copy and the `PRAGMA
   integrity_check` of the copy), `JobStore.cleanup_old_jobs()` deleting
   ~250,000 expired jobs, and one `DELETE` statement with the same
   predicate on another copy. Issue 20's targets: the backup against what
   an operator would run instead (the `sqlite3` shell's `.backup`, then
   `PRAGMA integrity_check` on the copy), `--backup-rounds` of each,
   alternating, <= 1.2x; cleanup <= 3x the one `DELETE`.
2. Latency: an external writer process (plain `sqlite3`, WAL, 5 s busy
   timeout, the same `synchronous` level, as the Go engine would open
   the file) inserts a job every 5 ms. After a quiet baseline, cleanup
   runs, then a backup of the whole file (the daemon's order: one
   maintenance worker); on a second copy both run at the same time in
   two threads (a CLI backup during the daemon's cleanup). The writer's
   worst, p99 and median insert latency and its errors are reported for
   each period.

The retention cut-off is chosen from the data so that the expired jobs
number `--expire` (default 250,000).

Usage: python benchmarks/bench_maintenance.py [--expire 250000] [--synchronous FULL]
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import (
    Target,
    base_parser,
    copy_database,
    fsync_file,
    median,
    percentile,
    print_targets,
    remove_database,
    save_results,
    touch_memory,
    warm_page_cache,
    work_dir,
)
from generate import JobFactory, ensure_database

from secautod import JobStore
from secautod.store import Synchronous
from secautod.store.sqlite import queries
from secautod.store.sqlite.connection import connect
from secautod.store.sqlite.snapshot import integrity_problems
from secautod.timestamps import format_timestamp

JULIAN_UNIX_EPOCH = 2440587.5
_TERMINAL = "('completed', 'failed', 'cancelled')"
_AGE = "coalesce(julianday(completed_at), julianday(created_at))"
# The store's own predicate, in one statement.
SINGLE_DELETE = "DELETE FROM jobs WHERE " + queries._EXPIRED  # noqa: S608


# -- the external writer (runs as its own process) -------------------------------------------
def writer_main(db: Path, out: Path, interval: float, synchronous: str) -> int:
    """Insert one pending job every `interval` seconds until SIGTERM; write latencies to `out`."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    conn = sqlite3.connect(db, timeout=5.0, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    factory = JobFactory(seed=99)
    samples: list[tuple[float, float, str]] = []
    insert = (
        f"INSERT INTO jobs ({queries.JOB_COLUMNS}) "  # noqa: S608
        "VALUES (?, 'pending', ?, ?, NULL, NULL, ?, NULL, NULL, ?)"
    )
    next_at = time.monotonic()
    while not stop.is_set():
        now_wall = datetime.now(UTC)
        stamp = f"{now_wall:%Y-%m-%d %H:%M:%S}.{now_wall.microsecond // 1000:03d}"
        params = (
            str(uuid.uuid4()),
            factory.playbook_texts[len(samples) % len(factory.playbook_texts)],
            json.dumps(factory.context(now_wall), separators=(",", ":")),
            stamp,
            stamp,
        )
        started = time.monotonic()
        error = ""
        try:
            conn.execute(insert, params)
        except sqlite3.Error as exc:
            error = f"{type(exc).__name__}: {exc}"
        samples.append((started, time.monotonic() - started, error))
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            next_at = time.monotonic()  # late: never burst to catch up
    conn.close()
    out.write_text(json.dumps(samples))
    return 0


class Writer:
    """The external writer process, started and stopped from the benchmark."""

    def __init__(self, db: Path, out: Path, interval: float, synchronous: str) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "writer",
                str(db),
                str(out),
                str(interval),
                synchronous,
            ]
        )

    def stop(self) -> list[tuple[float, float, str]]:
        """Stop the writer; return (start, latency, error) per insert."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        samples: list[tuple[float, float, str]] = json.loads(self.out.read_text())
        return samples


def window_stats(
    samples: list[tuple[float, float, str]], start: float, end: float
) -> dict[str, Any]:
    """Summarise the inserts that started within [start, end)."""
    inside = [sample for sample in samples if start <= sample[0] < end]
    latencies = [latency for _, latency, error in inside if not error]
    errors = [error for _, _, error in inside if error]
    return {
        "inserts": len(inside),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "max_ms": max(latencies, default=0.0) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "median_ms": median(latencies) * 1000,
        "over_100ms": sum(1 for latency in latencies if latency >= 0.1),
        "seconds": end - start,
    }


def describe(stats: dict[str, Any]) -> str:
    """Format one latency window."""
    return (
        f"{stats['inserts']} inserts in {stats['seconds']:.1f} s: max {stats['max_ms']:.1f} ms, "
        f"p99 {stats['p99_ms']:.1f} ms, median {stats['median_ms']:.2f} ms, "
        f">=100 ms: {stats['over_100ms']}, errors {stats['errors']}"
    )


# -- reference timings -----------------------------------------------------------------------
def choose_cutoff(path: Path, expire: int) -> datetime:
    """Return the cut-off before which exactly about `expire` finished jobs lie."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    (julian,) = conn.execute(
        f"SELECT {_AGE} AS age FROM jobs WHERE status IN {_TERMINAL} "  # noqa: S608
        "ORDER BY age LIMIT 1 OFFSET ?",
        (expire - 1,),
    ).fetchone()
    conn.close()
    seconds = (julian - JULIAN_UNIX_EPOCH) * 86400
    return datetime.fromtimestamp(seconds, UTC) + timedelta(milliseconds=1)


def bare_backup(source_path: Path, target_path: Path) -> tuple[float, float]:
    """Copy with the SQLite backup API alone, then integrity-check; return both times."""
    source = connect(source_path)
    target_path.touch(mode=0o600)
    target = connect(target_path, wal=False)
    started = time.perf_counter()
    source.backup(target, pages=1024)
    copy_seconds = time.perf_counter() - started
    started = time.perf_counter()
    problems = integrity_problems(target)
    check_seconds = time.perf_counter() - started
    if problems:
        print(f"  (integrity_check of the bare copy complained: {problems[:3]})")
    source.close()
    target.close()
    remove_database(target_path)
    return copy_seconds, check_seconds


def shell_backup(source_path: Path, target_path: Path) -> tuple[float, float, str]:
    """What an operator would run instead: the sqlite3 shell's `.backup`, then
    `PRAGMA integrity_check` of the copy; return both times and the check's answer."""
    remove_database(target_path)
    started = time.perf_counter()
    subprocess.run(
        ["sqlite3", str(source_path), f".backup '{target_path}'"], check=True, capture_output=True
    )
    copy_seconds = time.perf_counter() - started
    started = time.perf_counter()
    answer = subprocess.run(
        ["sqlite3", str(target_path), "PRAGMA integrity_check"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    check_seconds = time.perf_counter() - started
    remove_database(target_path)
    return copy_seconds, check_seconds, answer


def reference_timings(
    base: Path,
    folder: Path,
    cutoff: datetime,
    now: datetime,
    synchronous: Synchronous,
    backup_rounds: int,
) -> dict[str, Any]:
    """Time cp, backup and cleanup alone, and the single DELETE, on fresh copies."""
    figures: dict[str, Any] = {}
    live = folder / "jobs.db"
    copy_database(base, live)
    warm_page_cache(live)
    figures["file_bytes"] = live.stat().st_size

    # `cp` (copy_file_range here) and cp + fsync, from a clean page cache state (sync
    # first), median of three: single runs varied from 1.8 s to 6.5 s on this VM.
    duplicate = folder / "cp-target.db"
    cp_runs, cp_fsync_runs = [], []
    for _ in range(3):
        os.sync()
        touch_memory(4.0)
        seconds = copy_database(live, duplicate, sync=False)
        cp_runs.append(seconds)
        cp_fsync_runs.append(seconds + fsync_file(duplicate))
        remove_database(duplicate)
    figures["cp_s"] = median(cp_runs)
    figures["cp_fsync_s"] = median(cp_fsync_runs)
    figures["cp_runs_s"] = cp_runs
    figures["cp_fsync_runs_s"] = cp_fsync_runs
    print(
        f"  cp of the file: {figures['cp_s']:.2f} s, cp + fsync {figures['cp_fsync_s']:.2f} s "
        f"(medians of {', '.join(f'{value:.1f}' for value in cp_fsync_runs)} s)"
    )

    touch_memory(4.0)
    copy_seconds, check_seconds = bare_backup(live, folder / "bare-backup.db")
    figures["bare_backup_api_s"] = copy_seconds
    figures["integrity_check_s"] = check_seconds
    print(
        f"  bare SQLite backup API copy: {copy_seconds:.2f} s; "
        f"integrity_check of the copy: {check_seconds:.2f} s"
    )

    backups = folder / "backups"
    with JobStore(live, synchronous=synchronous) as store:
        # Issue 20's reference: the sqlite3 shell's .backup + integrity_check of the copy,
        # alternating with backup_jobs() round by round (`--backup-rounds`).
        backup_runs, shell_runs = [], []
        for number in range(backup_rounds):
            for side in ("store", "shell") if number % 2 == 0 else ("shell", "store"):
                touch_memory(4.0)
                if side == "store":
                    started = time.perf_counter()
                    backup = store.backup_jobs(backups, now=now)
                    backup_runs.append(time.perf_counter() - started)
                    remove_database(backup)
                else:
                    copy_s, check_s, answer = shell_backup(live, folder / "shell-backup.db")
                    shell_runs.append({"copy_s": copy_s, "check_s": check_s, "answer": answer})
        figures["backup_runs_s"] = backup_runs
        figures["backup_s"] = median(backup_runs)
        figures["shell_backup_runs"] = shell_runs
        figures["shell_backup_s"] = median([run["copy_s"] + run["check_s"] for run in shell_runs])
        print(
            "  JobStore.backup_jobs(): "
            + ", ".join(f"{value:.2f}" for value in backup_runs)
            + " s; sqlite3 shell .backup + integrity_check: "
            + ", ".join(
                f"{run['copy_s']:.2f} + {run['check_s']:.2f} ({run['answer']})"
                for run in shell_runs
            )
            + " s"
        )
        touch_memory(4.0)
        started = time.perf_counter()
        backup = store.backup_jobs(backups, now=now, check="quick")
        figures["backup_quick_s"] = time.perf_counter() - started
        print(f"  JobStore.backup_jobs(check='quick'): {figures['backup_quick_s']:.2f} s")
        remove_database(backup)

        touch_memory()
        started = time.perf_counter()
        deleted = store.cleanup_old_jobs(now - cutoff, now=now)
        figures["cleanup_s"] = time.perf_counter() - started
        figures["cleanup_deleted"] = deleted
        print(f"  JobStore.cleanup_old_jobs(): {deleted:,} deleted in {figures['cleanup_s']:.2f} s")
    remove_database(live)

    copy_database(base, live)
    warm_page_cache(live)
    conn = connect(live, synchronous=synchronous)
    stamp = format_timestamp(cutoff)
    touch_memory()
    started = time.perf_counter()
    deleted = conn.execute(SINGLE_DELETE, {"cutoff": stamp}).rowcount
    figures["single_delete_s"] = time.perf_counter() - started
    figures["single_delete_deleted"] = deleted
    conn.close()
    remove_database(live)
    print(f"  one DELETE statement: {deleted:,} deleted in {figures['single_delete_s']:.2f} s")
    return figures


# -- latency under maintenance -----------------------------------------------------------------
def latency_run(
    base: Path,
    folder: Path,
    cutoff: datetime,
    now: datetime,
    synchronous: Synchronous,
    interval: float,
    quiet_seconds: float,
    concurrent: bool,
) -> dict[str, Any]:
    """Run cleanup and backup while the writer inserts; return latency figures.

    Sequential (the daemon's own order: one maintenance worker) or both at
    once (a CLI `secautod backup` during the daemon's cleanup).
    """
    live = folder / "jobs.db"
    copy_database(base, live)
    warm_page_cache(live)
    store = JobStore(live, synchronous=synchronous)
    writer = Writer(live, folder / "writer.json", interval, synchronous)
    time.sleep(quiet_seconds)
    marks: dict[str, float] = {}
    outcome: dict[str, Any] = {}

    def cleanup() -> None:
        marks["cleanup_start"] = time.monotonic()
        outcome["deleted"] = store.cleanup_old_jobs(now - cutoff, now=now)
        marks["cleanup_end"] = time.monotonic()

    def backup() -> None:
        marks["backup_start"] = time.monotonic()
        outcome["backup"] = store.backup_jobs(folder / "backups", now=now)
        marks["backup_end"] = time.monotonic()

    if concurrent:
        threads = [threading.Thread(target=cleanup), threading.Thread(target=backup)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        cleanup()
        time.sleep(1.0)
        backup()
    time.sleep(1.0)
    samples = writer.stop()
    store.close()
    # Deleting a backup of this size stalls the disk for a moment: only after the writer stops.
    remove_database(outcome["backup"])
    remove_database(live)
    first = samples[0][0] if samples else 0.0
    start = min(marks["cleanup_start"], marks["backup_start"])
    end = max(marks["cleanup_end"], marks["backup_end"])
    windows = {
        "quiet baseline": window_stats(samples, first, start),
        "during cleanup": window_stats(samples, marks["cleanup_start"], marks["cleanup_end"]),
        "during backup": window_stats(samples, marks["backup_start"], marks["backup_end"]),
        "whole maintenance": window_stats(samples, start, end),
    }
    return {
        "concurrent": concurrent,
        "deleted": outcome["deleted"],
        "cleanup_s": marks["cleanup_end"] - marks["cleanup_start"],
        "backup_s": marks["backup_end"] - marks["backup_start"],
        "windows": windows,
    }


def backup_rounds_text(reference: dict[str, Any]) -> str:
    """Say how many alternating rounds the backup medians come from."""
    return f"{len(reference['backup_runs_s'])} rounds each, alternating"


def print_latency(title: str, latency: dict[str, Any]) -> None:
    """Print one latency run."""
    print(
        f"  {title}: cleanup deleted {latency['deleted']:,} in {latency['cleanup_s']:.1f} s; "
        f"backup took {latency['backup_s']:.1f} s"
    )
    for name, stats in latency["windows"].items():
        print(f"    {name:<18} {describe(stats)}")


def main() -> int:
    """Measure maintenance times and the writer's latency."""
    if len(sys.argv) > 1 and sys.argv[1] == "writer":
        return writer_main(Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--expire", type=int, default=250_000, help="expired jobs to delete")
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    parser.add_argument("--interval", type=float, default=0.005, help="writer interval (s)")
    parser.add_argument("--quiet-seconds", type=float, default=3.0)
    parser.add_argument(
        "--backup-rounds", type=int, default=2, help="backup_jobs() and shell backups each"
    )
    parser.add_argument("--skip-reference", action="store_true", help="only run the latency part")
    parser.add_argument(
        "--no-concurrent", action="store_true", help="skip cleanup and backup at the same time"
    )
    args = parser.parse_args()

    base = ensure_database(args.cache, args.jobs)
    folder = work_dir(args.cache, "maintenance")
    now = datetime.now(UTC)
    cutoff = choose_cutoff(base, args.expire)
    print(
        f"cut-off {cutoff:%Y-%m-%d %H:%M:%S} UTC ({(now - cutoff).days} days): "
        f"~{args.expire:,} expired jobs; synchronous={args.synchronous}"
    )
    figures: dict[str, Any] = {"synchronous": args.synchronous, "expire": args.expire}
    targets: list[Target] = []
    if not args.skip_reference:
        print("reference times (nothing else running):")
        reference = reference_timings(
            base, folder, cutoff, now, args.synchronous, args.backup_rounds
        )
        figures["reference"] = reference
        cleanup_ratio = reference["cleanup_s"] / reference["single_delete_s"]
        # Issue 20: against what an operator would run instead (the same copy and check).
        shell_ratio = reference["backup_s"] / reference["shell_backup_s"]
        backup_ratio = reference["backup_s"] / reference["cp_fsync_s"]
        targets += [
            Target(
                "cleanup time <= 3x one DELETE",
                f"{cleanup_ratio:.2f}x ({reference['cleanup_s']:.1f} s vs "
                f"{reference['single_delete_s']:.1f} s, {reference['cleanup_deleted']:,} rows)",
                cleanup_ratio <= 3.0,
            ),
            Target(
                "backup time <= 1.2x sqlite3 shell .backup + integrity_check",
                f"{shell_ratio:.2f}x ({reference['backup_s']:.1f} s vs "
                f"{reference['shell_backup_s']:.1f} s; medians of {backup_rounds_text(reference)})",
                shell_ratio <= 1.2,
            ),
            Target(
                "  backup time against cp + fsync (the earlier 2x target)",
                f"{backup_ratio:.2f}x ({reference['backup_s']:.1f} s vs cp + fsync "
                f"{reference['cp_fsync_s']:.1f} s; cp alone {reference['cp_s']:.1f} s)",
                None,
            ),
            Target(
                "  ... with jobs.backup_check: quick (against the shell's .backup + check)",
                f"{reference['backup_quick_s'] / reference['shell_backup_s']:.2f}x "
                f"({reference['backup_quick_s']:.1f} s)",
                None,
            ),
            Target(
                "  backup parts: API copy / integrity_check",
                f"{reference['bare_backup_api_s']:.1f} s / {reference['integrity_check_s']:.1f} s",
                None,
            ),
        ]

    print(f"latency: an external writer inserts every {args.interval * 1000:.0f} ms")
    run_latency = functools.partial(
        latency_run,
        base,
        folder,
        cutoff,
        now,
        args.synchronous,
        args.interval,
        args.quiet_seconds,
    )
    sequential = run_latency(concurrent=False)
    figures["latency_sequential"] = sequential
    print_latency("cleanup, then backup (as the daemon runs them)", sequential)
    cleanup_window = sequential["windows"]["during cleanup"]
    backup_window = sequential["windows"]["during backup"]
    targets += [
        Target(
            "writer worst latency < 100 ms during cleanup_old_jobs",
            f"max {cleanup_window['max_ms']:.0f} ms, p99 {cleanup_window['p99_ms']:.1f} ms, "
            f"errors {cleanup_window['errors']} ({sequential['deleted']:,} deleted)",
            cleanup_window["max_ms"] < 100 and cleanup_window["errors"] == 0,
        ),
        Target(
            "writer worst latency < 100 ms during a backup",
            f"max {backup_window['max_ms']:.0f} ms, p99 {backup_window['p99_ms']:.1f} ms, "
            f"errors {backup_window['errors']}",
            backup_window["max_ms"] < 100 and backup_window["errors"] == 0,
        ),
    ]
    if not args.no_concurrent:
        concurrent = run_latency(concurrent=True)
        figures["latency_concurrent"] = concurrent
        print_latency("cleanup and backup at the same time", concurrent)
        whole = concurrent["windows"]["whole maintenance"]
        targets.append(
            Target(
                "writer worst latency < 100 ms, cleanup + backup at once",
                f"max {whole['max_ms']:.0f} ms, p99 {whole['p99_ms']:.1f} ms, "
                f"errors {whole['errors']} ({whole['inserts']} inserts)",
                whole["max_ms"] < 100 and whole["errors"] == 0,
            )
        )
    print_targets("bench_maintenance", targets)
    save_results(args.cache, "maintenance", targets, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
