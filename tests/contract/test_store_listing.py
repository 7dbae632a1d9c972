"""The tolerant listing the CLI uses (issue 19), against every backend."""

from __future__ import annotations

from typing import Any

import pytest

from secautod import Job, JobNotFoundError, JobStatus
from secautod.store.records import JobSummary


def test_summaries_and_entries_list_newest_first_with_filters(
    make_store: Any, make_job: Any
) -> None:
    """Summaries print the playbook's name and no context; entries are whole jobs; both page and filter."""
    store = make_store()
    jobs = [make_job(status=JobStatus.COMPLETED, error="x" * 5000) for _ in range(3)]
    for job in jobs:
        store.save_job(job)
    summaries = store.list_job_summaries(status="completed", limit=2)
    assert [summary.id for summary in summaries] == [jobs[0].id, jobs[1].id]
    first = summaries[0]
    assert isinstance(first, JobSummary)
    assert (first.status, first.playbook_name) == ("completed", "triage")
    assert first.error is not None
    assert len(first.error) < 5000  # cut short: a listing prints only the start
    entries = store.list_job_entries(after=jobs[1].id)
    assert [entry.id for entry in entries if isinstance(entry, Job)] == [jobs[2].id]
    assert store.list_job_summaries(status="queued") == []  # another writer's status: no error
    with pytest.raises(JobNotFoundError):
        store.list_job_entries(after="gone")


def test_load_job_entry_and_no_undatable_jobs(make_store: Any, make_job: Any) -> None:
    """load_job_entry returns the job or None; a store of readable jobs has no undatable ones."""
    store = make_store()
    job = make_job()
    store.save_job(job)
    assert store.load_job_entry(job.id) == job
    assert store.load_job_entry("nope") is None
    assert store.undatable_jobs().count == 0
