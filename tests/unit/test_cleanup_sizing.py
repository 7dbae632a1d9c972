"""How cleanup sizes its batches: pure arithmetic on the last batch's duration."""

from __future__ import annotations

from secautod.cleanup_batches import CLEANUP_BATCH_ROWS, CLEANUP_BATCH_SECONDS, next_batch_rows

SMALLEST, LARGEST = CLEANUP_BATCH_ROWS


def test_batches_between_half_and_full_target_keep_their_size() -> None:
    """A batch that took between half the target time and the target keeps the size."""
    assert next_batch_rows(1000, CLEANUP_BATCH_SECONDS * 0.75) == 1000


def test_quick_batches_double_and_slow_ones_halve() -> None:
    """Under half the target the next batch doubles; over the target it halves."""
    assert next_batch_rows(1000, CLEANUP_BATCH_SECONDS / 4) == 2000
    assert next_batch_rows(1000, CLEANUP_BATCH_SECONDS * 1.5) == 500


def test_batch_sizes_stay_within_bounds() -> None:
    """The size never leaves CLEANUP_BATCH_ROWS, however the batches went."""
    assert next_batch_rows(SMALLEST, CLEANUP_BATCH_SECONDS * 10) == SMALLEST
    assert next_batch_rows(LARGEST, 0.0) == LARGEST
