"""The suite's own rule: a test that cannot run skips outside CI and fails in CI."""

from __future__ import annotations

import pytest
from harness import require


def test_require_lets_the_test_run_when_the_condition_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """require(True, ...) returns, in CI and outside it."""
    for value in ("true", ""):
        monkeypatch.setenv("CI", value)
        require(True, "never said")


def test_require_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CI set, a missing component skips the test with the reason."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no podman here"):
        require(False, "no podman here")


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_require_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """With CI set (as .ci/run runs), a missing component fails the test instead of skipping it."""
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="cannot run in CI: no podman here"):
        require(False, "no podman here")
