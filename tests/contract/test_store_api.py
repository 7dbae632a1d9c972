"""The JobStore API of SPEC §2, against every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from secautod import Job, JobNotFoundError, JobStatus
from secautod.errors import EX_NOINPUT, InvalidJobError


def test_save_then_load_round_trips_every_field(make_store: Any, make_job: Any) -> None:
    """A saved job loads back equal, with JSON values decoded and aware UTC times."""
    store = make_store()
    job = make_job(
        status=JobStatus.FAILED,
        results={"verdict": "malicious", "score": 9.5, "tags": ["a", "ü"]},
        error="step 2 timed out",
        started_at=datetime(2026, 11, 1, 10, 0, 0, 250000, tzinfo=UTC),
        completed_at=datetime(2026, 11, 1, 10, 5, tzinfo=UTC),
    )
    store.save_job(job)
    loaded = store.load_job(job.id)
    assert loaded == job
    assert loaded is not None
    assert loaded.updated_at is not None
    assert loaded.created_at.tzinfo is UTC


def test_save_is_an_upsert(make_store: Any, make_job: Any) -> None:
    """Saving a job with an existing id replaces it instead of failing or duplicating."""
    store = make_store()
    job = make_job()
    store.save_job(job)
    job.status = JobStatus.CANCELLED
    job.context = {"changed": True}
    store.save_job(job)
    assert store.load_job(job.id) == job
    assert store.get_stats().total == 1


def test_load_missing_returns_none_and_get_raises(make_store: Any) -> None:
    """load_job gives None for an unknown id; get_job raises an error naming it."""
    store = make_store()
    assert store.load_job("nope") is None
    with pytest.raises(JobNotFoundError, match="'nope'") as caught:
        store.get_job("nope")
    assert caught.value.exit_status == EX_NOINPUT


def test_list_is_newest_first_with_limit(make_store: Any, make_job: Any) -> None:
    """Jobs list newest first by creation time and stop at the limit."""
    store = make_store()
    jobs = [make_job() for _ in range(5)]  # each one minute older than the last
    for job in reversed(jobs):
        store.save_job(job)
    assert [job.id for job in store.list_jobs()] == [job.id for job in jobs]
    assert [job.id for job in store.list_jobs(limit=2)] == [jobs[0].id, jobs[1].id]
    assert store.list_jobs(limit=0) == []


def test_list_filters_by_status_and_time_window(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """status filters exactly; since is inclusive and until exclusive."""
    store = make_store()
    ages = {"a": 1, "b": 2, "c": 3, "d": 4}
    for name, hours in ages.items():
        status = JobStatus.COMPLETED if name in "ac" else JobStatus.PENDING
        store.save_job(make_job(id=name, status=status, created_at=now - timedelta(hours=hours)))
    assert [job.id for job in store.list_jobs(status="completed")] == ["a", "c"]
    window = store.list_jobs(since=now - timedelta(hours=3), until=now - timedelta(hours=1))
    assert [job.id for job in window] == ["b", "c"]
    assert [
        job.id for job in store.list_jobs(status=JobStatus.PENDING, since=now - timedelta(hours=2))
    ] == ["b"]


def test_list_pages_with_after(make_store: Any, make_job: Any, now: datetime) -> None:
    """Paging with after= walks every job exactly once, even with equal creation times."""
    store = make_store()
    for index in range(7):
        store.save_job(make_job(id=f"j{index}", created_at=now - timedelta(minutes=index // 2)))
    seen: list[str] = []
    after = None
    while page := store.list_jobs(limit=3, after=after):
        seen.extend(job.id for job in page)
        after = page[-1].id
    assert sorted(seen) == [f"j{index}" for index in range(7)]
    assert len(seen) == 7


def test_list_after_unknown_id_is_an_error(make_store: Any) -> None:
    """Paging after an id that does not exist says so instead of returning nothing."""
    with pytest.raises(JobNotFoundError, match="'gone'"):
        make_store().list_jobs(after="gone")


def test_list_rejects_unknown_status_negative_limit_and_naive_times(make_store: Any) -> None:
    """Bad filter values are clear errors, never silently empty results."""
    store = make_store()
    with pytest.raises(InvalidJobError, match="unknown job status 'done'"):
        store.list_jobs(status="done")
    with pytest.raises(InvalidJobError, match="limit"):
        store.list_jobs(limit=-1)
    with pytest.raises(InvalidJobError, match="since must be timezone-aware"):
        store.list_jobs(since=datetime(2026, 1, 1))


def test_update_status_manages_started_and_completed(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """running stamps started_at; terminal stamps completed_at; pending clears both."""
    store = make_store()
    job = make_job()
    store.save_job(job)
    started = now + timedelta(seconds=1)
    store.update_job_status(job.id, JobStatus.RUNNING, now=started)
    running = store.get_job(job.id)
    assert (running.status, running.started_at, running.completed_at) == (
        JobStatus.RUNNING,
        started,
        None,
    )
    finished = now + timedelta(seconds=9)
    store.update_job_status(job.id, "completed", now=finished)
    done = store.get_job(job.id)
    assert (done.status, done.started_at, done.completed_at) == (
        JobStatus.COMPLETED,
        started,
        finished,
    )
    assert done.updated_at == finished
    store.update_job_status(job.id, JobStatus.PENDING, now=finished)
    requeued = store.get_job(job.id)
    assert (requeued.started_at, requeued.completed_at) == (None, None)


def test_update_status_refuses_unknown_status_and_missing_job(
    make_store: Any, make_job: Any
) -> None:
    """An unknown status or a missing job is an error, and nothing changes."""
    store = make_store()
    job = make_job()
    store.save_job(job)
    with pytest.raises(InvalidJobError):
        store.update_job_status(job.id, "finished")
    with pytest.raises(JobNotFoundError, match="'missing'"):
        store.update_job_status("missing", JobStatus.RUNNING)
    assert store.get_job(job.id).status is JobStatus.PENDING


def test_update_results_stores_results_and_error(make_store: Any, make_job: Any) -> None:
    """Results are any JSON value; the error text is stored beside them."""
    store = make_store()
    job = make_job()
    store.save_job(job)
    store.update_job_results(job.id, {"hits": [1, 2, 3]}, error="partial")
    loaded = store.get_job(job.id)
    assert (loaded.results, loaded.error) == ({"hits": [1, 2, 3]}, "partial")
    store.update_job_results(job.id, None)
    assert store.get_job(job.id).results is None
    with pytest.raises(JobNotFoundError):
        store.update_job_results("missing", {})


def test_delete_reports_whether_the_job_existed(make_store: Any, make_job: Any) -> None:
    """delete_job returns True once and False afterwards."""
    store = make_store()
    job = make_job()
    store.save_job(job)
    assert store.delete_job(job.id) is True
    assert store.delete_job(job.id) is False
    assert store.load_job(job.id) is None


def test_stats_count_each_status_and_success_rate(make_store: Any, make_job: Any) -> None:
    """get_stats counts every status (zeros included) and the success rate."""
    store = make_store()
    for status, count in [("completed", 3), ("failed", 1), ("running", 2)]:
        for _ in range(count):
            store.save_job(make_job(status=status))
    stats = store.get_stats()
    assert stats.total == 6
    assert stats.by_status == {
        JobStatus.PENDING: 0,
        JobStatus.RUNNING: 2,
        JobStatus.COMPLETED: 3,
        JobStatus.FAILED: 1,
        JobStatus.CANCELLED: 0,
    }
    assert stats.success_rate == 0.75


@pytest.mark.parametrize(
    ("field", "value"),
    [("playbook", {1, 2}), ("context", float("nan")), ("results", object())],
)
def test_values_that_are_not_json_are_refused(
    make_store: Any, make_job: Any, field: str, value: object
) -> None:
    """A playbook, context or results that JSON cannot hold is a clear error, not a bad row."""
    store = make_store()
    job = make_job(**{field: value})
    with pytest.raises(InvalidJobError, match=f"{field} cannot be stored as JSON"):
        store.save_job(job)
    assert store.load_job(job.id) is None


def test_store_as_context_manager_closes(make_store: Any, make_job: Any) -> None:
    """After the with-block the store refuses work with a clear error."""
    from secautod import StoreError

    with make_store() as store:
        store.save_job(make_job())
    with pytest.raises(StoreError, match="closed"):
        store.list_jobs()


def test_job_create_round_trip(make_store: Any) -> None:
    """A job made with Job.create saves and loads unchanged."""
    store = make_store()
    job = Job.create({"name": "contain"}, {"host": "h1"})
    store.save_job(job)
    assert store.get_job(job.id) == job


def test_error_that_is_not_text_is_invalid_input(make_store: Any, make_job: Any) -> None:
    """An exception object or a list as `error` is the caller's mistake (65), not a store failure."""
    store = make_store()
    store.save_job(make_job(id="e"))
    with pytest.raises(InvalidJobError, match="job e: error must be text or None"):
        store.update_job_results("e", None, RuntimeError("boom"))  # type: ignore[arg-type]
    with pytest.raises(InvalidJobError, match="error must be text or None"):
        make_job(id="l", error=["step", 2])
    job = make_job(id="m")
    job.error = ["changed after creation"]
    with pytest.raises(InvalidJobError, match="job m: error must be text or None"):
        store.save_job(job)
    assert store.get_job("e").error is None
