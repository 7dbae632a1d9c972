"""Fixtures for the deployment tests (systemd unit, container image, Debian package)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The deployment tests import their helpers as `deploy_support`.
sys.path.insert(0, str(Path(__file__).parent))

from deploy_support import NotifySocket


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    """A bound sd_notify socket in tmp_path, closed afterwards."""
    notify = NotifySocket(tmp_path)
    yield notify
    notify.close()
