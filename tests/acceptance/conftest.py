"""Fixtures for the Prometheus tools the metrics tests use (Debian's `prometheus` package)."""

from __future__ import annotations

import os
import shutil

import pytest


def _tool(name: str) -> str:
    """Path of `name`; missing fails in CI (which installs it) and skips elsewhere."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture
def promtool() -> str:
    """The `promtool` executable."""
    return _tool("promtool")


@pytest.fixture
def prometheus() -> str:
    """The Prometheus server executable."""
    return _tool("prometheus")
