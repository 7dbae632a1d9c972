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


def print_json(value: Any, stream: TextIO | None = None, *, for_terminal: bool = False) -> None:
    """Write `value` as indented JSON (datetimes as ISO 8601 UTC).

    `for_terminal` also escapes what JSON leaves raw but a terminal obeys
    (DEL, C1 controls, bidirectional overrides): for JSON inside human output.
    """
    stream = stream or sys.stdout
    text = json.dumps(value, indent=2, ensure_ascii=False, default=_json_default)
    stream.write((printable(text, keep_lines=True) if for_terminal else text) + "\n")


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return isoformat_utc(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


# Characters that drive a terminal rather than show: C0 controls, DEL, C1
# controls (0x9b is a CSI on some terminals) and the bidirectional overrides
# that reorder what is shown. Job data carries attacker-influenced alert text.
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F]
_CONTROLS += [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {
    code: {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(
        chr(code), f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    )
    for code in _CONTROLS
}
_ESCAPES_KEEPING_LINES = {code: text for code, text in _ESCAPES.items() if code != ord("\n")}


def printable(text: str, *, keep_lines: bool = False) -> str:
    """Escape the characters of `text` that would drive a terminal (ESC, newline, ...).

    For human output of stored data; JSON output escapes them itself.
    `keep_lines` leaves newlines alone (text secautod laid out itself).
    """
    return text.translate(_ESCAPES_KEEPING_LINES if keep_lines else _ESCAPES)


def plural(count: int, noun: str) -> str:
    """Say `1 job`, `2 jobs`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render rows as left-aligned columns under upper-case headers.

    Cells are escaped (`printable`): one cell can never forge a row.
    """
    rows = [[printable(cell) for cell in row] for row in rows]
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
