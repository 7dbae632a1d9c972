"""Jobs in the table's text form: JSON for `playbook`, `context` and `results`.

The store writes compact UTF-8 JSON (no spaces, non-ASCII as is rather than escaped,
no NaN or Infinity, which other readers of the table reject). Other writers,
and jobs imported from a legacy file (whose text is kept as written), may use
other valid forms; reading accepts any JSON text.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from secautod.errors import InvalidJobError, UnreadableJobError
from secautod.jobs import Job, JobStatus, checked_error_text
from secautod.store.records import EncodedJob
from secautod.timestamps import format_optional, format_timestamp, require_aware

_DECODER = json.JSONDecoder()


def encode_json(value: Any, job_id: str, column: str) -> str:
    """Return `value` as the column's JSON text (callers keep NULL `results` as None)."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidJobError(f"job {job_id}: {column} cannot be stored as JSON ({exc})") from None


def decode_json(text: str | bytes, job_id: str, column: str) -> Any:
    """Decode a column's JSON text, naming the job and column if it is not JSON.

    Writers in other languages may bind JSON as bytes (Go's `json.Marshal`
    output), which SQLite keeps as a BLOB: that is read as UTF-8 text.
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return _DECODER.decode(text)  # json.loads minus its argument checks
    except (TypeError, ValueError) as exc:
        raise UnreadableJobError(f"job {job_id}: {column} is not valid JSON ({exc})") from None


def is_utf8(text: str) -> bool:
    """Tell whether `text` can be stored: a lone surrogate (from a JSON escape) cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_job(job: Job, updated_at: datetime) -> EncodedJob:
    """Return `job`'s column values in table order, stamped `updated_at`."""
    return (
        job.id,
        JobStatus.parse(job.status).value,
        encode_json(job.playbook, job.id, "playbook"),
        encode_json(job.context, job.id, "context"),
        None if job.results is None else encode_json(job.results, job.id, "results"),
        checked_error_text(job.error, job.id),
        format_timestamp(require_aware(job.created_at, "created_at")),
        format_optional(job.started_at),
        format_optional(job.completed_at),
        format_timestamp(updated_at),
    )
