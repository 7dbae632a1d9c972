"""Import the old file-based job store (`data/jobs.json`).

Everything goes into one transaction: a malformed file imports nothing, and
the error says where: line and column for a syntax error (see
`legacy_parse`), job id and field for an invalid value. The file is parsed
in a child process while this one checks the jobs and inserts them, so the
two halves of the work (Python's JSON decoding; SQLite's inserts), each
about as long as the other, overlap on two cores instead of adding up.
"""

from __future__ import annotations

import gc
import multiprocessing
import re
import signal
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secautod.errors import ImportFormatError, ImportParserFailed, InvalidJobError, NotFoundError
from secautod.jobs import JOB_COLUMNS, JobStatus
from secautod.legacy_parse import ParsedBatch, parse_legacy_file
from secautod.store import JobStore
from secautod.store.json_text import encode_json, is_utf8
from secautod.store.records import EncodedJob
from secautod.timestamps import format_timestamp, is_go_zero_time, parse_timestamp

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

# How long a parser that was told to stop may take before it is killed.
_PARSER_STOP_SECONDS = 5.0
_KNOWN_FIELDS = frozenset(JOB_COLUMNS)
_STATUS_VALUES = frozenset(status.value for status in JobStatus)
# `2026-01-21T10:00:00.123Z`, the usual legacy form, converts by slicing.
_MILLISECOND_ZULU = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", re.ASCII)


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
        total = path.stat().st_size
    except FileNotFoundError:
        raise NotFoundError(f"no file to import at {path}") from None
    except OSError as exc:
        raise ImportFormatError(f"cannot read {path}: {exc.strerror}") from None

    def rows(batches: Iterator[ParsedBatch]) -> Iterator[list[EncodedJob]]:
        for batch in batches:
            encoded = []
            for job_id, value, texts in batch.jobs:
                try:
                    encoded.append(legacy_row(job_id, value, texts))
                except InvalidJobError as exc:
                    if not skip_invalid:
                        raise ImportFormatError(f"{path}: {exc}; nothing was imported") from None
                    report.rejected.append((job_id, str(exc)))
            yield encoded
            if on_progress is not None:
                on_progress(batch.consumed, total)

    with _ParserProcess(path) as batches:
        try:
            counts = store.import_encoded_jobs(rows(batches))
        except InvalidJobError as exc:  # raised by the store, e.g. an id given twice
            raise ImportFormatError(f"{path}: {exc}; nothing was imported") from None
    report.imported, report.skipped = counts.imported, counts.skipped
    return report


def legacy_row(job_id: str, value: object, texts: dict[str, str]) -> EncodedJob:
    """Turn one legacy job object into table values, naming the field of any problem.

    `texts` holds the JSON text of payload members as written in the file,
    stored as is; other payload members are encoded from `value`.
    """
    if not job_id:
        raise InvalidJobError("a job has an empty id")
    if not isinstance(value, dict):
        raise InvalidJobError(f"job {job_id!r}: expected an object, got {type(value).__name__}")
    if not value.keys() <= _KNOWN_FIELDS:
        unknown = sorted(value.keys() - _KNOWN_FIELDS)
        raise InvalidJobError(f"job {job_id!r}: unknown field {unknown[0]!r}")
    if value.get("id", job_id) != job_id:
        raise InvalidJobError(f"job {job_id!r}: field 'id' says {value['id']!r}")
    status = _status(value.get("status"), job_id)
    error = value.get("error")
    if error is not None and not isinstance(error, str):
        raise InvalidJobError(f"job {job_id!r}: field 'error' must be text or null")
    created_at = _timestamp(value, "created_at", job_id)
    if created_at is None:
        raise InvalidJobError(f"job {job_id!r}: field 'created_at' is required")
    return (
        job_id,
        status,
        _payload(value, texts, "playbook", job_id),
        _payload(value, texts, "context", job_id),
        _results(value, texts, job_id),
        error or None,  # the old store wrote "" for "no error"
        created_at,
        _timestamp(value, "started_at", job_id),
        _timestamp(value, "completed_at", job_id),
        _timestamp(value, "updated_at", job_id),
    )


def _status(status: object, job_id: str) -> str:
    if isinstance(status, str) and status in _STATUS_VALUES:
        return status
    if not isinstance(status, str):
        raise InvalidJobError(f"job {job_id!r}: field 'status' is missing or not text")
    try:
        return JobStatus.parse(status).value
    except InvalidJobError as exc:
        raise InvalidJobError(f"job {job_id!r}: field 'status': {exc}") from None


def _payload(value: dict[str, Any], texts: dict[str, str], name: str, job_id: str) -> str:
    """Return the JSON text to store for `playbook` or `context` (`{}` if absent)."""
    text = texts.get(name)
    if text is not None:
        return text
    if name not in value:
        return "{}"
    return _encoded(value[name], name, job_id)


def _results(value: dict[str, Any], texts: dict[str, str], job_id: str) -> str | None:
    """Return the JSON text to store for `results` (NULL if absent or null)."""
    text = texts.get("results")
    if text is not None:
        return None if text == "null" else text
    member = value.get("results")
    return None if member is None else _encoded(member, "results", job_id)


def _encoded(member: object, name: str, job_id: str) -> str:
    """Encode a payload member that the parser could not keep as written."""
    text = encode_json(member, job_id, name)
    if not is_utf8(text):
        raise InvalidJobError(f"job {job_id!r}: field {name!r} holds an unpaired surrogate")
    return text


def _timestamp(value: dict[str, Any], name: str, job_id: str) -> str | None:
    """Return the member `name` as secautod's UTC timestamp text, or None if unset."""
    text = value.get(name)
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise InvalidJobError(f"job {job_id!r}: field {name!r} must be an RFC 3339 text")
    if _MILLISECOND_ZULU.fullmatch(text):
        try:
            moment = datetime.fromisoformat(text)  # rejects month 13 and the like
        except ValueError:
            pass
        else:
            if moment.year > 1:  # year 1 is Go's zero time: unset
                return f"{text[:10]} {text[11:23]}"
    parsed = parse_timestamp(text)
    if parsed is None and not is_go_zero_time(text):
        raise InvalidJobError(f"job {job_id!r}: field {name!r}: {text!r} is not an RFC 3339 time")
    return None if parsed is None else format_timestamp(parsed)


class _ParserProcess:
    """Run `parse_legacy_file` in a forked child; iterate over its batches here.

    The child sends each batch (pickled, through a pipe whose small buffer
    keeps it at most a batch or two ahead) and then one closing message: done,
    an `ImportFormatError`'s text, or a traceback. Leaving the block early
    (an error here, Ctrl-C) closes the pipe, so the child's next send fails
    and it ends; one that does not end within `_PARSER_STOP_SECONDS` is killed.
    """

    def __init__(self, path: Path) -> None:
        context = multiprocessing.get_context("fork")
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_parse_and_send,
            args=(path, sender, self._receiver),
            name="secautod-import-parser",
            daemon=True,
        )
        self._process.start()
        sender.close()

    def __enter__(self) -> Iterator[ParsedBatch]:
        return self._batches()

    def __exit__(self, *exc_info: object) -> None:
        self._receiver.close()
        self._process.join(_PARSER_STOP_SECONDS)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def _batches(self) -> Iterator[ParsedBatch]:
        while True:
            try:
                kind, payload = self._receiver.recv()
            except EOFError:
                self._process.join(_PARSER_STOP_SECONDS)
                raise ImportParserFailed(
                    f"the import's parser process ended unexpectedly "
                    f"(exit status {self._process.exitcode}); nothing was imported"
                ) from None
            if kind == "batch":
                yield payload
            elif kind == "done":
                return
            elif kind == "invalid":
                raise ImportFormatError(payload)
            else:
                raise ImportParserFailed(f"the import's parser process failed:\n{payload}")


def _parse_and_send(path: Path, sender: Connection, parents_end: Connection) -> None:
    """Parse `path` and send every batch, then how it ended (runs in the child)."""
    # The fork copied the parent's end of the pipe; were it kept open here, the
    # pipe would never lose its last reader and a send would block, not fail.
    parents_end.close()
    # Ctrl-C reaches the whole process group; the parent decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Parsing makes no reference cycles, so the cyclic collector only costs time.
    gc.disable()
    try:
        for batch in parse_legacy_file(path):
            sender.send(("batch", batch))
        sender.send(("done", None))
    except ImportFormatError as exc:
        sender.send(("invalid", str(exc)))
    except RecursionError:  # pickling a value nested hundreds deep, outside any payload
        sender.send(("invalid", f"{path}: a job nests values too deeply; nothing was imported"))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent stopped listening: it has an error of its own to report
    except BaseException:
        sender.send(("failed", traceback.format_exc()))
    finally:
        sender.close()
