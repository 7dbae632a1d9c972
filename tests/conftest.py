"""Factories shared by every test layer."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from secautod import Job, JobStatus, JobStore

# Tests import the shared helpers in tests/harness.py as `harness`.
sys.path.insert(0, str(Path(__file__).parent))

from harness import require

# The session's start, so data made relative to it stays "recent" to a daemon
# that cleans up by the real clock; tests that assert literal dates use their own.
NOW = datetime.now(UTC).replace(microsecond=0)

StoreFactory = Callable[..., JobStore]
JobFactory = Callable[..., Job]


@pytest.fixture
def now() -> datetime:
    """The session's fixed aware-UTC start instant, to pass as `now`."""
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


@pytest.fixture
def small_tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """Mount a small tmpfs at a folder (root only) to make a real disk-full condition."""
    mounted: list[Path] = []

    def mount(where: Path, size: str, options: str = "") -> Path:
        where.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700{options}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        require(
            result.returncode == 0,
            f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {result.stderr.strip()}",
        )
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def small_tmpfs_ro(tmp_path: Path, small_tmpfs: Callable[..., Path]) -> Path:
    """An empty read-only filesystem (a tmpfs mounted ro)."""
    return small_tmpfs(tmp_path / "readonly", "1m", ",ro")


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI, prove the suite tests the installed package, not the source tree."""
    import os

    import secautod

    if os.environ.get("CI") and "site-packages" not in secautod.__file__:
        raise pytest.UsageError(f"CI must test the installed package, not {secautod.__file__}")


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Any]:
    """Start real `secautod run` processes; any still running at the end are killed."""
    from harness import SECAUTOD, DaemonFactory

    if not Path(SECAUTOD).exists():
        pytest.fail(f"the secautod executable is not installed at {SECAUTOD}")
    factory = DaemonFactory(tmp_path)
    yield factory
    factory.cleanup()
