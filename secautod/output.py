"""Command output: aligned tables, relative ages, bars, JSON and terminal progress.

Data goes to stdout; progress goes to stderr and only when it is a terminal.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

from secautod.timestamps import isoformat_utc


def print_json(value: Any, stream: TextIO | None = None) -> None:
    """Write `value` as indented JSON (datetimes as ISO 8601 UTC)."""
    stream = stream or sys.stdout
    json.dump(value, stream, indent=2, ensure_ascii=False, default=_json_default)
    stream.write("\n")


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return isoformat_utc(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render rows as left-aligned columns under upper-case headers."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *rows]
    ]
    return "\n".join(lines)


def relative_age(moment: datetime | None, now: datetime) -> str:
    """Say how long ago (or from now) `moment` is: '3h ago', 'in 5m', '-'."""
    if moment is None:
        return "-"
    delta = now - moment
    text = duration_text(abs(delta))
    if abs(delta) < timedelta(seconds=1):
        return "just now"
    return f"{text} ago" if delta >= timedelta(0) else f"in {text}"


def duration_text(delta: timedelta) -> str:
    """Shorten a duration to its largest unit: 45s, 12m, 3h, 2d, 5w, 3y."""
    seconds = delta.total_seconds()
    for unit, size in (("y", 365 * 86400), ("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit in "yw" else 1):
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def size_text(size: int) -> str:
    """Format a byte count: 512 B, 1.5 KiB, 3.2 MiB, 1.0 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def bar(count: int, largest: int, width: int = 30) -> str:
    """Return a bar proportional to count/largest (at least one block if count > 0)."""
    if largest <= 0 or count <= 0:
        return ""
    block = "█" if (sys.stdout.encoding or "").lower().startswith("utf") else "#"
    return block * max(1, round(width * count / largest))


def shorten(text: str, limit: int = 60) -> str:
    """Cut `text` to `limit` characters on one line, marking the cut."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class Progress:
    """A one-line progress indicator on stderr, shown only on a terminal."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.enabled = is_terminal(self.stream)
        self._last = 0.0

    def update(self, text: str) -> None:
        """Show `text` (at most ten times a second)."""
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.1:
            return
        self._last = now
        self.stream.write(f"\r\033[K{self.label}: {text}")
        self.stream.flush()

    def done(self) -> None:
        """Clear the progress line."""
        if self.enabled and self._last:
            self.stream.write("\r\033[K")
            self.stream.flush()


def is_terminal(stream: TextIO) -> bool:
    """Tell whether `stream` is a terminal (False for anything that cannot say)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
