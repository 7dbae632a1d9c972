"""Import the old file-based job store (`data/jobs.json`).

The file is one JSON object mapping job id to job, with the table's fields
and RFC 3339 timestamps. It is streamed, one job at a time, so memory stays
flat however large the file is. Everything goes into one transaction: a
malformed file imports nothing, and the error says where (line and column,
or job id and field).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from secautod.database import JOBS_COLUMNS
from secautod.errors import ImportFormatError, InvalidJobError
from secautod.jobs import Job, JobStatus
from secautod.store import JobStore
from secautod.timestamps import is_go_zero_time, parse_timestamp

CHUNK_CHARS = 1 << 20
# A parse error this close to the end of the buffer may just be a value cut
# by the chunk boundary (`tr|ue`, `-|1`), so more text is read before judging.
_BOUNDARY_SLACK = 16
_DECODER = json.JSONDecoder()


@dataclass
class ImportReport:
    """What an import did: counts, and the jobs rejected with --skip-invalid."""

    imported: int = 0
    skipped: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)


def import_legacy_file(
    store: JobStore,
    path: Path,
    *,
    skip_invalid: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import every job of the legacy file at `path` in one transaction.

    Jobs already in the store are skipped, so a second run changes nothing.
    With `skip_invalid`, jobs whose fields are invalid are left out and
    listed in the report; syntax errors always abort the whole import.
    """
    report = ImportReport()
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise ImportFormatError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        total = path.stat().st_size
        reader = _ChunkReader(handle, path)

        def jobs() -> Iterator[Job]:
            for job_id, value in _iter_members(reader):
                try:
                    yield legacy_job(job_id, value)
                except InvalidJobError as exc:
                    if not skip_invalid:
                        raise ImportFormatError(f"{path}: {exc}; nothing was imported") from None
                    report.rejected.append((job_id, str(exc)))
                if on_progress is not None:
                    on_progress(reader.consumed, total)

        try:
            counts = store.import_jobs(jobs())
        except InvalidJobError as exc:  # raised by the store, e.g. an id given twice
            raise ImportFormatError(f"{path}: {exc}; nothing was imported") from None
    report.imported, report.skipped = counts.imported, counts.skipped
    return report


def legacy_job(job_id: str, value: object) -> Job:
    """Turn one legacy job object into a `Job`, naming the field of any problem."""
    if not job_id:
        raise InvalidJobError("a job has an empty id")
    if not isinstance(value, dict):
        raise InvalidJobError(f"job {job_id!r}: expected an object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(JOBS_COLUMNS))
    if unknown:
        raise InvalidJobError(f"job {job_id!r}: unknown field {unknown[0]!r}")
    if value.get("id", job_id) != job_id:
        raise InvalidJobError(f"job {job_id!r}: field 'id' says {value['id']!r}")
    status = value.get("status")
    if not isinstance(status, str):
        raise InvalidJobError(f"job {job_id!r}: field 'status' is missing or not text")
    try:
        job_status = JobStatus.parse(status)
    except InvalidJobError as exc:
        raise InvalidJobError(f"job {job_id!r}: field 'status': {exc}") from None
    error = value.get("error")
    if error is not None and not isinstance(error, str):
        raise InvalidJobError(f"job {job_id!r}: field 'error' must be text or null")
    created_at = _timestamp(value, "created_at", job_id)
    if created_at is None:
        raise InvalidJobError(f"job {job_id!r}: field 'created_at' is required")
    # Every field is checked above and times are aware UTC to the millisecond,
    # so the validating constructor need not check them again.
    return Job.from_store(
        id=job_id,
        status=job_status,
        playbook=value.get("playbook", {}),
        context=value.get("context", {}),
        results=value.get("results"),
        error=error or None,  # the old store wrote "" for "no error"
        created_at=created_at,
        started_at=_timestamp(value, "started_at", job_id),
        completed_at=_timestamp(value, "completed_at", job_id),
        updated_at=_timestamp(value, "updated_at", job_id),
    )


def _timestamp(value: dict[str, Any], name: str, job_id: str) -> Any:
    text = value.get(name)
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise InvalidJobError(f"job {job_id!r}: field {name!r} must be an RFC 3339 text")
    parsed = parse_timestamp(text)
    if parsed is None and not is_go_zero_time(text):
        raise InvalidJobError(f"job {job_id!r}: field {name!r}: {text!r} is not an RFC 3339 time")
    return None if parsed is None else parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


class _ChunkReader:
    """A window onto a text file that knows absolute line/column positions."""

    def __init__(self, handle: IO[str], path: Path) -> None:
        self.handle = handle
        self.path = path
        self.buffer = ""
        self.eof = False
        self.consumed = 0  # characters dropped from the front of the buffer
        self._lines_before = 0
        self._last_newline_before = -1  # absolute offset of the last dropped newline

    def fill(self) -> bool:
        """Read another chunk; False at end of file."""
        if self.eof:
            return False
        chunk = self.handle.read(CHUNK_CHARS)
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def drop(self, upto: int) -> int:
        """Forget the buffer up to `upto` once enough has piled up; return `upto`'s new index.

        Slicing copies the rest of the buffer, so doing it after every job would
        make reading quadratic in the chunk size.
        """
        if upto < CHUNK_CHARS // 4:
            return upto
        dropped = self.buffer[:upto]
        newlines = dropped.count("\n")
        if newlines:
            self._lines_before += newlines
            self._last_newline_before = self.consumed + dropped.rindex("\n")
        self.consumed += upto
        self.buffer = self.buffer[upto:]
        return 0

    def skip_space(self, position: int) -> int:
        """Return the first non-whitespace position at or after `position`."""
        while True:
            while position < len(self.buffer) and self.buffer[position] in " \t\r\n":
                position += 1
            if position < len(self.buffer) or not self.fill():
                return position

    def error(self, position: int, message: str) -> ImportFormatError:
        """Return an error naming the absolute line and column of `position`."""
        before = self.buffer[:position]
        newlines = before.count("\n")
        line = self._lines_before + newlines + 1
        if newlines:
            column = position - before.rindex("\n")
        else:
            column = self.consumed + position - self._last_newline_before
        return ImportFormatError(
            f"{self.path} line {line}, column {column}: {message}; nothing was imported"
        )

    def decode(self, position: int) -> tuple[Any, int]:
        """Decode the JSON value starting at `position`, reading more text as needed."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buffer, position)
            except json.JSONDecodeError as exc:
                near_end = exc.pos >= len(self.buffer) - _BOUNDARY_SLACK
                if (near_end or exc.msg.startswith("Unterminated string")) and self.fill():
                    continue
                raise self.error(exc.pos, exc.msg) from None
            # A number ending exactly at the buffer's end may continue in the next chunk.
            if end == len(self.buffer) and not isinstance(value, (dict, list, str)) and self.fill():
                continue
            return value, end


def _iter_members(reader: _ChunkReader) -> Iterator[tuple[str, Any]]:
    """Yield (key, value) of the file's top-level object, one member at a time."""
    position = reader.skip_space(0)
    if position >= len(reader.buffer):
        raise reader.error(position, "the file is empty; expected an object of jobs")
    if reader.buffer[position] != "{":
        raise reader.error(position, "expected an object mapping job ids to jobs")
    position = reader.skip_space(position + 1)
    if position < len(reader.buffer) and reader.buffer[position] == "}":
        _expect_end(reader, position + 1)
        return
    while True:
        if position >= len(reader.buffer) or reader.buffer[position] != '"':
            raise reader.error(position, "expected a job id in double quotes")
        key, position = reader.decode(position)
        position = reader.skip_space(position)
        if position >= len(reader.buffer) or reader.buffer[position] != ":":
            raise reader.error(position, "expected ':' after the job id")
        position = reader.skip_space(position + 1)
        if position >= len(reader.buffer):
            raise reader.error(position, f"job {key!r} has no value")
        value, position = reader.decode(position)
        yield key, value
        position = reader.skip_space(position)
        position = reader.drop(position)
        if position >= len(reader.buffer):
            raise reader.error(position, "the file ends inside the object (missing '}')")
        separator = reader.buffer[position]
        if separator == "}":
            _expect_end(reader, position + 1)
            return
        if separator != ",":
            raise reader.error(position, "expected ',' or '}' after a job")
        position = reader.skip_space(position + 1)


def _expect_end(reader: _ChunkReader, position: int) -> None:
    position = reader.skip_space(position)
    if position < len(reader.buffer):
        raise reader.error(position, "unexpected text after the top-level object")
