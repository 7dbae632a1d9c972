"""How cleanup sizes its batches: arithmetic on the last batches' durations."""

from __future__ import annotations

from secautod.cleanup_batches import (
    CLEANUP_BATCH_ROWS,
    CLEANUP_BATCH_SECONDS,
    CLEANUP_GROW_AFTER_BATCHES,
    BatchSize,
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
