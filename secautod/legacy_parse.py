"""Read the legacy `jobs.json` file store, job by job.

The file is one JSON object mapping job id to job, with the table's fields
and RFC 3339 timestamps. It is streamed in chunks, so memory stays flat
however large the file is. A syntax error is reported with its line and
column; the fields are checked by `legacy_import`.

Speed: each job object is read member by member so that the text of its
`playbook`, `context` and `results` can be stored as written instead of
being decoded and encoded again (which took a third of an import). Anything
out of the ordinary (a job cut by the chunk boundary, a syntax error,
NaN, a lone surrogate escape, a value spread over several lines) takes the
plain path: the whole job decoded by `json`, its values encoded afresh.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn, cast

from secautod.errors import ImportFormatError, InvalidJobError
from secautod.store.json_text import encode_json, is_utf8

CHUNK_CHARS = 1 << 20
BATCH_JOBS = 500
# A parse error this close to the end of the buffer may just be a value cut
# by the chunk boundary (`tr|ue`, `-|1`), so more text is read before judging.
_BOUNDARY_SLACK = 16
_DECODER = json.JSONDecoder()
# Always matches (possibly nothing); typed so, as callers use `.end()` at once.
_skip_whitespace = cast(Callable[[str, int], re.Match[str]], re.compile(r"[ \t\n\r]*").match)
# `\uD800`-`\uDFFF`: text that may hold a lone surrogate, which is not storable
# Unicode; the plain path decodes it and refuses it with a clear error.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB]")
_PAYLOAD_COLUMNS = frozenset({"playbook", "context", "results"})


# A job as read: its id, its members (less the payloads kept as text) and the
# JSON text, as written in the file, of its `playbook`, `context` and `results`.
ParsedJob = tuple[str, Any, dict[str, str]]


@dataclass
class ParsedBatch:
    """Up to `BATCH_JOBS` jobs as read, and how far into the file they reach."""

    jobs: list[ParsedJob] = field(default_factory=list)
    consumed: int = 0  # characters of the file read up to the end of this batch


def parse_legacy_file(path: Path) -> Iterator[ParsedBatch]:
    """Yield the jobs of the legacy file at `path` in batches.

    Raises `ImportFormatError` naming the line and column of a syntax error.
    Jobs are checked only as JSON here; `legacy_import.legacy_row` checks
    their fields.
    """
    try:
        handle = path.open(encoding="utf-8-sig")  # a byte-order mark some editors add is skipped
    except OSError as exc:
        raise ImportFormatError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = _ChunkReader(handle, path)
        batch = ParsedBatch()
        for job in _iter_members(reader):
            batch.jobs.append(job)
            if len(batch.jobs) >= BATCH_JOBS:
                batch.consumed = reader.consumed
                yield batch
                batch = ParsedBatch()
        batch.consumed = reader.consumed
        yield batch


class _Unusual(Exception):
    """The member-by-member scan met something it leaves to the plain path."""


def _refuse_constant(name: str) -> NoReturn:
    raise _Unusual(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: valid JSON text, but not a number Python can store
        raise _Unusual(text)
    return value


# Like `_DECODER`, but NaN, Infinity and numbers too large for a float go the
# plain path, which refuses them. `scan_once` is what `raw_decode` calls, minus
# a Python frame per value.
_scan_value = cast(
    Callable[[str, int], tuple[Any, int]],
    json.JSONDecoder(  # type: ignore[attr-defined]
        parse_constant=_refuse_constant, parse_float=_finite_float
    ).scan_once,
)
# One match per member: the separator before it, its name and the colon after,
# or the closing brace. Names with escapes or control characters do not match
# (no job field has them): the plain path decodes them, or reports them exactly.
_NAME_AND_COLON = r'"([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*'
_FIRST_MEMBER = re.compile(rf"\{{[ \t\n\r]*(?:{_NAME_AND_COLON}|\}})")
_NEXT_MEMBER = re.compile(rf"[ \t\n\r]*(?:,[ \t\n\r]*{_NAME_AND_COLON}|\}})")


def scan_object(text: str, position: int) -> tuple[dict[str, Any], dict[str, str], int]:
    """Decode the JSON object starting at `text[position]` one member at a time.

    Returns the decoded object, the text of its payload members as written
    (when it can be stored as is; those members are left out of the object)
    and the position after the object.
    Raises `_Unusual`, `ValueError` or `StopIteration` where the plain path must decide
    (including an object cut off by the end of `text`).
    """
    match = _FIRST_MEMBER.match(text, position)
    value: dict[str, Any] = {}
    texts: dict[str, str] = {}
    while match is not None:
        key = match[1]
        if key is None:  # the closing brace
            return value, texts, match.end()
        start = match.end()
        member, position = _scan_value(text, start)
        if key not in _PAYLOAD_COLUMNS:
            value[key] = member
        elif _storable_as_written(written := text[start:position]):
            texts[key] = written
            value.pop(key, None)  # a later duplicate member wins, as in a dict
        else:
            texts.pop(key, None)
            value[key] = member
        match = _NEXT_MEMBER.match(text, position)
    raise _Unusual("not an object of plainly named members")


def _encoded_payloads(value: Any) -> dict[str, str]:
    """Encode a plainly decoded job's payloads to compact text, taking them out of `value`.

    So that only flat values cross to the importing process (pickle gives up
    on values nested a few hundred deep). A payload that cannot be encoded
    (NaN, a lone surrogate) stays in `value` for the importer to refuse.
    """
    texts: dict[str, str] = {}
    if not isinstance(value, dict):
        return texts
    for name in _PAYLOAD_COLUMNS & value.keys():
        try:
            text = encode_json(value[name], "", name)  # "null" results become NULL later
        except InvalidJobError:
            continue
        if is_utf8(text):
            texts[name] = text
            del value[name]
    return texts


def _storable_as_written(text: str) -> bool:
    """Tell whether a payload's text can be stored as written.

    Not if it spreads over lines (it is encoded afresh, compactly) or may
    hold a lone surrogate (which the plain path refuses).
    """
    return "\n" not in text and ("\\u" not in text or not _SURROGATE_ESCAPE.search(text))


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
        try:
            chunk = self.handle.read(CHUNK_CHARS)
        except UnicodeDecodeError as exc:
            raise ImportFormatError(
                f"{self.path}: not UTF-8 text ({exc.reason}, within the "
                f"{CHUNK_CHARS} characters after character {self.consumed + len(self.buffer)}); "
                f"nothing was imported"
            ) from None
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
            position = _skip_whitespace(self.buffer, position).end()
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
            except ValueError as exc:  # an integer longer than Python converts (4,300 digits)
                raise self.error(position, str(exc).split(";")[0]) from None
            # A number ending exactly at the buffer's end may continue in the next chunk.
            if end == len(self.buffer) and not isinstance(value, (dict, list, str)) and self.fill():
                continue
            return value, end

    def decode_job(self, position: int) -> tuple[Any, dict[str, str], int]:
        """Decode the job at `position`: member by member if it can, else as a whole."""
        try:
            return scan_object(self.buffer, position)
        except (ValueError, StopIteration, _Unusual):
            value, end = self.decode(position)
            return value, _encoded_payloads(value), end


def _iter_members(reader: _ChunkReader) -> Iterator[ParsedJob]:
    """Yield (key, value, payload texts) of the file's top-level object, one member at a time."""
    position = reader.skip_space(0)
    if position >= len(reader.buffer):
        raise reader.error(position, "the file is empty; expected an object of jobs")
    if reader.buffer[position] != "{":
        raise reader.error(position, "expected an object mapping job ids to jobs")
    position = reader.skip_space(position + 1)
    if position < len(reader.buffer) and reader.buffer[position] == "}":
        _expect_end(reader, position + 1)
        return
    key, position = _job_id(reader, position)
    while True:
        value, texts, position = reader.decode_job(position)
        yield key, value, texts
        position = reader.drop(position)
        # The usual case in one match: `, "id": ` with the next job in the buffer.
        match = _NEXT_MEMBER.match(reader.buffer, position)
        if match is not None and match[1] is not None and match.end() < len(reader.buffer):
            key, position = match[1], match.end()
            continue
        position = reader.skip_space(position)
        if position >= len(reader.buffer):
            raise reader.error(position, "the file ends inside the object (missing '}')")
        separator = reader.buffer[position]
        if separator == "}":
            _expect_end(reader, position + 1)
            return
        if separator != ",":
            raise reader.error(position, "expected ',' or '}' after a job")
        key, position = _job_id(reader, reader.skip_space(position + 1))


def _job_id(reader: _ChunkReader, position: int) -> tuple[str, int]:
    """Read `"id":` at `position`; return the id and where its job's value starts."""
    if position >= len(reader.buffer) or reader.buffer[position] != '"':
        raise reader.error(position, "expected a job id in double quotes")
    key, position = reader.decode(position)
    position = reader.skip_space(position)
    if position >= len(reader.buffer) or reader.buffer[position] != ":":
        raise reader.error(position, "expected ':' after the job id")
    position = reader.skip_space(position + 1)
    if position >= len(reader.buffer):
        raise reader.error(position, f"job {key!r} has no value")
    return str(key), position


def _expect_end(reader: _ChunkReader, position: int) -> None:
    position = reader.skip_space(position)
    if position < len(reader.buffer):
        raise reader.error(position, "unexpected text after the top-level object")
