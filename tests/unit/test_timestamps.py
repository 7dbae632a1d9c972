from datetime import UTC, datetime, timedelta, timezone

import pytest

from secautod.errors import InvalidJobError
from secautod.timestamps import (
    format_timestamp,
    is_go_zero_time,
    isoformat_utc,
    parse_timestamp,
    require_aware,
)


def test_format_is_sqlite_text_form_in_utc() -> None:
    """Timestamps are written as UTC 'YYYY-MM-DD HH:MM:SS.SSS', whatever the input zone."""
    local = datetime(2026, 1, 21, 3, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-7)))
    assert format_timestamp(local) == "2026-01-21 10:00:00.123"


def test_format_refuses_naive_datetimes() -> None:
    """A naive datetime is an error, never silently taken as local or UTC time."""
    with pytest.raises(InvalidJobError, match="timezone-aware"):
        format_timestamp(datetime(2026, 1, 21, 10, 0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-21 10:00:00.123", datetime(2026, 1, 21, 10, 0, 0, 123000, tzinfo=UTC)),
        ("2026-01-21T10:00:00Z", datetime(2026, 1, 21, 10, 0, tzinfo=UTC)),
        (
            "2026-01-21 10:00:00.123456789-07:00",
            datetime(2026, 1, 21, 17, 0, 0, 123456, tzinfo=UTC),
        ),
        ("2026-01-21T12:30:00+02:00", datetime(2026, 1, 21, 10, 30, tzinfo=UTC)),
        ("2026-01-21 10:00", datetime(2026, 1, 21, 10, 0, tzinfo=UTC)),
        ("2026-01-21", datetime(2026, 1, 21, tzinfo=UTC)),
    ],
)
def test_parse_reads_iso_forms_as_aware_utc(text: str, expected: datetime) -> None:
    """ISO 8601 / RFC 3339 forms other writers use parse to the same UTC instant."""
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.tzinfo is UTC


def test_parse_returns_none_for_non_iso_and_go_zero_time() -> None:
    """Unparseable text gives None (the store then asks SQLite); Go's zero time means unset."""
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp("0001-01-01T00:00:00Z") is None
    assert is_go_zero_time("0001-01-01T00:00:00Z")
    assert not is_go_zero_time("2026-01-01T00:00:00Z")


def test_isoformat_utc_uses_z_suffix() -> None:
    """JSON output uses ISO 8601 UTC with a Z and millisecond precision."""
    value = datetime(2026, 1, 21, 10, 0, 0, 5000, tzinfo=UTC)
    assert isoformat_utc(value) == "2026-01-21T10:00:00.005Z"


def test_require_aware_converts_to_utc() -> None:
    """Aware datetimes in any zone come back in UTC."""
    value = datetime(2026, 1, 21, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert require_aware(value, "x") == datetime(2026, 1, 21, 10, 0, tzinfo=UTC)
    assert require_aware(value, "x").tzinfo is UTC
