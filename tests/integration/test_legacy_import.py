"""Importing the legacy jobs.json file store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from harness import run_cli, write_config

from secautod import JobStatus, legacy_parse
from secautod import legacy_import as importer
from secautod.errors import EX_DATAERR, ImportFormatError
from secautod.legacy_import import import_legacy_file


def legacy_job(job_id: str, **overrides: Any) -> dict[str, Any]:
    job = {
        "id": job_id,
        "status": "completed",
        "playbook": {"name": "triage", "steps": [1, 2.5, True, None]},
        "context": {"alert": "ü-ñ", "nested": {"list": [{"a": -1e-3}]}},
        "results": {"verdict": "benign"},
        "error": "",
        "created_at": "2026-01-21T10:00:00-07:00",
        "started_at": "2026-01-21T10:00:01.123456789-07:00",
        "completed_at": "2026-01-21T17:05:00Z",
        "updated_at": "0001-01-01T00:00:00Z",
    }
    job.update(overrides)
    return job


def write_legacy(path: Path, jobs: dict[str, Any], indent: int | None = 2) -> Path:
    path.write_text(json.dumps(jobs, indent=indent, ensure_ascii=False))
    return path


def test_import_reads_fields_and_times_and_is_idempotent(make_store: Any, tmp_path: Path) -> None:
    """Jobs import with decoded JSON, UTC times, "" error as none, Go zero time as unset; twice changes nothing."""
    store = make_store()
    source = write_legacy(tmp_path / "jobs.json", {f"j{i}": legacy_job(f"j{i}") for i in range(5)})
    first = import_legacy_file(store, source)
    assert (first.imported, first.skipped, first.rejected) == (5, 0, [])
    job = store.get_job("j3")
    assert job.status is JobStatus.COMPLETED
    assert job.context == {"alert": "ü-ñ", "nested": {"list": [{"a": -1e-3}]}}
    assert job.error is None
    assert job.created_at.isoformat() == "2026-01-21T17:00:00+00:00"
    assert job.started_at is not None
    assert job.started_at.isoformat() == "2026-01-21T17:00:01.123000+00:00"
    before = [(j.id, j.updated_at) for j in store.list_jobs()]
    second = import_legacy_file(store, source)
    assert (second.imported, second.skipped) == (0, 5)
    assert [(j.id, j.updated_at) for j in store.list_jobs()] == before


def test_existing_jobs_are_not_overwritten(make_store: Any, make_job: Any, tmp_path: Path) -> None:
    """A job already in the store is kept as it is (the store is newer than the file)."""
    store = make_store()
    store.save_job(make_job(id="same", status="running"))
    report = import_legacy_file(
        store, write_legacy(tmp_path / "j.json", {"same": legacy_job("same")})
    )
    assert (report.imported, report.skipped) == (0, 1)
    assert store.get_job("same").status is JobStatus.RUNNING


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"a": {"status": "completed",}}', "line 1, column 30"),
        (
            '{\n  "a": {"status": "pending", "created_at": "2026-01-01T00:00:00Z"},\n  "b": [1, 2\n}',
            "line 4",
        ),
        ('[{"id": "a"}]', "line 1, column 1: expected an object mapping job ids"),
        (
            '{"a": {"status": "pending", "created_at": "2026-01-01T00:00:00Z"}} trailing',
            "unexpected text after",
        ),
        (
            '{"a": {"status": "pending", "created_at": "2026-01-01T00:00:00Z"}',
            "ends inside the object",
        ),
        ("", "the file is empty"),
        (
            '{"a": {"status": "pending", "created_at": "2026-01-01T00:00:00Z"},}',
            "expected a job id",
        ),
        ('{"a": {"status": "pending", "n": ' + "9" * 5000 + "}}", "line 1, column 7: Exceeds"),
        (
            '{"a": {"status": "pending", "created_at": "9999-12-31T23:00:00-05:00"}}',
            "job 'a': field 'created_at'",
        ),
    ],
)
def test_malformed_files_import_nothing_and_say_where(
    make_store: Any, tmp_path: Path, text: str, where: str
) -> None:
    """A syntax error anywhere aborts the whole import, naming the line and column."""
    store = make_store()
    source = tmp_path / "bad.json"
    source.write_text(text)
    with pytest.raises(ImportFormatError) as caught:
        import_legacy_file(store, source)
    assert where in str(caught.value)
    assert "nothing was imported" in str(caught.value)
    assert caught.value.exit_status == EX_DATAERR
    assert store.get_stats().total == 0


def test_byte_order_mark_is_skipped_and_non_utf8_is_refused(
    make_store: Any, tmp_path: Path
) -> None:
    """A UTF-8 BOM (some editors write one) imports; bytes that are not UTF-8 import nothing."""
    store = make_store()
    job = '{"a": {"status": "pending", "created_at": "2026-01-01T00:00:00Z", "playbook": {"n": "%s"}}}'
    with_bom = tmp_path / "bom.json"
    with_bom.write_bytes(b"\xef\xbb\xbf" + (job % "x").encode())
    assert import_legacy_file(store, with_bom).imported == 1
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes((job % "caf\xe9").replace('"a"', '"b"').encode("latin-1"))
    with pytest.raises(ImportFormatError, match=r"not UTF-8 text.*nothing was imported"):
        import_legacy_file(store, latin1)
    assert store.get_stats().total == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"status": "done"}, "job 'j1': field 'status'"),
        (
            {"created_at": "yesterday"},
            "job 'j1': field 'created_at': 'yesterday' is not an RFC 3339 time",
        ),
        ({"created_at": None}, "job 'j1': field 'created_at' is required"),
        ({"id": "other"}, "job 'j1': field 'id' says 'other'"),
        ({"surprise": 1}, "job 'j1': unknown field 'surprise'"),
        ({"error": 5}, "job 'j1': field 'error' must be text or null"),
    ],
)
def test_invalid_fields_name_the_job_and_field(
    make_store: Any, tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    """A job with an invalid field aborts the import, naming the job id and the field."""
    store = make_store()
    jobs = {"j0": legacy_job("j0"), "j1": legacy_job("j1", **overrides), "j2": legacy_job("j2")}
    with pytest.raises(ImportFormatError, match="nothing was imported") as caught:
        import_legacy_file(store, write_legacy(tmp_path / "j.json", jobs))
    assert message in str(caught.value)
    assert store.get_stats().total == 0


def test_skip_invalid_imports_the_rest_and_lists_rejects(make_store: Any, tmp_path: Path) -> None:
    """With skip_invalid, invalid jobs are rejected with reasons and the valid ones imported."""
    store = make_store()
    jobs = {"ok": legacy_job("ok"), "bad": legacy_job("bad", status="??")}
    report = import_legacy_file(store, write_legacy(tmp_path / "j.json", jobs), skip_invalid=True)
    assert report.imported == 1
    assert [job_id for job_id, _ in report.rejected] == ["bad"]


def test_duplicate_ids_in_the_file_are_refused(make_store: Any, tmp_path: Path) -> None:
    """The same id twice in one file is ambiguous: nothing is imported."""
    store = make_store()
    job = json.dumps(legacy_job("d"))
    source = tmp_path / "dup.json"
    source.write_text(f'{{"d": {job}, "d": {job}}}')
    with pytest.raises(ImportFormatError, match="appears more than once"):
        import_legacy_file(store, source)
    assert store.get_stats().total == 0


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_values_split_across_chunk_boundaries_parse_the_same(
    make_store: Any, tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streaming in tiny chunks (cutting numbers, literals, strings, escapes) gives the same jobs."""
    monkeypatch.setattr(legacy_parse, "CHUNK_CHARS", chunk)
    jobs = {
        "n1": legacy_job(
            "n1", results={"n": 1234567890123, "f": -0.000123e5, "t": True, "f2": False, "z": None}
        ),
        's\\"q': legacy_job('s\\"q', context={"text": 'tab\tquote"slash\\u\u00e9\U0001f600'}),
        "n2": legacy_job("n2", results=12345),
    }
    store = make_store()
    report = import_legacy_file(store, write_legacy(tmp_path / "j.json", jobs, indent=None))
    assert report.imported == 3
    for job_id, job in jobs.items():
        stored = store.get_job(job_id)
        assert stored.results == job["results"]
        assert stored.context == job["context"]


def test_syntax_error_position_is_right_with_tiny_chunks(
    make_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Line and column stay exact when the error lies many chunks into the file."""
    monkeypatch.setattr(legacy_parse, "CHUNK_CHARS", 5)
    lines = (
        ["{"]
        + [f'  "j{i}": {json.dumps(legacy_job(f"j{i}"))},' for i in range(3)]
        + ['  "x": {"status": tru}', "}"]
    )
    source = tmp_path / "j.json"
    source.write_text("\n".join(lines))
    with pytest.raises(json.JSONDecodeError) as reference:
        json.loads(source.read_text())
    with pytest.raises(
        ImportFormatError, match=f"line {reference.value.lineno}, column {reference.value.colno}:"
    ):
        import_legacy_file(make_store(), source)
    assert (reference.value.lineno, reference.value.colno) == (5, 19)


def test_cli_import_json_counts_and_exit_statuses(tmp_path: Path) -> None:
    """import-json prints imported/skipped/rejected; a malformed file exits 65 with the location."""
    config = write_config(tmp_path)
    good = write_legacy(tmp_path / "jobs.json", {"a": legacy_job("a"), "b": legacy_job("b")})
    first = run_cli("import-json", str(good), "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "imported 2, skipped 0 (already present), rejected 0"
    second = run_cli("import-json", str(good), "--config", str(config), "--json")
    assert json.loads(second.stdout) == {"imported": 0, "skipped": 2, "rejected": []}
    bad = tmp_path / "bad.json"
    bad.write_text('{"c": {"status": "pending",\n "created_at": 2026-01-01}}')
    result = run_cli("import-json", str(bad), "--config", str(config))
    assert result.returncode == 65
    assert "line 2, column 20: Expecting ',' delimiter" in result.stderr
    missing = run_cli("import-json", str(tmp_path / "nope.json"), "--config", str(config))
    assert missing.returncode == 66
    assert "no file to import" in missing.stderr


def test_duplicate_ids_in_different_batches_are_refused(
    make_store: Any, make_job: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An id named twice is refused across batches too, whether or not the store had it."""
    monkeypatch.setattr(legacy_parse, "BATCH_JOBS", 2)
    job = json.dumps(legacy_job("d"))
    others = ", ".join(f'"o{i}": {json.dumps(legacy_job(f"o{i}"))}' for i in range(3))
    source = tmp_path / "dup.json"
    source.write_text(f'{{"d": {job}, {others}, "d": {job}}}')
    fresh = make_store()
    with pytest.raises(ImportFormatError, match="'d' appears more than once"):
        import_legacy_file(fresh, source)
    assert fresh.get_stats().total == 0
    stored = make_store()
    stored.save_job(make_job(id="d"))
    with pytest.raises(ImportFormatError, match="'d' appears more than once"):
        import_legacy_file(stored, source)
    assert stored.get_stats().total == 1


def test_reimport_in_many_batches_skips_everything(
    make_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second import of a file read in several batches skips every job and refuses none."""
    monkeypatch.setattr(legacy_parse, "BATCH_JOBS", 3)
    source = write_legacy(tmp_path / "jobs.json", {f"j{i}": legacy_job(f"j{i}") for i in range(10)})
    store = make_store()
    assert import_legacy_file(store, source).imported == 10
    again = import_legacy_file(store, source)
    assert (again.imported, again.skipped) == (0, 10)


def test_payload_text_is_kept_as_written_or_compacted(make_store: Any, tmp_path: Path) -> None:
    """One-line payloads are stored as written; pretty-printed ones are re-encoded compactly."""
    jobs = {"a": legacy_job("a", playbook={"name": "x", "steps": [1, 2]})}
    one_line = write_legacy(tmp_path / "one.json", jobs, indent=None)
    pretty = write_legacy(tmp_path / "pretty.json", {"b": legacy_job("b")}, indent=2)
    store = make_store()
    import_legacy_file(store, one_line)
    import_legacy_file(store, pretty)
    with sqlite3.connect(store.path) as conn:
        texts = dict(conn.execute("SELECT id, playbook FROM jobs").fetchall())
    assert texts["a"] == '{"name": "x", "steps": [1, 2]}'
    assert texts["b"] == '{"name":"triage","steps":[1,2.5,true,null]}'
    assert store.get_job("b").playbook == {"name": "triage", "steps": [1, 2.5, True, None]}


@pytest.mark.parametrize("indent", [None, 2], ids=["one-line", "pretty-printed"])
def test_absent_and_null_payloads_store_defaults(
    make_store: Any, tmp_path: Path, indent: int | None
) -> None:
    """An absent playbook or context is stored as {}, absent or null results as NULL."""
    absent = legacy_job("absent")
    for name in ("playbook", "context", "results"):
        del absent[name]
    jobs = {"absent": absent, "null": legacy_job("null", results=None)}
    store = make_store()
    import_legacy_file(store, write_legacy(tmp_path / "j.json", jobs, indent=indent))
    with sqlite3.connect(store.path) as conn:
        rows = conn.execute("SELECT id, playbook, context, results FROM jobs ORDER BY id")
        stored = {
            job_id: (playbook, context, results) for job_id, playbook, context, results in rows
        }
    assert stored["absent"] == ("{}", "{}", None)
    assert stored["null"][2] is None


@pytest.mark.parametrize("as_written", [True, False], ids=["as-written", "decoded"])
def test_null_payload_members_on_both_parse_paths(as_written: bool) -> None:
    """Null results become NULL; a null playbook or context is kept as the JSON text null.

    The parser hands over a member's text when it could keep it as written,
    and only the decoded value otherwise (a cut or unusual payload).
    """
    job = legacy_job("n", playbook=None, context=None, results=None)
    texts = {"playbook": "null", "context": "null", "results": "null"} if as_written else {}
    row = importer.legacy_row("n", job, texts)
    assert (row[2], row[3], row[4]) == ("null", "null", None)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"x": NaN}', "job n: playbook cannot be stored as JSON"),
        ('{"x": 1e400}', "job n: playbook cannot be stored as JSON"),
        ('{"x": "\\ud800"}', "job 'n': field 'playbook' holds an unpaired surrogate"),
    ],
)
def test_payloads_other_readers_reject_are_refused(
    make_store: Any, tmp_path: Path, payload: str, message: str
) -> None:
    """NaN, numbers too big for a float and lone surrogates, which Python's decoder accepts, are refused with the job's id."""
    job = json.dumps(legacy_job("n"))
    source = tmp_path / "j.json"
    source.write_text(
        '{"n": ' + job.replace('{"name": "triage", "steps": [1, 2.5, true, null]}', payload) + "}"
    )
    assert payload in source.read_text()
    store = make_store()
    with pytest.raises(ImportFormatError, match=message):
        import_legacy_file(store, source)
    assert store.get_stats().total == 0


def test_deeply_nested_payload_over_several_lines_imports(make_store: Any, tmp_path: Path) -> None:
    """A pretty-printed payload nested 800 deep (past pickle's limit) imports like any other."""
    deep: Any = "leaf"
    for _ in range(800):
        deep = [deep]
    store = make_store()
    import_legacy_file(
        store, write_legacy(tmp_path / "j.json", {"d": legacy_job("d", playbook=deep)})
    )
    assert store.get_job("d").playbook == deep


def test_an_error_found_by_the_parent_stops_the_parser_at_once(
    make_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the parent refuses a job, the parser child (blocked on a full pipe) ends without being killed."""
    import multiprocessing
    import time

    monkeypatch.setattr(importer, "_PARSER_STOP_SECONDS", 60.0)
    jobs = {f"j{i}": legacy_job(f"j{i}") for i in range(5000)}
    jobs["j600"]["status"] = "done"
    source = write_legacy(tmp_path / "j.json", jobs, indent=None)
    started = time.monotonic()
    with pytest.raises(ImportFormatError, match="job 'j600': field 'status'"):
        import_legacy_file(make_store(), source)
    assert time.monotonic() - started < 30  # not the 60 s wait before a kill
    assert multiprocessing.active_children() == []
