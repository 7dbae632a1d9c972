"""Deleting expired jobs in short batches that leave room for other writers.

The engine writes the same file while cleanup runs, so cleanup never holds
the write lock for long: expired rows are found with plain reads (no lock),
then deleted a few hundred at a time, each batch followed by a pause in which
a waiting writer gets in and the WAL is checkpointed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from itertools import pairwise

from secautod.errors import CleanupAborted, StopCheck
from secautod.store.sqlite import queries
from secautod.store.sqlite.connection import ConnectionPool

# Expired rows are looked for this many rowids at a time, then deleted in
# batches of 12-25 ms, starting small (`BatchSize`). A writer that has waited
# since a batch began retries 33 ms in, or 53 or 78 ms in when the disk
# stretched the batch's commit; 40 ms batches put a writer's worst wait past
# 100 ms, and 33 ms ones up to 87 ms (benchmarks/README.md).
CLEANUP_SCAN_ROWS = 8192
CLEANUP_BATCH_SECONDS = 0.025
CLEANUP_BATCH_ROWS = (256, CLEANUP_SCAN_ROWS)
# The WAL frames a deleted row costs vary 2-5x from batch to batch (how
# many index pages its neighbours share), so a batch doubles only after
# this many quick ones in a row: after one, twice the rows ran 60-78 ms.
CLEANUP_GROW_AFTER_BATCHES = 3
# When SQLite's default busy handler (`sqlite3_busy_timeout`, as Python's
# sqlite3 and Go's mattn/go-sqlite3 set it; SQLite built with usleep, as on
# Linux) lets a waiting writer try, in ms after its first attempt (0); then
# every 100 ms until its timeout.
BUSY_HANDLER_ATTEMPTS_MS = (0, 1, 3, 8, 18, 33, 53, 78, 103, 128, 178, 228)
BUSY_HANDLER_LATER_INTERVAL_MS = 100
# While other connections write, no pause is shorter than this: it holds a
# retry of any writer that has waited less than 103 ms, however many writers
# contend for the lock in it (cleanup's fixed pause before it was sized).
CONTENDED_PAUSE_SECONDS = 0.025
# Beyond the retry itself: the writer's wake-up (a sleep overshoots by up to a
# few ms on a busy 2-core machine) and its taking the lock.
PAUSE_MARGIN_SECONDS = 0.004
# WAL frames a reader's snapshot (a backup's copy) may keep from being
# checkpointed before cleanup waits for it: folding a bigger backlog at once
# means one long fsync that every other commit on the disk waits behind.
CLEANUP_MAX_WAL_BACKLOG_FRAMES = 512
CLEANUP_MAX_BACKLOG_WAIT_SECONDS = 300.0
BACKLOG_POLL_SECONDS = 0.05
ACTION = "cleaning up old jobs"


def delete_expired_jobs(
    pool: ConnectionPool,
    cutoff: str,
    *,
    should_stop: StopCheck | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Delete the finished jobs that aged past `cutoff` (a stored timestamp); return how many.

    If `should_stop` returns True between two batches, `CleanupAborted` is
    raised and what was deleted so far stays deleted.
    """
    with pool.querying(ACTION) as conn:
        (last_rowid,) = conn.execute(queries.MAX_JOB_ROWID).fetchone()
    deleted = scanned_to = 0
    expired: list[int] = []
    batch = BatchSize()
    pauses = PauseSizer()
    seen_version = None
    backlog_wait_ends = time.monotonic() + CLEANUP_MAX_BACKLOG_WAIT_SECONDS
    with pool.without_automatic_checkpoints(ACTION) as conn:
        while expired or scanned_to < last_rowid:
            if should_stop is not None and should_stop():
                raise CleanupAborted(deleted)
            if not expired:
                high = min(scanned_to + CLEANUP_SCAN_ROWS, last_rowid)
                expired = _expired_rowids(pool, scanned_to, high, cutoff)
                scanned_to = high
                continue
            chunk, expired = expired[: batch.rows], expired[batch.rows :]
            started = time.monotonic()
            with pool.writing(ACTION):
                (version,) = conn.execute(queries.DATA_VERSION).fetchone()
                # The predicate again: another writer may have changed a row since.
                params = {"rowids": json.dumps(chunk), "cutoff": cutoff}
                deleted += conn.execute(queries.DELETE_EXPIRED_ROWIDS, params).rowcount
            ended = time.monotonic()
            batch.record(ended - started, len(chunk))
            if on_progress is not None:
                on_progress(deleted)
            others_wrote = seen_version is not None and version != seen_version
            seen_version = version
            pause = pauses.after(started, ended, others_wrote=others_wrote)
            _pause_between_batches(pool, pause, backlog_wait_ends, should_stop)
    return deleted


class BatchSize:
    """The rows of the next delete batch, adapted to how long the last ones took.

    Starts at the smallest size; halves after one batch over
    `CLEANUP_BATCH_SECONDS`; doubles after `CLEANUP_GROW_AFTER_BATCHES` full
    batches in a row under half of it. A short batch (the last rows of a scan
    window) says nothing about a full one unless it was slow. Stays within
    `CLEANUP_BATCH_ROWS`.
    """

    def __init__(self) -> None:
        self.rows = CLEANUP_BATCH_ROWS[0]
        self._quick_in_a_row = 0

    def record(self, elapsed: float, rows: int) -> None:
        """Take the seconds the last batch, of `rows` rows, held the write lock."""
        smallest, largest = CLEANUP_BATCH_ROWS
        if elapsed > CLEANUP_BATCH_SECONDS:
            self.rows = max(smallest, self.rows // 2)
            self._quick_in_a_row = 0
        elif rows < self.rows:
            return
        elif elapsed < CLEANUP_BATCH_SECONDS / 2:
            self._quick_in_a_row += 1
            if self._quick_in_a_row >= CLEANUP_GROW_AFTER_BATCHES:
                self.rows = min(largest, self.rows * 2)
                self._quick_in_a_row = 0
        else:
            self._quick_in_a_row = 0


def _expired_rowids(pool: ConnectionPool, low: int, high: int, cutoff: str) -> list[int]:
    """Return the rowids in (low, high] that cleanup deletes, with a plain read.

    A read takes no lock, so stretches with nothing to delete cost no pause.
    """
    window = {"low": low, "high": high, "cutoff": cutoff}
    with pool.querying(ACTION) as conn:
        return [row[0] for row in conn.execute(queries.EXPIRED_IN_ROWID_RANGE, window)]


class PauseSizer:
    """The pause after each batch, long enough for every writer that may still wait.

    With nobody else writing, a pause only has to hold a retry of a writer
    that arrives during the batch: it is sized on the batch alone. Once
    another connection has committed between two batches, several writers
    may be contending: one that lost the last pause to another may have
    waited since the previous batch began, and SQLite's retries space out
    as a wait grows, so the pause covers that longer wait and is never
    shorter than `CONTENDED_PAUSE_SECONDS` (benchmarks/model_pauses.py).
    """

    def __init__(self) -> None:
        self._previous_start: float | None = None

    def after(self, started: float, ended: float, *, others_wrote: bool) -> float:
        """Return the pause after a batch that held the lock from `started` to `ended`.

        `others_wrote` says whether another connection committed since the
        previous batch ended (monotonic seconds throughout).
        """
        previous_start, self._previous_start = self._previous_start, started
        if not others_wrote:
            return pause_after(ended - started)
        since = started if previous_start is None else previous_start
        return max(pause_after(ended - since), CONTENDED_PAUSE_SECONDS)


def pause_after(waited: float) -> float:
    """Return how long to leave the write lock free for writers waiting up to `waited` seconds.

    A writer that began waiting at most `waited` ago retries within the
    widest interval of the busy handler's schedule up to then, so a pause that
    long (plus a margin) always holds one of its retries: 10 ms after 8 up to
    18 ms, 15 ms after 18 up to 33 ms, 20 ms after 33 up to 53 ms (each plus
    the margin). Whether the lock is free at that retry is another matter:
    see `PauseSizer`.
    """
    waited_ms = waited * 1000
    attempts = BUSY_HANDLER_ATTEMPTS_MS
    if waited_ms >= attempts[-1]:
        widest = BUSY_HANDLER_LATER_INTERVAL_MS
    else:
        widest = max(after - before for before, after in pairwise(attempts) if before <= waited_ms)
    return widest / 1000 + PAUSE_MARGIN_SECONDS


def _pause_between_batches(
    pool: ConnectionPool, pause: float, backlog_wait_ends: float, should_stop: StopCheck | None
) -> None:
    """Leave the write lock free for `pause` seconds, so a waiting writer gets it.

    The WAL is checkpointed inside the pause (never blocking) rather than in
    someone's commit. While a reader's snapshot keeps more than
    `CLEANUP_MAX_WAL_BACKLOG_FRAMES` from being checkpointed, the pause lasts
    until it ends, `backlog_wait_ends` passes or a stop is requested.
    """
    pause_started = time.monotonic()
    while (
        pool.checkpoint(ACTION) > CLEANUP_MAX_WAL_BACKLOG_FRAMES
        and time.monotonic() < backlog_wait_ends
        and not (should_stop is not None and should_stop())
    ):
        time.sleep(BACKLOG_POLL_SECONDS)
    rest = pause - (time.monotonic() - pause_started)
    if rest > 0:
        time.sleep(rest)
