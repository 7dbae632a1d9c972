"""Fixtures for tests that run the real `secautod` executable."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import SECAUTOD, DaemonFactory


@pytest.fixture(scope="session", autouse=True)
def _installed_executable() -> None:
    if not Path(SECAUTOD).exists():
        pytest.fail(f"the secautod executable is not installed next to {sys.executable}")


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[DaemonFactory]:
    """Start real daemons; any still running at the end are killed."""
    factory = DaemonFactory(tmp_path)
    yield factory
    factory.cleanup()
