"""Rows of the shared `jobs` table back as jobs, whoever wrote them.

`decode_job` turns a row into a `Job`, raising `UnreadableJobError` for a
value no reader could use (`json_text.encode_job` goes the other way).
"""

from __future__ import annotations

import sqlite3
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from secautod.errors import UnreadableJobError
from secautod.jobs import Job, JobStatus
from secautod.store.json_text import decode_json
from secautod.store.sqlite import queries
from secautod.timestamps import is_go_zero_time, parse_timestamp

_STATUSES = {status.value: status for status in JobStatus}
_OWN_TIMESTAMP_LENGTH = len("2026-01-21 10:00:00.000")


def decode_job(conn: sqlite3.Connection, row: tuple[Any, ...]) -> Job:
    """Turn a `JOB_COLUMNS` row into a `Job`, whoever wrote it.

    `conn` reads timestamps in the rare forms only SQLite's date functions know.
    """
    job_id, status, playbook, context, results, error, created, started, completed, updated = row
    if not isinstance(job_id, str) or not job_id:
        raise UnreadableJobError(f"a stored job has the id {job_id!r}, which is not usable")
    job_status = _STATUSES.get(status)
    if job_status is None:
        raise UnreadableJobError(
            f"job {job_id} has status {status!r}, which secautod does not know"
        )
    created_at = decode_time(conn, created, job_id, "created_at")
    if created_at is None:
        raise UnreadableJobError(f"job {job_id}: created_at is empty")
    # Every value is checked and UTC at millisecond precision here, so the
    # validating constructor (a third of a load's time) is skipped.
    return Job.from_store(
        id=job_id,
        status=job_status,
        playbook=decode_json(playbook, job_id, "playbook"),
        context=decode_json(context, job_id, "context"),
        results=None if results is None else decode_json(results, job_id, "results"),
        error=_stored_error_text(error, job_id),
        created_at=created_at,
        started_at=None if started is None else decode_time(conn, started, job_id, "started_at"),
        completed_at=None
        if completed is None
        else decode_time(conn, completed, job_id, "completed_at"),
        updated_at=None if updated is None else decode_time(conn, updated, job_id, "updated_at"),
    )


def decode_time(
    conn: sqlite3.Connection, value: object, job_id: str, column: str
) -> datetime | None:
    """Read a timestamp in any form SQLite's date functions accept."""
    if value is None:
        return None
    if type(value) is str:
        if len(value) == _OWN_TIMESTAMP_LENGTH and value[10] == " ":  # secautod's own form
            with suppress(ValueError):
                return datetime.fromisoformat(value).replace(tzinfo=UTC)
        parsed = parse_timestamp(value)
        if parsed is not None:
            return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)
        if is_go_zero_time(value):
            return None
    # Julian day numbers, time-only values and other rarities: let SQLite decide.
    (normalized,) = conn.execute(queries.NORMALIZE_TIMESTAMP, (value,)).fetchone()
    try:
        # SQLite reaches years Python cannot hold (a Julian day 0 is 4713 BC).
        return datetime.fromisoformat(normalized).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise UnreadableJobError(
            f"job {job_id}: {column} holds {value!r}, which is not a date secautod can read"
        ) from None


def _stored_error_text(value: object, job_id: str) -> str | None:
    """Read the `error` column: text, a number, or UTF-8 bytes bound as a BLOB."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    raise UnreadableJobError(f"job {job_id}: error holds {value!r}, which is not text")
