"""Factories shared by every test layer."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from secautod import Job, JobStatus, JobStore

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)

StoreFactory = Callable[..., JobStore]
JobFactory = Callable[..., Job]


@pytest.fixture
def now() -> datetime:
    """A fixed aware-UTC instant to pass as `now`."""
    return NOW


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[StoreFactory]:
    """Open stores on real files under tmp_path; all are closed afterwards."""
    stores: list[JobStore] = []

    def factory(path: Path | None = None, **options: Any) -> JobStore:
        store = JobStore(path or tmp_path / "data" / "jobs.db", **options)
        stores.append(store)
        return store

    yield factory
    for store in stores:
        store.close()


@pytest.fixture
def make_job() -> JobFactory:
    """Build jobs with distinct ids, created one minute apart before NOW by default."""
    counter = itertools.count(1)

    def factory(**fields: Any) -> Job:
        number = next(counter)
        values: dict[str, Any] = {
            "id": f"job-{number:05d}",
            "status": JobStatus.PENDING,
            "playbook": {"name": "triage", "steps": [{"action": "enrich", "n": number}]},
            "context": {"alert_id": number, "source": "siem"},
            "created_at": NOW - timedelta(minutes=number),
        }
        values.update(fields)
        return Job(**values)

    return factory
