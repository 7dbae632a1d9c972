"""How cleanup sizes its batches and its pauses: arithmetic on the last batches' durations."""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate

import pytest

from secautod.store.sqlite.retention import (
    CLEANUP_BATCH_ROWS,
    CLEANUP_BATCH_SECONDS,
    CLEANUP_GROW_AFTER_BATCHES,
    CONTENDED_PAUSE_SECONDS,
    PAUSE_MARGIN_SECONDS,
    BatchSize,
    PauseSizer,
    pause_after,
)

SMALLEST, LARGEST = CLEANUP_BATCH_ROWS
QUICK = CLEANUP_BATCH_SECONDS / 4
SLOW = CLEANUP_BATCH_SECONDS * 1.5
ON_TARGET = CLEANUP_BATCH_SECONDS * 0.75


def sized(*elapsed: float) -> BatchSize:
    """Return the size after full batches that took `elapsed` seconds each."""
    size = BatchSize()
    for seconds in elapsed:
        size.record(seconds, size.rows)
    return size


def test_batches_start_at_the_smallest_size() -> None:
    """The first batch is the smallest: nothing is known yet about the machine."""
    assert BatchSize().rows == SMALLEST


def test_quick_batches_double_the_size_only_in_a_row() -> None:
    """Only a run of quick batches doubles the size; one on target restarts the count."""
    assert sized(*[QUICK] * (CLEANUP_GROW_AFTER_BATCHES - 1)).rows == SMALLEST
    assert sized(*[QUICK] * CLEANUP_GROW_AFTER_BATCHES).rows == SMALLEST * 2
    almost = [QUICK] * (CLEANUP_GROW_AFTER_BATCHES - 1)
    assert sized(*almost, ON_TARGET, *almost).rows == SMALLEST
    assert sized(*[QUICK] * (CLEANUP_GROW_AFTER_BATCHES * 2)).rows == SMALLEST * 4


def test_a_slow_batch_halves_the_size_at_once() -> None:
    """One batch over the target halves the next one and restarts the quick count."""
    grown = [QUICK] * (CLEANUP_GROW_AFTER_BATCHES * 2)
    assert sized(*grown, SLOW).rows == SMALLEST * 2
    almost = [QUICK] * (CLEANUP_GROW_AFTER_BATCHES - 1)
    assert sized(*grown, *almost, SLOW, QUICK).rows == SMALLEST * 2


def test_batches_on_target_keep_their_size() -> None:
    """A batch between half the target time and the target keeps the size."""
    grown = [QUICK] * CLEANUP_GROW_AFTER_BATCHES
    assert sized(*grown, *[ON_TARGET] * 10).rows == SMALLEST * 2


def test_batch_sizes_stay_within_bounds() -> None:
    """The size never leaves CLEANUP_BATCH_ROWS, however the batches went."""
    assert sized(*[SLOW] * 10).rows == SMALLEST
    assert sized(*[0.0] * (CLEANUP_GROW_AFTER_BATCHES * 20)).rows == LARGEST


def test_the_target_time_itself_keeps_the_size() -> None:
    """Exactly the target, or exactly half of it, is on target: no change, no streak."""
    grown = [QUICK] * CLEANUP_GROW_AFTER_BATCHES
    assert sized(*grown, CLEANUP_BATCH_SECONDS).rows == SMALLEST * 2
    boundary = [CLEANUP_BATCH_SECONDS / 2] * (CLEANUP_GROW_AFTER_BATCHES * 2)
    assert sized(*boundary).rows == SMALLEST


def test_a_short_batch_counts_only_when_slow() -> None:
    """A batch of fewer rows than the size neither grows the streak nor ends it; a slow one halves."""
    size = sized(*[QUICK] * (CLEANUP_GROW_AFTER_BATCHES - 1))
    size.record(QUICK, SMALLEST // 8)
    size.record(ON_TARGET, SMALLEST // 8)
    assert size.rows == SMALLEST
    size.record(QUICK, size.rows)
    assert size.rows == SMALLEST * 2
    size.record(SLOW, 1)
    assert size.rows == SMALLEST


# SQLite's sqliteDefaultBusyCallback (main.c): the sleeps between a waiting
# writer's attempts, in ms; the last one repeats until the busy timeout.
SQLITE_BUSY_SLEEPS_MS = (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100)
# When such a writer tries, in ms after its first attempt, for its first second.
WRITER_ATTEMPTS_MS = tuple(accumulate((0, *SQLITE_BUSY_SLEEPS_MS, *[100] * 8)))


def next_attempt(arrived: float, after: float) -> float:
    """Return when a writer whose first attempt was at `arrived` next tries after `after` (ms)."""
    return arrived + WRITER_ATTEMPTS_MS[bisect_right(WRITER_ATTEMPTS_MS, after - arrived)]


def ms(seconds: float) -> float:
    """Convert seconds to milliseconds."""
    return seconds * 1000


def test_the_pause_holds_a_retry_of_every_writer_kept_waiting_by_the_batch() -> None:
    """Whenever during a batch a writer began waiting, its next attempt falls inside the pause."""
    for held in [step / 2 for step in range(0, 2 * 450)]:
        pause = ms(pause_after(held / 1000) - PAUSE_MARGIN_SECONDS)
        for arrived in [held * step / 64 for step in range(65)]:
            assert next_attempt(arrived, held) - held <= pause + 1e-9, (held, arrived, pause)


def test_a_writer_that_lost_a_pause_to_another_still_gets_a_retry_in_the_next() -> None:
    """A writer kept waiting by one batch and beaten to the lock in its pause tries in the next pause."""
    for first in (5.0, 12.0, 20.0, 25.0, 40.0):
        for second in (5.0, 12.0, 20.0, 25.0, 40.0):
            for other_commit in (0.5, 5.0, 15.0):  # how long the other writer kept the lock
                sizer = PauseSizer()
                first_pause = ms(sizer.after(0.0, first / 1000, others_wrote=False))
                start = first + first_pause + other_commit
                end = start + second
                pause = ms(sizer.after(start / 1000, end / 1000, others_wrote=True))
                for arrived in [first * step / 16 for step in range(17)]:
                    assert (
                        next_attempt(arrived, end) - end <= pause - ms(PAUSE_MARGIN_SECONDS) + 1e-9
                    )


def test_pauses_are_sized_on_the_batch_alone_only_when_nobody_else_wrote() -> None:
    """Alone, a pause covers the batch; after another's commit, both batches and at least 25 ms."""
    sizer = PauseSizer()
    assert sizer.after(0.0, 0.010, others_wrote=False) == pause_after(0.010)
    assert sizer.after(0.030, 0.040, others_wrote=False) == pause_after(0.010)
    assert sizer.after(0.060, 0.070, others_wrote=True) == CONTENDED_PAUSE_SECONDS
    assert sizer.after(0.100, 0.150, others_wrote=True) == pause_after(0.090)
    assert PauseSizer().after(0.0, 0.010, others_wrote=True) == CONTENDED_PAUSE_SECONDS
    assert pause_after(0.010) < CONTENDED_PAUSE_SECONDS < pause_after(0.090)


def test_the_pause_is_as_short_as_the_retry_schedule_allows() -> None:
    """The pause is the widest retry interval a writer can be in, plus the margin: no more."""
    margin = PAUSE_MARGIN_SECONDS
    assert margin >= 0.002  # a woken writer needs a moment to take the lock
    assert pause_after(0.0) == pytest.approx(0.001 + margin)
    assert pause_after(0.010) == pytest.approx(0.010 + margin)  # tries at 8 and 18 ms
    assert pause_after(0.030) == pytest.approx(0.015 + margin)  # at 18 and 33 ms
    assert pause_after(0.045) == pytest.approx(0.020 + margin)  # at 33 and 53 ms
    assert pause_after(0.200) == pytest.approx(0.050 + margin)  # at 178 and 228 ms
    assert pause_after(1.0) == pytest.approx(0.100 + margin)  # every 100 ms from 228 ms on
    # A batch on target is followed by less than a batch's worth of pause.
    assert pause_after(CLEANUP_BATCH_SECONDS) < CLEANUP_BATCH_SECONDS
