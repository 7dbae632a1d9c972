from datetime import UTC, datetime

import pytest

from secautod import Job, JobStats, JobStatus
from secautod.errors import EX_DATAERR, InvalidJobError
from secautod.jobs import TERMINAL_STATUSES


def test_status_parse_rejects_unknown_values_with_the_known_list() -> None:
    """An unknown status is an error that lists the valid ones."""
    assert JobStatus.parse("running") is JobStatus.RUNNING
    with pytest.raises(InvalidJobError, match="pending, running, completed") as caught:
        JobStatus.parse("done")
    assert caught.value.exit_status == EX_DATAERR


def test_terminal_statuses() -> None:
    """Completed, failed and cancelled are terminal; pending and running are not."""
    assert {status for status in JobStatus if status.is_terminal} == TERMINAL_STATUSES
    assert not JobStatus.PENDING.is_terminal
    assert not JobStatus.RUNNING.is_terminal


def test_job_validates_id_status_and_timezones() -> None:
    """A job with an empty id, unknown status or naive timestamp cannot be built."""
    created = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidJobError, match="non-empty"):
        Job(id="", status=JobStatus.PENDING, playbook={}, context={}, created_at=created)
    with pytest.raises(InvalidJobError, match="unknown job status"):
        Job(id="a", status="bogus", playbook={}, context={}, created_at=created)  # type: ignore[arg-type]
    with pytest.raises(InvalidJobError, match="started_at must be timezone-aware"):
        Job(
            id="a",
            status=JobStatus.RUNNING,
            playbook={},
            context={},
            created_at=created,
            started_at=datetime(2026, 1, 1),
        )


def test_job_create_makes_pending_job_with_unique_ids() -> None:
    """Job.create gives a pending job with a fresh id and the given creation time."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    first = Job.create({"n": 1}, {}, now=at)
    second = Job.create({"n": 2}, {}, now=at)
    assert first.status is JobStatus.PENDING
    assert first.created_at == at
    assert first.id != second.id


def test_to_dict_is_json_ready_with_iso_timestamps() -> None:
    """to_dict gives plain values and ISO 8601 UTC timestamps."""
    job = Job(
        id="a",
        status=JobStatus.COMPLETED,
        playbook={"p": 1},
        context={"c": 2},
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        completed_at=datetime(2026, 1, 2, tzinfo=UTC),
        results=[1, 2],
    )
    assert job.to_dict() == {
        "id": "a",
        "status": "completed",
        "playbook": {"p": 1},
        "context": {"c": 2},
        "results": [1, 2],
        "error": None,
        "created_at": "2026-01-01T00:00:00.000Z",
        "started_at": None,
        "completed_at": "2026-01-02T00:00:00.000Z",
        "updated_at": None,
    }


def test_success_rate_counts_completed_over_completed_and_failed() -> None:
    """Success rate ignores cancelled, pending and running jobs; None when nothing finished."""
    counts = dict.fromkeys(JobStatus, 0)
    assert JobStats(total=0, by_status=counts).success_rate is None
    counts.update({JobStatus.COMPLETED: 3, JobStatus.FAILED: 1, JobStatus.CANCELLED: 10})
    assert JobStats(total=14, by_status=counts).success_rate == 0.75


def test_every_exit_status_is_documented_in_help_and_readme() -> None:
    """Each exit status in errors.EXIT_STATUS_HELP appears in `--help` and in README's list."""
    import re
    from pathlib import Path

    from secautod.cli import EXIT_STATUSES
    from secautod.errors import EXIT_STATUS_HELP

    readme = Path(__file__).parents[2] / "README.md"
    listed = re.search(r"Exit statuses: (.*?)\.\n\n", readme.read_text(), re.S)
    assert listed is not None
    for status, meaning in EXIT_STATUS_HELP.items():
        assert f"  {status:<3} {meaning}" in EXIT_STATUSES
        assert re.search(rf"\b{status} ", " ".join(listed[1].split())), status
