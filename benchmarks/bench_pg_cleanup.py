"""Cleanup on PostgreSQL while an engine writes: every engine write's latency, on 1M jobs.

Creates a scratch database `bench_<random>` on the server (`--server`, an
admin URL with CREATEDB), loads 1,000,000 jobs (`pg_data.py`), and drops
the database at the end, whatever happens. The cut-off is chosen so that
`--expire` finished jobs (default half the jobs: 500,000) are expired.

An engine process (`JobStore(url)`, as engines use it) writes every
`--interval` seconds (5 ms; late writes are not caught up), in turn:

- `save_job` of a new pending job;
- `update_job_status` of one of its own jobs (pending -> running -> completed);
- `update_job_status(..., "failed")` of a job cleanup is about to delete:
  one of the 1,000 oldest expired jobs still there (read just before the
  write, not timed), so the write often meets a row a cleanup batch holds.

It records each write's latency and outcome (a job deleted by cleanup before
the engine's update got to it counts apart, not as an error). After a quiet
baseline, `JobStore.cleanup_old_jobs()` runs in this process; the time
between its progress calls is how long each batch held its rows. With
`--max-seconds` cleanup is stopped after that long (a stop request, as the
daemon makes one) and the figures cover what it did until then.

Usage: python benchmarks/bench_pg_cleanup.py [--server URL] [--jobs 1000000]
    [--expire 500000] [--interval 0.005] [--max-seconds S]
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from common import (
    Target,
    base_parser,
    median,
    percentile,
    print_targets,
    save_results,
    work_dir,
)
from generate import JobFactory
from pg_data import add_server_option, fill_jobs, scratch_database

from secautod import Job, JobStore
from secautod.errors import CleanupAborted, JobNotFoundError
from secautod.store.postgres import queries

QUIET_SECONDS = 3.0
CANDIDATE_SPREAD = 1000  # the engine updates one of this many oldest expired jobs
_EXPIRY = "coalesce(completed_at, created_at)"  # idx_jobs_expiry's expression
OLDEST_EXPIRED = (
    f"SELECT id FROM jobs WHERE {queries._EXPIRED} "  # noqa: S608 (constant fragments)
    f"ORDER BY {_EXPIRY} LIMIT 1 OFFSET %(offset)s"
)
CUTOFF_FOR = (
    f"SELECT {_EXPIRY} FROM jobs "  # noqa: S608 (constant fragments)
    f"WHERE status IN ('cancelled', 'completed', 'failed') ORDER BY {_EXPIRY} LIMIT 1 OFFSET %s"
)
OK, DELETED = "ok", "deleted"
# What the server did meanwhile: WAL written, checkpoints (by time or by WAL
# volume, max_wal_size), buffers that backends had to write out themselves.
SERVER_ACTIVITY = """
SELECT pg_current_wal_lsn(), checkpoints_timed + checkpoints_req, buffers_backend
FROM pg_stat_bgwriter"""
WAL_BYTES = "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)"


# -- the engine process ------------------------------------------------------------------
def engine_main(url: str, out: Path, interval: float, cutoff_text: str) -> int:
    """Write until SIGTERM; then save (start, latency, kind, outcome) per write to `out`."""
    stop = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    cutoff = datetime.fromisoformat(cutoff_text)
    store = JobStore(url)
    reader = psycopg.connect(url, autocommit=True)
    factory = JobFactory(seed=5)
    payloads = [(factory.playbook(), factory.context(datetime.now(UTC))) for _ in range(200)]
    pending: deque[str] = deque()
    running: deque[str] = deque()
    samples: list[tuple[float, float, str, str]] = []
    turn = 0
    next_at = time.monotonic()
    while not stop:
        kind = ("insert", "own_update", "candidate_update")[turn % 3]
        target = ""
        if kind == "candidate_update":
            offset = (turn * 7919) % CANDIDATE_SPREAD
            row = reader.execute(OLDEST_EXPIRED, {"cutoff": cutoff, "offset": offset}).fetchone()
            target = row[0] if row else ""
        job = None
        if kind == "insert":
            playbook, context = payloads[turn % len(payloads)]
            job = Job.create(playbook, context, job_id=f"engine-{turn}")
        outcome = OK
        started = time.monotonic()
        try:
            if job is not None:
                store.save_job(job)
                pending.append(job.id)
            elif kind == "own_update" and running:
                store.update_job_status(running.popleft(), "completed")
            elif kind == "own_update" and pending:
                job_id = pending.popleft()
                store.update_job_status(job_id, "running")
                running.append(job_id)
            elif target:
                store.update_job_status(target, "failed")
        except JobNotFoundError:
            outcome = DELETED
        except Exception as exc:  # recorded, not raised: the run goes on
            outcome = f"{type(exc).__name__}: {exc}"
        samples.append((started, time.monotonic() - started, kind, outcome))
        turn += 1
        next_at += interval
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            next_at = time.monotonic()  # late: no catching up
    store.close()
    reader.close()
    out.write_text(json.dumps(samples))
    return 0


class Engine:
    """The engine process, started and stopped from the benchmark."""

    def __init__(self, url: str, out: Path, interval: float, cutoff: datetime) -> None:
        self.out = out
        command = [sys.executable, __file__, "engine", url, str(out), str(interval)]
        self.process = subprocess.Popen([*command, cutoff.isoformat()])

    def stop(self) -> list[tuple[float, float, str, str]]:
        """Stop the engine; return its samples."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        samples: list[tuple[float, float, str, str]] = json.loads(self.out.read_text())
        return samples


# -- figures -----------------------------------------------------------------------------
Sample = tuple[float, float, str, str]  # start (monotonic), latency, kind, outcome


def window(samples: list[Sample], start: float, end: float) -> dict[str, Any]:
    """Summarise the writes that started within [start, end), all kinds and per kind."""
    inside = [sample for sample in samples if start <= sample[0] < end]

    def stats(rows: list[Sample]) -> dict[str, Any]:
        timed = [latency for _, latency, _, outcome in rows if outcome in (OK, DELETED)]
        errors = [outcome for _, _, _, outcome in rows if outcome not in (OK, DELETED)]
        return {
            "writes": len(rows),
            "deleted_first": sum(1 for row in rows if row[3] == DELETED),
            "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "max_ms": max(timed, default=0.0) * 1000,
            "p99_ms": percentile(timed, 0.99) * 1000,
            "median_ms": median(timed) * 1000,
            "over_100ms": sum(1 for latency in timed if latency >= 0.1),
        }

    figures = stats(inside)
    figures["seconds"] = end - start
    figures["by_kind"] = {
        kind: stats([row for row in inside if row[2] == kind])
        for kind in ("insert", "own_update", "candidate_update")
    }
    return figures


def describe(stats: dict[str, Any]) -> str:
    """Format one window."""
    return (
        f"{stats['writes']} writes: max {stats['max_ms']:.1f} ms, p99 {stats['p99_ms']:.1f} ms, "
        f"median {stats['median_ms']:.2f} ms, >=100 ms: {stats['over_100ms']}, "
        f"errors {stats['errors']}"
    )


def choose_cutoff(url: str, expire: int) -> datetime:
    """Return the cut-off before which `expire` finished jobs lie."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(CUTOFF_FOR, (expire - 1,)).fetchone()
    assert row is not None, "fewer finished jobs than --expire"
    moment: datetime = row[0]
    return moment.astimezone(UTC) + timedelta(milliseconds=1)


def server_activity(url: str) -> tuple[str, int, int]:
    """Return the server's WAL position, checkpoints so far and backend-written buffers."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(SERVER_ACTIVITY).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), int(row[2])


def activity_between(url: str, before: tuple[str, int, int]) -> dict[str, Any]:
    """Return what the server did since `before` (see `server_activity`)."""
    after = server_activity(url)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(WAL_BYTES, (after[0], before[0])).fetchone()
    return {
        "wal_bytes": int(row[0]) if row else 0,
        "checkpoints": after[1] - before[1],
        "buffers_backend": after[2] - before[2],
    }


def run(
    url: str, folder: Path, expire: int, interval: float, max_seconds: float | None
) -> dict[str, Any]:
    """Run cleanup under the engine on the loaded database; return the figures."""
    now = datetime.now(UTC)
    cutoff = choose_cutoff(url, expire)
    store = JobStore(url)
    expected = sum(store.count_expired_jobs(now - cutoff, now=now).values())
    engine = Engine(url, folder / "engine.json", interval, cutoff)
    time.sleep(QUIET_SECONDS)  # the engine's baseline, before cleanup
    progress: list[tuple[float, int]] = []
    before = server_activity(url)
    started_at = datetime.now(UTC)  # to find the run in the server's log
    started = time.monotonic()
    deadline = started + (max_seconds if max_seconds is not None else float("inf"))
    try:
        deleted = store.cleanup_old_jobs(
            now - cutoff,
            now=now,
            should_stop=lambda: time.monotonic() > deadline,
            on_progress=lambda done: progress.append((time.monotonic(), done)),
        )
        stopped = False
    except CleanupAborted as exc:
        deleted, stopped = exc.deleted, True
    ended = time.monotonic()
    server = activity_between(url, before)
    time.sleep(1.0)
    samples = engine.stop()
    store.close()
    batch_seconds = [
        moment - previous
        for (moment, _), previous in zip(
            progress, [started, *(moment for moment, _ in progress[:-1])], strict=True
        )
    ]
    first = min(sample[0] for sample in samples)
    slow_writes = [
        (round(start - started, 3), round(latency * 1000, 1), kind, outcome)
        for start, latency, kind, outcome in samples
        if latency >= 0.1 and started <= start < ended
    ]
    batch_ends = [round(moment - started, 3) for moment, _ in progress]
    return {
        "cleanup_started_at": started_at.isoformat(),
        "server": server,
        "slow_writes": slow_writes,
        "batch_seconds": batch_seconds,
        "batch_ends": batch_ends,
        "expected": expected,
        "deleted": deleted,
        "stopped_early": stopped,
        "cleanup_seconds": ended - started,
        "batches": len(progress),
        "batch_max_ms": max(batch_seconds, default=0.0) * 1000,
        "batch_p99_ms": percentile(batch_seconds, 0.99) * 1000,
        "batch_median_ms": median(batch_seconds) * 1000,
        "baseline": window(samples, first, started),
        "during": window(samples, started, ended),
    }


def main() -> int:
    """Load the scratch database, run cleanup under the engine, print the latencies, drop it."""
    parser = base_parser(__doc__.splitlines()[0])
    add_server_option(parser)
    parser.add_argument("--expire", type=int, help="expired jobs to delete (default: half)")
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between writes")
    parser.add_argument("--max-seconds", type=float, help="stop cleanup after this long")
    args = parser.parse_args()
    folder = work_dir(args.cache, "pg-cleanup")
    begun = time.perf_counter()
    with scratch_database(args.server) as url:
        print(f"loading {args.jobs:,} jobs into {url}", flush=True)
        load = fill_jobs(url, args.jobs, datetime.now(UTC))
        expire = args.expire or args.jobs // 2
        figures = run(url, folder, expire, args.interval, args.max_seconds)
    print(f"(scratch database dropped; {time.perf_counter() - begun:.0f} s in all)")
    during = figures["during"]
    print(
        f"cleanup deleted {figures['deleted']:,} jobs (expected {figures['expected']:,}"
        f"{'; stopped at --max-seconds' if figures['stopped_early'] else ''}) in "
        f"{figures['cleanup_seconds']:.1f} s, {figures['batches']} batches: median "
        f"{figures['batch_median_ms']:.1f} ms, p99 {figures['batch_p99_ms']:.1f} ms, max "
        f"{figures['batch_max_ms']:.1f} ms"
    )
    server = figures["server"]
    print(
        f"server during cleanup: {server['wal_bytes'] / 1024**2:.0f} MiB of WAL, "
        f"{server['checkpoints']} checkpoint(s), {server['buffers_backend']} buffers written "
        f"by backends"
    )
    slow_batches = [
        (end, round(seconds * 1000, 1))
        for end, seconds in zip(figures["batch_ends"], figures["batch_seconds"], strict=True)
        if seconds >= 0.05
    ]
    print(f"batches >= 50 ms (s after start, ms): {slow_batches}")
    print(f"writes >= 100 ms (s after start, ms, kind, outcome): {figures['slow_writes']}")
    print(f"engine before cleanup: {describe(figures['baseline'])}")
    print(f"engine during cleanup: {describe(during)}")
    for kind, stats in during["by_kind"].items():
        print(f"  {kind:<17} {describe(stats)}, deleted by cleanup first {stats['deleted_first']}")
    locked = during["by_kind"]["candidate_update"]
    targets = [
        Target(
            f"cleanup never blocks an engine write > 100 ms: the worst update of a job "
            f"cleanup is deleting, during cleanup of {figures['deleted']:,} of "
            f"{load['jobs']:,} jobs [PostgreSQL]",
            f"max {locked['max_ms']:.1f} ms, p99 {locked['p99_ms']:.1f} ms over "
            f"{locked['writes']} writes, errors {locked['errors']}",
            locked["max_ms"] < 100 and locked["errors"] == 0,
        ),
        Target(
            "every engine write during cleanup (incl. ones no lock of cleanup can delay) "
            "[PostgreSQL]",
            f"max {during['max_ms']:.1f} ms, p99 {during['p99_ms']:.1f} ms over "
            f"{during['writes']} writes, errors {during['errors']}",
            None,
        ),
        Target(
            "cleanup time and batches [PostgreSQL]",
            f"{figures['cleanup_seconds']:.1f} s"
            f"{' (stopped at --max-seconds)' if figures['stopped_early'] else ''}, "
            f"{figures['batches']} batches, longest {figures['batch_max_ms']:.0f} ms",
            None,
        ),
    ]
    print_targets("bench_pg_cleanup", targets)
    save_results(args.cache, "pg-cleanup", targets, {"load": load, **figures})
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "engine":
        sys.exit(engine_main(sys.argv[2], Path(sys.argv[3]), float(sys.argv[4]), sys.argv[5]))
    sys.exit(main())
