"""Reading a whole store out in pages (`export_jobs`) and its ids back (`job_keys`), on every backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from secautod import JobStatus, JobStore


def test_export_pages_follow_rowid_order_and_end_with_no_last_rowid(
    make_store: Callable[..., JobStore], make_job: Any
) -> None:
    """Pages of `export_jobs` carry every job once, in insertion order, in text form, then stop."""
    store = make_store()
    jobs = [make_job(status=JobStatus.COMPLETED if n % 2 else JobStatus.PENDING) for n in range(7)]
    for job in jobs:
        store.save_job(job)
    seen: list[tuple[Any, ...]] = []
    after = 0
    while (page := store.export_jobs(after, 3)).last_rowid is not None:
        assert page.last_rowid > after
        assert len(page.jobs) <= 3
        assert not page.unreadable
        seen.extend(page.jobs)
        after = page.last_rowid
    assert [row[0] for row in seen] == [job.id for job in jobs]
    assert [row[1] for row in seen] == [job.status.value for job in jobs]
    assert seen[0][2] == '{"name":"triage","steps":[{"action":"enrich","n":1}]}'


def test_exported_jobs_import_into_another_store_unchanged(
    make_store: Callable[..., JobStore], make_job: Any, tmp_path: Any
) -> None:
    """What `export_jobs` reads, `import_encoded_jobs` writes elsewhere as the same jobs."""
    source = make_store()
    job = make_job(results={"verdict": "benign"}, error="late")
    source.save_job(job)
    page = source.export_jobs(0, 10)
    with JobStore(tmp_path / "copy.db") as target:
        assert target.import_encoded_jobs([page.jobs]).imported == 1
        assert target.get_job(job.id) == source.get_job(job.id)


def test_job_keys_page_through_ids_in_order(
    make_store: Callable[..., JobStore], make_job: Any
) -> None:
    """`job_keys` returns every (id, status) once, in id order, a page after the last id given."""
    store = make_store()
    for job_id in ("c", "a", "e", "b", "d"):
        store.save_job(make_job(id=job_id, status=JobStatus.RUNNING))
    first = store.job_keys(None, 2)
    rest = store.job_keys(first[-1][0], 10)
    assert first + rest == [(job_id, "running") for job_id in "abcde"]
    assert store.job_keys("e", 10) == []
