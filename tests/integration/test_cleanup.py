"""Retention cleanup: what goes, what stays, batching, stopping and concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import DEADLINE, wait_until

from secautod import JobStatus
from secautod.errors import CleanupAborted, InvalidJobError
from secautod.store.sqlite import retention as cleanup_batches
from secautod.store.sqlite.retention import CLEANUP_BATCH_ROWS

DAY = timedelta(days=1)


def test_cleanup_deletes_only_old_terminal_jobs(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """Old completed/failed/cancelled jobs go; pending, running and recent ones stay."""
    store = make_store()
    old = now - 40 * DAY
    expected_gone = []
    for status in JobStatus:
        old_job = make_job(
            status=status, created_at=old, completed_at=old if status.is_terminal else None
        )
        store.save_job(old_job)
        store.save_job(make_job(status=status, created_at=now - DAY))
        if status.is_terminal:
            expected_gone.append(old_job.id)
    assert store.cleanup_old_jobs(30 * DAY, now=now) == len(expected_gone)
    remaining = {job.id for job in store.list_jobs()}
    assert remaining.isdisjoint(expected_gone)
    assert len(remaining) == 2 * len(JobStatus) - len(expected_gone)
    assert {job.status for job in store.list_jobs() if job.created_at == old} == {
        JobStatus.PENDING,
        JobStatus.RUNNING,
    }


def test_age_is_completion_time_then_creation_time(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """A job created long ago but completed recently stays; one never completed ages by creation."""
    store = make_store()
    store.save_job(
        make_job(
            id="recently-done",
            status="completed",
            created_at=now - 90 * DAY,
            completed_at=now - DAY,
        )
    )
    store.save_job(make_job(id="no-completion", status="cancelled", created_at=now - 90 * DAY))
    assert store.cleanup_old_jobs(30 * DAY, now=now) == 1
    assert [job.id for job in store.list_jobs()] == ["recently-done"]


def test_cleanup_understands_foreign_timestamp_forms(make_store: Any) -> None:
    """Jobs written by other clients in RFC 3339 or Go form age by their real instant."""
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    store = make_store()
    conn = sqlite3.connect(store.path)
    rows = [
        ("old-rfc", "2026-10-01T00:00:00Z"),
        ("old-go", "2026-10-01 00:00:00.123456789-07:00"),
        ("new-rfc", "2026-11-21T00:00:00Z"),
        # 29 days and 23 h old in UTC, but as text it compares lower than the cutoff.
        ("boundary-go", "2026-10-23 05:00:00.000000000-07:00"),
    ]
    conn.executemany(
        "INSERT INTO jobs (id, status, playbook, context, created_at, completed_at) VALUES (?, 'completed', '{}', '{}', ?, ?)",
        [(job_id, stamp, stamp) for job_id, stamp in rows],
    )
    conn.commit()
    conn.close()
    assert store.cleanup_old_jobs(30 * DAY, now=now) == 2
    assert sorted(job.id for job in store.list_jobs()) == ["boundary-go", "new-rfc"]


def test_cleanup_is_idempotent_and_rejects_bad_ages(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """A second run deletes nothing; a zero or negative age is refused."""
    store = make_store()
    store.save_job(make_job(status="failed", created_at=now - 60 * DAY))
    assert store.cleanup_old_jobs(30 * DAY, now=now) == 1
    assert store.cleanup_old_jobs(30 * DAY, now=now) == 0
    with pytest.raises(InvalidJobError, match="max_age must be positive"):
        store.cleanup_old_jobs(timedelta(0), now=now)


def bulk_insert(path: Path, count: int, status: str, created: str, start: int = 0) -> None:
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO jobs (id, status, playbook, context, created_at, completed_at) VALUES (?, ?, '{}', '{}', ?, ?)",
        [(f"bulk-{start + index}", status, created, created) for index in range(count)],
    )
    conn.commit()
    conn.close()


def test_cleanup_works_in_many_short_transactions(make_store: Any, now: datetime) -> None:
    """Deleting many rows takes several batches, each reported to on_progress."""
    store = make_store()
    count = CLEANUP_BATCH_ROWS[0] * 8 * 6
    bulk_insert(store.path, count, "completed", "2026-01-01 00:00:00.000")
    progress: list[int] = []
    assert store.cleanup_old_jobs(30 * DAY, now=now, on_progress=progress.append) == count
    assert len(progress) >= 3
    assert progress == sorted(progress)
    assert progress[-1] == count


def test_stopped_cleanup_keeps_its_progress_and_resumes(make_store: Any, now: datetime) -> None:
    """A stop between batches raises CleanupAborted; deleted rows stay deleted; a rerun finishes."""
    store = make_store()
    count = CLEANUP_BATCH_ROWS[0] * 8 * 4
    bulk_insert(store.path, count, "failed", "2026-01-01 00:00:00.000")
    batches: list[int] = []
    with pytest.raises(CleanupAborted) as caught:
        store.cleanup_old_jobs(
            30 * DAY, now=now, on_progress=batches.append, should_stop=lambda: len(batches) >= 1
        )
    assert 0 < caught.value.deleted < count
    assert store.get_stats().total == count - caught.value.deleted
    assert store.cleanup_old_jobs(30 * DAY, now=now) == count - caught.value.deleted
    assert store.get_stats().total == 0


WRITER = textwrap.dedent(
    """
    import os, sqlite3, sys, time
    path, stop_file = sys.argv[1], sys.argv[2]
    conn = sqlite3.connect(path, timeout=2.0, isolation_level=None)
    worst = 0.0
    count = 0
    print("ready", flush=True)
    while not os.path.exists(stop_file):
        started = time.monotonic()
        conn.execute(
            "INSERT INTO jobs (id, status, playbook, context, created_at) "
            "VALUES (?, 'pending', '{}', '{}', strftime('%Y-%m-%d %H:%M:%f', 'now'))",
            (f"ext-{count}",),
        )
        worst = max(worst, time.monotonic() - started)
        count += 1
        time.sleep(0.002)
    print(f"done {count} {worst:.3f}", flush=True)
    """
)
# The worst single insert an engine may see while cleanup runs, on a busy
# 2-core CI machine. The 100 ms target is measured in benchmarks/, not here.
WORST_WRITE_SECONDS = 1.0


def test_external_writer_never_fails_or_stalls_during_cleanup(
    make_store: Any, now: datetime, tmp_path: Path
) -> None:
    """Another process inserting all through a cleanup is never refused, and no insert waits 1 s or more."""
    store = make_store()
    count = 100_000  # one DELETE of these holds the write lock for seconds
    bulk_insert(store.path, count, "completed", "2026-01-01 00:00:00.000")
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    stop_file = tmp_path / "stop-writing"
    writer = subprocess.Popen(
        [sys.executable, str(script), str(store.path), str(stop_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        deleted = store.cleanup_old_jobs(30 * DAY, now=now)
    finally:
        stop_file.touch()
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert deleted == count
    word, written, worst = out.split()
    assert word == "done"
    assert int(written) > 0
    assert float(worst) < WORST_WRITE_SECONDS, f"an insert waited {worst} s during cleanup"
    assert store.get_stats().by_status[JobStatus.PENDING] == int(written)


def record_pauses(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record, for each pause cleanup sizes, whether it saw another connection's commit."""
    seen: list[bool] = []
    original = cleanup_batches.PauseSizer.after

    def after(sizer: Any, started: float, ended: float, *, others_wrote: bool) -> float:
        seen.append(others_wrote)
        return original(sizer, started, ended, others_wrote=others_wrote)

    monkeypatch.setattr(cleanup_batches.PauseSizer, "after", after)
    return seen


def test_pauses_notice_commits_of_other_connections_between_batches(
    make_store: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pause after a batch knows whether another connection committed since the batch before."""
    store = make_store()
    bulk_insert(store.path, CLEANUP_BATCH_ROWS[0] * 8, "completed", "2026-01-01 00:00:00.000")
    seen = record_pauses(monkeypatch)
    writer = sqlite3.connect(store.path, timeout=5.0, isolation_level=None)

    def insert_between_batches(deleted: int) -> None:
        writer.execute(
            "INSERT INTO jobs (id, status, playbook, context, created_at) "
            "VALUES (?, 'pending', '{}', '{}', '2026-01-01 00:00:00.000')",
            (f"between-{deleted}",),
        )

    deleted = store.cleanup_old_jobs(30 * DAY, now=now, on_progress=insert_between_batches)
    writer.close()
    assert deleted == CLEANUP_BATCH_ROWS[0] * 8
    assert len(seen) >= 3
    assert seen == [False] + [True] * (len(seen) - 1)

    seen.clear()
    bulk_insert(store.path, CLEANUP_BATCH_ROWS[0] * 8, "failed", "2026-01-01 00:00:00.000", 10**6)
    store.cleanup_old_jobs(30 * DAY, now=now)
    assert len(seen) >= 3
    assert not any(seen)


def test_count_expired_matches_what_cleanup_deletes(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """The dry-run count per status equals what a real cleanup then deletes."""
    store = make_store()
    for status in ("completed", "completed", "failed", "pending"):
        store.save_job(make_job(status=status, created_at=now - 50 * DAY))
    counts = store.count_expired_jobs(30 * DAY, now=now)
    assert counts == {JobStatus.COMPLETED: 2, JobStatus.FAILED: 1, JobStatus.CANCELLED: 0}
    assert store.cleanup_old_jobs(30 * DAY, now=now) == sum(counts.values())


EXPIRED_ROWS = CLEANUP_BATCH_ROWS[0] * 8 * 4


class PinnedSnapshot:
    """A raw `sqlite3` reader holding one read transaction open (as a backup copy does)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("BEGIN")
        self.conn.execute("SELECT count(*) FROM jobs").fetchone()

    def release(self) -> None:
        """End the snapshot; safe to call again."""
        self.conn.close()  # closing ends the read transaction; a second close does nothing


@pytest.fixture
def pinned_store(
    make_store: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, PinnedSnapshot]]:
    """A store with expired jobs, a reader pinning a snapshot, and cleanup waiting above 1 frame."""
    store = make_store()
    bulk_insert(store.path, EXPIRED_ROWS, "completed", "2026-01-01 00:00:00.000")
    monkeypatch.setattr(cleanup_batches, "CLEANUP_MAX_WAL_BACKLOG_FRAMES", 1)
    reader = PinnedSnapshot(store.path)
    try:
        yield store, reader
    finally:
        reader.release()  # never leave a cleanup thread waiting for the whole budget


def test_cleanup_waits_while_a_reader_keeps_the_wal_from_folding(
    pinned_store: tuple[Any, PinnedSnapshot], now: datetime
) -> None:
    """A pinned snapshot holds cleanup back after one batch; it finishes once the reader ends."""
    store, reader = pinned_store
    progress: list[int] = []
    with ThreadPoolExecutor(1) as pool:
        cleanup = pool.submit(
            store.cleanup_old_jobs, 30 * DAY, now=now, on_progress=progress.append
        )
        wait_until(lambda: progress, what="the first cleanup batch")
        with pytest.raises(FutureTimeout):
            cleanup.result(timeout=0.5)  # still waiting: the WAL could not be checkpointed
        assert len(progress) == 1
        assert progress[0] < EXPIRED_ROWS
        reader.release()
        assert cleanup.result(timeout=DEADLINE) == EXPIRED_ROWS


def test_cleanup_waiting_for_a_reader_stops_on_request(
    pinned_store: tuple[Any, PinnedSnapshot], now: datetime
) -> None:
    """A stop request ends the wait at once with CleanupAborted; deleted rows stay deleted."""
    store, _reader = pinned_store
    stop = threading.Event()
    progress: list[int] = []
    with ThreadPoolExecutor(1) as pool:
        cleanup = pool.submit(
            store.cleanup_old_jobs,
            30 * DAY,
            now=now,
            on_progress=progress.append,
            should_stop=stop.is_set,
        )
        wait_until(lambda: progress, what="the first cleanup batch")
        stop.set()
        with pytest.raises(CleanupAborted) as caught:
            cleanup.result(timeout=DEADLINE)
    assert caught.value.deleted == progress[0]
    assert store.get_stats().total == EXPIRED_ROWS - progress[0]


def test_cleanup_waits_for_a_reader_only_so_long(
    pinned_store: tuple[Any, PinnedSnapshot], now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that never finishes slows cleanup down for a bounded time, never forever."""
    store, _reader = pinned_store
    monkeypatch.setattr(cleanup_batches, "CLEANUP_MAX_BACKLOG_WAIT_SECONDS", 0.0)
    with ThreadPoolExecutor(1) as pool:
        cleanup = pool.submit(store.cleanup_old_jobs, 30 * DAY, now=now)
        assert cleanup.result(timeout=DEADLINE) == EXPIRED_ROWS
    assert store.get_stats().total == 0
