"""CPU time per `JobStore` call, for comparing two versions under a shared machine's load.

Run by `compare_versions.py --cpu` with each version's interpreter; uses
only the public API both versions have (`JobStore`, `Job.create`), so it
imports nothing else from either tree. Prints one JSON object: per
operation, the calling thread's CPU microseconds per call (what the code
costs; a busy neighbour stretches wall time, much less CPU time) and the
wall microseconds per call.

Usage: python cpu_per_call.py DATABASE [--calls 400]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from secautod import Job, JobStore

STATUSES = ("completed", "failed", "cancelled", "pending", "running")
CYCLE = ("running", "completed", "failed", "pending", "cancelled")


def measure(call: Callable[[int], object], calls: int) -> dict[str, float]:
    """Run `call(i)` `calls` times; return CPU and wall microseconds per call."""
    call(-1)  # warm-up
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    for index in range(calls):
        call(index)
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    return {"cpu_us": cpu / calls * 1e6, "wall_us": wall / calls * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", type=Path)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    with sqlite3.connect(f"file:{args.database}?mode=ro", uri=True) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM jobs WHERE rowid % 97 = 0")]
    random.Random(7).shuffle(ids)
    playbook = {
        "name": "phishing-triage",
        "steps": [{"id": f"s{n}", "action": "x"} for n in range(8)],
    }
    context = {"alert": {"id": "ALR-1", "src_ip": "10.0.0.1", "indicators": list(range(40))}}
    results = {"verdict": "benign", "score": 12.5, "actions_taken": ["a", "b"]}
    now = datetime.now(UTC).strftime("%H%M%S%f")
    calls = args.calls
    figures: dict[str, Any] = {}
    with JobStore(args.database) as store:
        jobs = [
            Job.create(playbook, context, job_id=f"cpu-{args.tag}-{now}-{index}")
            for index in range(-1, calls)
        ]
        operations: list[tuple[str, Callable[[int], object], int]] = [
            ("save (new job)", lambda i: store.save_job(jobs[i + 1]), calls),
            (
                "update_status",
                lambda i: store.update_job_status(ids[i % len(ids)], CYCLE[i % 5]),
                calls,
            ),
            (
                "update_results",
                lambda i: store.update_job_results(ids[i % len(ids)], results),
                calls,
            ),
            ("load", lambda i: store.load_job(ids[(i * 7) % len(ids)]), calls * 4),
            (
                "list_jobs(status, limit=100)",
                lambda i: store.list_jobs(status=STATUSES[i % 5], limit=100),
                calls // 4,
            ),
            ("get_stats", lambda i: store.get_stats(), max(5, calls // 40)),
        ]
        for name, call, count in operations:
            figures[name] = measure(call, count)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
