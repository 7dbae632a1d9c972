"""Waiting longer after each failure: the one backoff rule of maintenance and webhooks."""

from __future__ import annotations

from datetime import timedelta


def doubling_delay(attempt: int, first: timedelta, cap: timedelta) -> timedelta:
    """Return the wait before retry number `attempt` (1-based): `first`, doubling, at most `cap`.

    Used for failed maintenance runs (capped at the task's interval) and webhook retries.
    """
    seconds = first.total_seconds() * 2.0 ** min(attempt - 1, 64)
    return cap if seconds >= cap.total_seconds() else timedelta(seconds=seconds)
