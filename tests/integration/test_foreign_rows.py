"""Rows other programs wrote that secautod cannot read never hide the readable ones."""

from __future__ import annotations

import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from secautod import Job, JobStore
from secautod.errors import StoreError
from secautod.store.records import JobSummary, UnreadableRow

COLUMNS = "id, status, playbook, context, results, error, created_at, started_at, completed_at"
GOOD_TIME = "2026-01-21 10:00:00.000"


def insert_raw(path: Path, *rows: tuple[Any, ...]) -> None:
    """Write rows as a foreign program would: any types, no validation."""
    with sqlite3.connect(path) as conn:
        conn.executemany(f"INSERT INTO jobs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.close()


def foreign_rows() -> list[tuple[Any, ...]]:
    """One readable row and one of each kind of unreadable row."""
    return [
        ("good", "completed", '{"name":"triage"}', "{}", None, None, GOOD_TIME, None, GOOD_TIME),
        (b"go-bytes-id", "running", "{}", "{}", None, None, GOOD_TIME, None, None),
        ("not-json", "failed", "{}", "{oops", None, None, GOOD_TIME, None, None),
        ("bad-date", "completed", "{}", "{}", None, None, "yesterday-ish", None, "never"),
        ("bad-utf8", "pending", "{}", "{}", None, None, GOOD_TIME, None, None),
    ]


@pytest.fixture
def store_with_foreign_rows(tmp_path: Path) -> Path:
    """A store holding one readable row and several a foreign writer broke."""
    path = tmp_path / "jobs.db"
    JobStore(path).close()
    insert_raw(path, *foreign_rows())
    with sqlite3.connect(path) as conn:
        # A Go string may hold any bytes; go-sqlite3 binds it as TEXT.
        conn.execute("UPDATE jobs SET error = CAST(x'fffe41' AS TEXT) WHERE id = 'bad-utf8'")
    conn.close()
    return path


def test_list_job_entries_marks_each_unreadable_row_by_rowid(store_with_foreign_rows: Path) -> None:
    """A BLOB id, non-JSON text, unreadable dates and non-UTF-8 text each become one marked row."""
    with JobStore(store_with_foreign_rows) as store:
        entries = store.list_job_entries()
    readable = [entry for entry in entries if isinstance(entry, Job)]
    unreadable = [entry for entry in entries if isinstance(entry, UnreadableRow)]
    assert [job.id for job in readable] == ["good"]
    assert sorted(row.rowid for row in unreadable) == [2, 3, 4, 5]
    by_rowid = {row.rowid: row for row in unreadable}
    assert by_rowid[2].job_id is None
    assert "blob" in by_rowid[2].problem
    assert by_rowid[3].job_id == "not-json"
    assert "context" in by_rowid[3].problem
    assert by_rowid[4].job_id == "bad-date"
    assert "created_at" in by_rowid[4].problem
    assert by_rowid[5].job_id == "bad-utf8"
    assert "error" in by_rowid[5].problem


def test_list_jobs_keeps_its_contract_of_raising(store_with_foreign_rows: Path) -> None:
    """The public list_jobs still returns only Job objects, so it raises on a foreign row."""
    with JobStore(store_with_foreign_rows) as store, pytest.raises(StoreError):
        store.list_jobs()


def test_list_job_summaries_reads_rows_without_their_context(store_with_foreign_rows: Path) -> None:
    """Summaries never decode the context: a non-JSON context lists as a normal row."""
    with JobStore(store_with_foreign_rows) as store:
        entries = store.list_job_summaries()
    summaries = {entry.id: entry for entry in entries if isinstance(entry, JobSummary)}
    assert set(summaries) == {"good", "not-json", "bad-utf8"}
    assert summaries["good"].playbook_name == "triage"
    assert summaries["bad-utf8"].error is not None
    assert summaries["bad-utf8"].error.endswith("A")
    unreadable = {entry.rowid for entry in entries if isinstance(entry, UnreadableRow)}
    assert unreadable == {2, 4}


def test_listing_filters_by_a_status_only_foreign_writers_use(tmp_path: Path) -> None:
    """`queued` is not a secautod status, but a listing filtered on it finds those rows."""
    path = tmp_path / "jobs.db"
    JobStore(path).close()
    insert_raw(path, ("q1", "queued", "{}", "{}", None, None, GOOD_TIME, None, None))
    with JobStore(path) as store:
        (summary,) = store.list_job_summaries(status="queued")
        (entry,) = store.list_job_entries(status="queued")
    assert isinstance(summary, JobSummary)
    assert summary.status == "queued"
    assert isinstance(entry, UnreadableRow)
    assert entry.status == "queued"


def test_load_job_entry_returns_an_unreadable_row_instead_of_raising(
    store_with_foreign_rows: Path,
) -> None:
    """`jobs show` of a broken row gets what can be read of it, not an exception."""
    with JobStore(store_with_foreign_rows) as store:
        entry = store.load_job_entry("not-json")
        missing = store.load_job_entry("nope")
    assert isinstance(entry, UnreadableRow)
    assert entry.rowid == 3
    assert entry.status == "failed"
    assert missing is None


def test_undatable_finished_jobs_are_counted_and_named(store_with_foreign_rows: Path) -> None:
    """A finished job with no readable date can never expire: the store counts and names it."""
    with JobStore(store_with_foreign_rows) as store:
        undatable = store.undatable_jobs()
    assert undatable.count == 1
    assert undatable.rowids == (4,)


def test_listing_summaries_does_not_hold_huge_contexts_in_memory(tmp_path: Path) -> None:
    """Two jobs with 20 MB contexts list in well under one context's worth of Python memory."""
    path = tmp_path / "jobs.db"
    big = '{"blob":"' + "x" * 20_000_000 + '"}'
    JobStore(path).close()
    insert_raw(
        path,
        *[(f"big-{n}", "pending", "{}", big, None, None, GOOD_TIME, None, None) for n in (1, 2)],
    )
    with JobStore(path) as store:
        tracemalloc.start()
        try:
            entries = store.list_job_summaries()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(entries) == 2
    assert peak < 2_000_000, f"listing peaked at {peak} bytes"


def test_cleanup_logs_jobs_that_never_expire_once_and_records_the_count(
    store_with_foreign_rows: Path, tmp_path: Path
) -> None:
    """A finished job with unreadable dates is logged by rowid on the first cleanup only."""
    from datetime import UTC, datetime

    from harness import write_config
    from structlog.testing import capture_logs

    from secautod.config import load_config
    from secautod.maintenance import CLEANUP, run_cleanup

    config = load_config(write_config(tmp_path))
    now = datetime(2026, 6, 1, tzinfo=UTC)
    with JobStore(store_with_foreign_rows) as store:
        with capture_logs() as first:
            outcome = run_cleanup(store, config, now)
        with capture_logs() as second:
            run_cleanup(store, config, now)
        recorded = store.state.task_runs()[CLEANUP].last_result
    warnings = [event for event in first if event["event"] == "jobs_never_expire"]
    assert outcome.undatable == 1
    assert recorded["undatable"] == 1
    assert [(event["count"], event["rowids"]) for event in warnings] == [(1, [4])]
    assert not [event for event in second if event["event"] == "jobs_never_expire"]
