"""Rows of the `jobs` table back as jobs; PostgreSQL's times back as aware UTC.

The table's types already guarantee timestamps; what is checked here is what
another writer may still get wrong: an unknown status, text that is not JSON.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from secautod.errors import UnreadableJobError
from secautod.jobs import Job, JobStatus
from secautod.store.json_text import decode_json
from secautod.store.records import JobSummary, UnreadableRow

_STATUSES = {status.value: status for status in JobStatus}


def utc_or_none(value: datetime | None) -> datetime | None:
    """Return a `timestamptz` value as aware UTC cut to the millisecond (the table's precision)."""
    if value is None:
        return None
    utc = value.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def stored_time(value: datetime) -> datetime:
    """Return an aware datetime as it is stored: UTC, to the millisecond."""
    utc = utc_or_none(value)
    assert utc is not None  # noqa: S101 (a datetime in, a datetime out)
    return utc


def decode_job(row: tuple[Any, ...]) -> Job:
    """Turn a `JOB_COLUMNS` row into a `Job`, whoever wrote it."""
    job_id, status, playbook, context, results, error, created, started, completed, updated = row
    job_status = _STATUSES.get(status)
    if job_status is None:
        raise UnreadableJobError(
            f"job {job_id} has status {status!r}, which secautod does not know"
        )
    created_at = utc_or_none(created)
    if created_at is None:
        raise UnreadableJobError(f"job {job_id}: created_at is empty")
    return Job.from_store(
        id=job_id,
        status=job_status,
        playbook=decode_json(playbook, job_id, "playbook"),
        context=decode_json(context, job_id, "context"),
        results=None if results is None else decode_json(results, job_id, "results"),
        error=error,
        created_at=created_at,
        started_at=utc_or_none(started),
        completed_at=utc_or_none(completed),
        updated_at=utc_or_none(updated),
    )


def job_entry(row: tuple[Any, ...]) -> Job | UnreadableRow:
    """Turn a `JOB_ENTRY_COLUMNS` row into a `Job`, or an `UnreadableRow` naming what is wrong."""
    rowid, *columns = row
    try:
        return decode_job(tuple(columns))
    except UnreadableJobError as exc:
        return UnreadableRow(int(rowid), columns[0], columns[1], str(exc))


def job_summary(row: tuple[Any, ...]) -> JobSummary | UnreadableRow:
    """Turn a `JOB_SUMMARY_COLUMNS` row into what a listing prints."""
    rowid, job_id, status, created, updated, playbook, error = row
    created_at = utc_or_none(created)
    if created_at is None:
        return UnreadableRow(int(rowid), job_id, status, f"job {job_id}: created_at is empty")
    return JobSummary(
        id=job_id,
        status=status,
        created_at=created_at,
        updated_at=utc_or_none(updated),
        playbook_name=_playbook_name(playbook),
        error=error,
    )


def _playbook_name(text: str) -> str | None:
    """Return the playbook's `name` (or `id`, `title`), None if it has none or is not JSON."""
    try:
        playbook = json.loads(text)
    except (TypeError, ValueError):
        return None
    if isinstance(playbook, dict):
        for key in ("name", "id", "title"):
            if isinstance(playbook.get(key), str):
                return str(playbook[key])
    return None
