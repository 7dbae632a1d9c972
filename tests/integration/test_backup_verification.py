"""A backup copy that fails its integrity check, and a stop that lands while the check runs."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from damage import INDEX, write_rows_past_an_index
from harness import bulk_jobs

import secautod.store.sqlite.snapshot as snapshot
from secautod.errors import BackupAborted, BackupError


def index_check(database: Path) -> tuple[list[str], list[str], int]:
    """The live file's integrity_check and quick_check complaints and its job count."""
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        quick = [row[0] for row in conn.execute("PRAGMA quick_check")]
        (jobs,) = conn.execute("SELECT count(*) FROM jobs").fetchone()
    finally:
        conn.close()
    return integrity, quick, int(jobs)


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_the_broken_index_is_what_integrity_check_alone_sees(make_store: Any) -> None:
    """Rows written past an index: integrity_check names them, quick_check says ok, the table reads."""
    store = make_store()
    write_rows_past_an_index(store.path, 5)
    integrity, quick, jobs = index_check(store.path)
    assert f"row 1 missing from index {INDEX}" in integrity
    assert f"wrong # of entries in index {INDEX}" in integrity
    assert quick == ["ok"]
    assert jobs == 5
    assert len(store.list_jobs()) == 5  # read through other indexes


def test_backup_of_a_store_with_a_broken_index_fails_and_leaves_no_file(
    make_store: Any, now: datetime
) -> None:
    """The copy of a live store whose index misses rows fails verification; no final or partial file remains."""
    store = make_store()
    write_rows_past_an_index(store.path, 5)
    before = files_in(store.path.parent)
    with pytest.raises(BackupError, match="failed its integrity check") as caught:
        store.backup_jobs(now=now)
    assert f"missing from index {INDEX}" in str(caught.value)
    assert "secautod check" in str(caught.value)
    assert files_in(store.path.parent) == before


@pytest.fixture
def watched_check(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Wrap the backup's integrity check: record when it starts and how it ends."""
    seen: dict[str, Any] = {"started": threading.Event()}
    real: Callable[..., list[str]] = snapshot.integrity_problems

    def watched(conn: sqlite3.Connection, limit: int = 20, check: Any = "integrity") -> list[str]:
        seen["started_at"] = time.monotonic()
        seen["started"].set()
        try:
            problems = real(conn, limit, check)
        except sqlite3.OperationalError as exc:
            seen["outcome"] = f"raised: {exc}"
            raise
        seen["outcome"] = "finished"
        return problems

    monkeypatch.setattr(snapshot, "integrity_problems", watched)
    return seen


def test_stop_while_the_integrity_check_runs_interrupts_it_within_a_second(
    make_store: Any, now: datetime, watched_check: dict[str, Any]
) -> None:
    """A stop requested 0.1 s into the copy's integrity_check interrupts the statement and aborts within 1 s."""
    store = make_store()
    bulk_jobs(store.path, 200_000, payload_bytes=100)  # a check of well over a second here
    before = files_in(store.path.parent)
    stop = threading.Event()
    stop_requested_at: list[float] = []

    def request_stop_during_the_check() -> None:
        watched_check["started"].wait(120)
        time.sleep(0.1)  # well inside the statement, not at its first step
        stop_requested_at.append(time.monotonic())
        stop.set()

    requester = threading.Thread(target=request_stop_during_the_check)
    requester.start()
    try:
        with pytest.raises(BackupAborted):
            store.backup_jobs(now=now, should_stop=stop.is_set)
        aborted_at = time.monotonic()
    finally:
        watched_check["started"].set()  # never leave the requester waiting
        stop.set()
        requester.join()
    assert "started_at" in watched_check, "the integrity check never started"
    assert stop_requested_at[0] > watched_check["started_at"]
    assert "interrupted" in watched_check["outcome"], watched_check["outcome"]
    assert aborted_at - stop_requested_at[0] < 1.0
    assert files_in(store.path.parent) == before
