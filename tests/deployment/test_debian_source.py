"""packaging/debian, read without building (the build itself is in test_debian.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from deploy_support import REPO, SYSUSERS, TMPFILES, UNIT

import secautod

DEBIAN = REPO / "packaging" / "debian"


def test_changelog_version_is_the_package_version() -> None:
    """debian/changelog's newest entry carries secautod.__version__, so the .deb is named for it."""
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    assert re.match(rf"secautod \({re.escape(secautod.__version__)}(-\d+)?\) ", first), first


@pytest.mark.parametrize(
    ("name", "target"),
    [("secautod.service", UNIT), ("secautod.sysusers", SYSUSERS), ("secautod.tmpfiles", TMPFILES)],
)
def test_debhelper_files_are_those_of_the_systemd_directory(name: str, target: Path) -> None:
    """The unit, sysusers and tmpfiles files debhelper installs are the ones in systemd/, not copies."""
    assert (DEBIAN / name).resolve() == target


def test_builds_with_debians_own_python_libraries() -> None:
    """Build-Depends names the distribution's python3 packages the build-time smoke test imports."""
    control = (DEBIAN / "control").read_text()
    build_depends = re.search(r"^Build-Depends:(.*?)^\S", control, re.MULTILINE | re.DOTALL)
    assert build_depends
    names = {item.split()[0] for item in build_depends[1].split(",") if item.strip()}
    assert {"python3-apscheduler", "python3-structlog", "python3-yaml", "python3-sdnotify"} <= names
    assert {"dh-sequence-python3", "pybuild-plugin-pyproject"} <= names
