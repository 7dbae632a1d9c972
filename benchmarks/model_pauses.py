"""Model: how long the engine's writers wait for the lock while cleanup runs.

A discrete-event model, not a measurement: cleanup holds the write lock for
batches of 10-30 ms, each followed by a pause sized by a policy; writers
arrive at random (each one busy with one write at a time), try the lock on
SQLite's default busy-handler schedule and hold it 1-8 ms when they get it.
It prints, per policy and load, the writers' median, p99, p99.9 and worst
wait (their own commit included) and how much of the time cleanup held the
lock (its progress). Policies: `fixed` (25 ms, cleanup's pause until
f98f81e), `batch` (the pause sized on the batch alone, as in f98f81e) and
`secautod` (`cleanup_batches.PauseSizer`: sized on the batch while nobody
else writes, otherwise on the two batches and at least 25 ms).

`bench_cleanup.py` measures one writer on a real file; this shows what
several writers contending in the same pause would see.

Usage: python benchmarks/model_pauses.py [--seconds 20] [--seeds 6]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from secautod.store.sqlite.retention import (
    BUSY_HANDLER_ATTEMPTS_MS,
    BUSY_HANDLER_LATER_INTERVAL_MS,
    CONTENDED_PAUSE_SECONDS,
    PauseSizer,
    pause_after,
)

_LAST, _LATER = BUSY_HANDLER_ATTEMPTS_MS[-1], BUSY_HANDLER_LATER_INTERVAL_MS
ATTEMPTS_MS = (*BUSY_HANDLER_ATTEMPTS_MS, *range(_LAST + _LATER, 5000, _LATER))
FIXED_PAUSE_MS = CONTENDED_PAUSE_SECONDS * 1000  # cleanup's pause before it was sized
LOADS = ((1, 5.0), (2, 50.0), (3, 60.0), (4, 100.0))  # writers, mean ms between their writes

Policy = Callable[[PauseSizer, float, float, bool], float]
POLICIES: dict[str, Policy] = {
    "fixed": lambda _sizer, _start, _end, _others: FIXED_PAUSE_MS,
    "batch": lambda _sizer, start, end, _others: pause_after((end - start) / 1000) * 1000,
    "secautod": lambda sizer, start, end, others: (
        sizer.after(start / 1000, end / 1000, others_wrote=others) * 1000
    ),
}


@dataclass
class Lock:
    """One run: who holds the lock, whether a writer took it since the last batch, the results."""

    holder: object = None
    others_wrote: bool = False
    waits: list[float] = field(default_factory=list)
    cleanup_ms: float = 0.0  # time cleanup held the lock: its progress


def simulate(policy: Policy, seed: int, writers: int, mean_gap: float, seconds: float) -> Lock:
    """Return the writers' waits (ms) and cleanup's progress over `seconds` under one policy."""
    rng = random.Random(seed)
    order = itertools.count()
    events: list[tuple[float, int, str, int]] = []
    lock = Lock()
    sizer = PauseSizer()
    batch_start = 0.0
    arrived: dict[int, tuple[float, int]] = {}

    def at(time: float, kind: str, who: int = -1) -> None:
        heapq.heappush(events, (time, next(order), kind, who))

    for writer in range(writers):
        at(rng.expovariate(1 / mean_gap), "arrive", writer)
    at(0.0, "batch")
    while events:
        now, _, kind, who = heapq.heappop(events)
        if now > seconds * 1000:
            break
        if kind == "batch":
            if lock.holder is None:
                lock.holder, batch_start = "cleanup", now
                at(now + rng.uniform(10, 30), "batch_end")
            else:  # cleanup's own BEGIN IMMEDIATE waits for the writer
                at(now + 1.0, "batch")
        elif kind == "batch_end":
            lock.holder = None
            lock.cleanup_ms += now - batch_start
            pause = policy(sizer, batch_start, now, lock.others_wrote)
            lock.others_wrote = False
            at(now + pause, "batch")
        elif kind == "arrive":
            arrived[who] = (now, 0)
            at(now, "attempt", who)
        elif kind == "attempt":
            first, tries = arrived[who]
            if lock.holder is None:
                lock.holder, lock.others_wrote = who, True
                at(now + rng.uniform(1, 8), "release", who)
            else:
                arrived[who] = (first, tries + 1)
                at(first + ATTEMPTS_MS[tries + 1], "attempt", who)
        elif kind == "release":
            lock.holder = None
            lock.waits.append(now - arrived.pop(who)[0])
            at(now + rng.expovariate(1 / mean_gap), "arrive", who)
    return lock


def main() -> int:
    """Print the writers' waits per load and policy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="simulated seconds per run")
    parser.add_argument("--seeds", type=int, default=12, help="runs per load and policy")
    args = parser.parse_args()
    for writers, gap in LOADS:
        print(f"{writers} writer(s), one write each every {gap:.0f} ms on average:")
        for name, policy in POLICIES.items():
            runs = [
                simulate(policy, seed, writers, gap, args.seconds) for seed in range(args.seeds)
            ]
            waits = sorted(wait for run in runs for wait in run.waits)
            median, p99 = waits[len(waits) // 2], waits[int(len(waits) * 0.99)]
            p999 = waits[int(len(waits) * 0.999)]
            progress = sum(run.cleanup_ms for run in runs) / (args.seeds * args.seconds * 1000)
            print(
                f"  {name:9s} {len(waits):6d} writes: median {median:5.1f} ms, "
                f"p99 {p99:6.1f}, p99.9 {p999:6.1f}, worst {waits[-1]:7.1f} ms; "
                f"cleanup holds the lock {progress:4.0%} of the time"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
