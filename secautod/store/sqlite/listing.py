"""Reading the shared `jobs` table row by row, whatever another program stored.

`jobs list` and `jobs show` must show every readable row even when one row
holds what secautod cannot read (a BLOB id, text that is not UTF-8 or not
JSON, a date no reader knows): that row becomes an `UnreadableRow` naming
its rowid, and the others are listed as usual.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any

from secautod.errors import UnreadableJobError
from secautod.jobs import Job
from secautod.store.records import EncodedJob, JobSummary, UnreadableRow
from secautod.store.sqlite.rows import decode_job, decode_time
from secautod.timestamps import format_timestamp

_TEXT = b"text"


def fetch_raw(
    conn: sqlite3.Connection, query: str, params: Mapping[str, object] | Sequence[object]
) -> list[tuple[Any, ...]]:
    """Run `query` with TEXT values fetched as bytes.

    The driver fails the whole query on one TEXT value that is not UTF-8
    (Go strings may hold any bytes); as bytes, each row is judged on its own.
    """
    previous = conn.text_factory
    conn.text_factory = bytes
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.text_factory = previous


def job_entry(conn: sqlite3.Connection, raw: tuple[Any, ...]) -> Job | UnreadableRow:
    """Turn a `JOB_ENTRY_COLUMNS` row fetched by `fetch_raw` into a `Job` or an `UnreadableRow`."""
    rowid, id_type, raw_id, raw_status, playbook, context, results, error, *times = raw
    job_id = _lenient_text(raw_id) if id_type == _TEXT else None
    status = _lenient_text(raw_status)
    try:
        usable_id = _row_id(rowid, id_type, raw_id)
        texts = [
            _strict_text(value, usable_id, name) for value, name in zip(times, _TIMES, strict=True)
        ]
        row = (
            usable_id,
            _strict_text(raw_status, usable_id, "status"),
            playbook,
            context,
            results,
            error,
            *texts,
        )
        return decode_job(conn, row)
    except UnreadableJobError as exc:
        return UnreadableRow(rowid, job_id, status, str(exc))


def job_summary(conn: sqlite3.Connection, raw: tuple[Any, ...]) -> JobSummary | UnreadableRow:
    """Turn a `JOB_SUMMARY_COLUMNS` row fetched by `fetch_raw` into a `JobSummary`."""
    rowid, id_type, raw_id, raw_status, created, updated, playbook_name, error = raw
    job_id = _lenient_text(raw_id) if id_type == _TEXT else None
    status = _lenient_text(raw_status)
    try:
        usable_id = _row_id(rowid, id_type, raw_id)
        if status is None:
            raise UnreadableJobError(f"job {usable_id}: status {raw_status!r} is not text")
        created_at = decode_time(
            conn, _strict_text(created, usable_id, "created_at"), usable_id, "created_at"
        )
        if created_at is None:
            raise UnreadableJobError(f"job {usable_id}: created_at is empty")
        updated_text = _strict_text(updated, usable_id, "updated_at")
        return JobSummary(
            id=usable_id,
            status=status,
            created_at=created_at,
            updated_at=decode_time(conn, updated_text, usable_id, "updated_at"),
            playbook_name=_lenient_text(playbook_name),
            error=_lenient_text(error),
        )
    except UnreadableJobError as exc:
        return UnreadableRow(rowid, job_id, status, str(exc))


_TIMES = ("created_at", "started_at", "completed_at", "updated_at")
_OWN_TIMESTAMP_LENGTH = len("2026-01-21 10:00:00.000")


def export_entry(conn: sqlite3.Connection, raw: tuple[Any, ...]) -> EncodedJob | UnreadableRow:
    """Turn a `JOB_ENTRY_COLUMNS` row fetched by `fetch_raw` into its text form, for a copy.

    Values are kept as stored wherever another database can hold them: any
    status text (other writers' too), JSON text unparsed (a row unreadable
    here stays unreadable there, not lost). Only what cannot be carried over
    makes an `UnreadableRow`: an id that is not text, bytes that are not
    UTF-8, a NUL character, a missing value, a date no reader knows.
    Timestamps come out in secautod's UTC form; a missing `updated_at` stays None.
    """
    rowid, id_type, raw_id, raw_status, playbook, context, results, error, *times = raw
    job_id = _lenient_text(raw_id) if id_type == _TEXT else None
    status = _lenient_text(raw_status)
    try:
        usable_id = _row_id(rowid, id_type, raw_id)
        created, started, completed, updated = (
            _export_time(conn, value, usable_id, name)
            for value, name in zip(times, _TIMES, strict=True)
        )
        if created is None:
            raise UnreadableJobError(f"job {usable_id}: created_at is empty")
        return (
            _export_text(usable_id, usable_id, "id"),
            _export_text(raw_status, usable_id, "status"),
            _export_text(playbook, usable_id, "playbook"),
            _export_text(context, usable_id, "context"),
            None if results is None else _export_text(results, usable_id, "results"),
            None if error is None else _export_text(error, usable_id, "error"),
            created,
            started,
            completed,
            updated,
        )
    except UnreadableJobError as exc:
        return UnreadableRow(rowid, job_id, status, str(exc))


def _export_text(value: object, job_id: str, column: str) -> str:
    """Return a stored value as text another database accepts (no NUL), or raise."""
    text = _strict_text(value, job_id, column)
    if isinstance(text, int | float) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        raise UnreadableJobError(f"job {job_id}: {column} holds {_preview(value)}, not text")
    if "\x00" in text:
        raise UnreadableJobError(f"job {job_id}: {column} holds a NUL character")
    return text


def _export_time(conn: sqlite3.Connection, value: object, job_id: str, column: str) -> str | None:
    """Return a stored timestamp in secautod's UTC form (None when empty), or raise."""
    text = _strict_text(value, job_id, column)
    if type(text) is str and len(text) == _OWN_TIMESTAMP_LENGTH and text[10] == " ":
        with suppress(ValueError):  # secautod's own form, if it is a real date
            datetime.fromisoformat(text)
            return text
    moment = decode_time(conn, text, job_id, column)
    return None if moment is None else format_timestamp(moment)


def _row_id(rowid: int, id_type: bytes, raw_id: object) -> str:
    """Return the row's id, or raise `UnreadableJobError` if no text id names it."""
    if id_type != _TEXT:
        kind = id_type.decode("ascii", "replace")
        raise UnreadableJobError(
            f"rowid {rowid}: the id is a {kind} value ({_preview(raw_id)}), not text"
        )
    job_id = _strict_or_none(raw_id)
    if not job_id:
        raise UnreadableJobError(
            f"rowid {rowid}: the id {_preview(raw_id)} is empty or not UTF-8 text"
        )
    return job_id


def _strict_text(value: object, job_id: str, column: str) -> object:
    """Return fetched bytes as text, raising `UnreadableJobError` if they are not UTF-8."""
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableJobError(
            f"job {job_id}: {column} holds {_preview(value)}, which is not UTF-8 text"
        ) from None


def _strict_or_none(value: object) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None if value is None else str(value)


def _lenient_text(value: object) -> str | None:
    """Return a value as text for display, replacing bytes that are not UTF-8."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _preview(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
