"""UTC timestamps in the text form the shared `jobs` table uses.

secautod writes `YYYY-MM-DD HH:MM:SS.SSS` in UTC, SQLite's own
`%Y-%m-%d %H:%M:%f`, so that `datetime('now', '-30 days')` comparisons work
from the `sqlite3` shell. Other writers use other forms; `parse_timestamp`
reads the ISO 8601 family in Python; the store asks SQLite itself about
anything else (Julian day numbers, time-only values).
"""

from __future__ import annotations

from datetime import UTC, datetime

from secautod.errors import InvalidJobError

# Go marshals an unset time.Time as its zero value; it means "no time".
_GO_ZERO_YEAR = 1


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def require_aware(value: datetime, name: str) -> datetime:
    """Return `value` in UTC, refusing a naive datetime (its zone is a guess)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidJobError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """Format an aware datetime as UTC `YYYY-MM-DD HH:MM:SS.SSS`."""
    utc = require_aware(value, "timestamp")
    return f"{utc:%Y-%m-%d %H:%M:%S}.{utc.microsecond // 1000:03d}"


def isoformat_utc(value: datetime) -> str:
    """Format an aware datetime as ISO 8601 in UTC with a `Z`, to the millisecond."""
    utc = require_aware(value, "timestamp")
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_optional(value: datetime | None) -> str | None:
    """Format `value` like `format_timestamp`, passing None through."""
    return None if value is None else format_timestamp(value)


def parse_timestamp(text: str) -> datetime | None:
    """Parse an ISO 8601 / RFC 3339 timestamp into aware UTC, or None if not one.

    A value without an offset is UTC, as in SQLite. Go's zero time
    (`0001-01-01T00:00:00Z`) means "unset" and reads as None too, so callers
    must tell "unset" from "unreadable" with `is_go_zero_time` if it matters.
    A time that has no UTC equivalent within years 1-9999 is not one either.
    """
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.year == _GO_ZERO_YEAR:
        return None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


def is_go_zero_time(text: str) -> bool:
    """Tell whether `text` is Go's zero time, which stands for "not set"."""
    return text.strip().startswith("0001-01-01")


def to_utc_or_none(value: datetime | None, name: str) -> datetime | None:
    """Validate an optional datetime argument and convert it to UTC."""
    return None if value is None else require_aware(value, name)
