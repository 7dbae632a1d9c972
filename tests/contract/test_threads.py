"""One JobStore shared by many threads."""

from __future__ import annotations

import _thread
import threading
from datetime import timedelta
from typing import Any

from secautod import Job, JobStatus

THREADS = 8
JOBS_PER_THREAD = 60


def test_eight_threads_share_one_store(make_store: Any, now: Any) -> None:
    """8 threads saving, updating, reading and listing at once lose nothing and raise nothing."""
    store = make_store(busy_timeout=10.0)
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(worker: int) -> None:
        try:
            start.wait()
            for index in range(JOBS_PER_THREAD):
                job_id = f"t{worker}-{index}"
                store.save_job(
                    Job(
                        id=job_id,
                        status=JobStatus.PENDING,
                        playbook={"w": worker},
                        context={},
                        created_at=now + timedelta(milliseconds=index),
                    )
                )
                store.update_job_status(job_id, JobStatus.RUNNING)
                store.update_job_results(job_id, {"index": index})
                store.update_job_status(job_id, JobStatus.COMPLETED)
                assert store.get_job(job_id).results == {"index": index}
                store.list_jobs(status=JobStatus.COMPLETED, limit=10)
                store.get_stats()
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    stats = store.get_stats()
    assert stats.total == THREADS * JOBS_PER_THREAD
    assert stats.by_status[JobStatus.COMPLETED] == THREADS * JOBS_PER_THREAD
    assert all(
        job.started_at is not None and job.completed_at is not None for job in store.list_jobs()
    )


def test_a_thread_started_outside_threading_keeps_its_connection(
    make_store: Any, make_job: Any
) -> None:
    """A thread from C code or `_thread` is alive: another thread's first call does not close its connection."""
    store = make_store()
    store.save_job(make_job(id="shared"))
    first_done, others_done, finished = threading.Event(), threading.Event(), threading.Event()
    results: list[object] = []

    def foreign() -> None:
        try:
            results.append(store.get_job("shared").id)
            first_done.set()
            others_done.wait(10)
            results.append(store.get_job("shared").id)
        except Exception as exc:  # reported through results
            results.append(exc)
        finally:
            finished.set()

    _thread.start_new_thread(foreign, ())
    assert first_done.wait(10)
    other = threading.Thread(target=store.get_stats)  # opens a connection, closing orphans
    other.start()
    other.join()
    others_done.set()
    assert finished.wait(10)
    assert results == ["shared", "shared"]
