"""Backups: ordered by what secautod recorded, future-dated ones set apart, names never reused."""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from secautod.backup import (
    list_backups,
    prune_backups,
    publish_backup,
    resolve_backup,
)
from secautod.errors import NotFoundError
from secautod.files import rename_no_replace

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
FUTURE = "jobs.db.backup.20991231-235959"


def make_files(directory: Path, names: list[str]) -> None:
    for name in names:
        (directory / name).write_bytes(b"x")


def test_a_future_dated_backup_is_never_chosen_by_default(tmp_path: Path) -> None:
    """`restore` with no name takes the newest backup not from the future."""
    make_files(tmp_path, [FUTURE, "jobs.db.backup.20261121-000000"])
    chosen = resolve_backup(None, tmp_path, "jobs.db", now=NOW)
    assert chosen.name == "jobs.db.backup.20261121-000000"


def test_only_future_dated_backups_are_refused_with_their_names(tmp_path: Path) -> None:
    """With nothing but a future-dated backup, restore asks for it by name instead of taking it."""
    make_files(tmp_path, [FUTURE])
    with pytest.raises(NotFoundError, match="dated in the future"):
        resolve_backup(None, tmp_path, "jobs.db", now=NOW)
    assert resolve_backup(FUTURE, tmp_path, "jobs.db", tmp_path, now=NOW).name == FUTURE


def test_a_future_dated_backup_takes_no_keep_slot_and_is_not_deleted(tmp_path: Path) -> None:
    """Pruning keeps the newest real backups and leaves the future-dated file alone."""
    names = [f"jobs.db.backup.2026112{day}-000000" for day in range(3)]
    make_files(tmp_path, [FUTURE, *names])
    removed = prune_backups(tmp_path, "jobs.db", keep=1, now=NOW)
    assert sorted(path.name for path in removed) == names[:2]
    assert sorted(path.name for path in tmp_path.iterdir()) == [names[2], FUTURE]


def test_backups_are_ordered_by_their_recorded_verification(tmp_path: Path) -> None:
    """A file named later than it was verified sorts by when secautod verified it."""
    make_files(tmp_path, ["jobs.db.backup.20261122-110000", "jobs.db.backup.20261122-100000"])
    recorded = {"jobs.db.backup.20261122-110000": NOW - timedelta(days=3)}
    backups = list_backups(tmp_path, "jobs.db", lambda path: recorded.get(path.name))
    assert [backup.path.name for backup in backups] == [
        "jobs.db.backup.20261122-100000",
        "jobs.db.backup.20261122-110000",
    ]


def test_names_freed_by_pruning_are_not_reused_within_one_second(tmp_path: Path) -> None:
    """keep=1, three backups in one second: T, T-2, T-3 (never T again, sorting oldest)."""
    published = []
    for number in range(3):
        partial = tmp_path / f".partial-{number}"
        partial.write_bytes(b"x")
        final = publish_backup(partial, tmp_path, "jobs.db", NOW)
        published.append(final.name)
        prune_backups(tmp_path, "jobs.db", keep=1, protect=final, now=NOW)
    assert published == [
        "jobs.db.backup.20261122-120000",
        "jobs.db.backup.20261122-120000-2",
        "jobs.db.backup.20261122-120000-3",
    ]
    assert [backup.path.name for backup in list_backups(tmp_path, "jobs.db")] == [published[2]]


def refuse_hard_links(source: Path, target: Path) -> None:
    """What link(2) answers on exFAT, vfat and many SMB/FUSE mounts."""
    raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))


def test_without_hard_links_publishing_renames_without_replacing(tmp_path: Path) -> None:
    """EPERM from link(2) falls back to a rename that never replaces an existing backup."""
    make_files(tmp_path, ["jobs.db.backup.20261122-120000"])
    partial = tmp_path / ".partial"
    partial.write_bytes(b"new")
    partial.chmod(0o600)
    with capture_logs() as logs:
        final = publish_backup(partial, tmp_path, "jobs.db", NOW, link=refuse_hard_links)
    assert final.name == "jobs.db.backup.20261122-120000-2"
    assert final.read_bytes() == b"new"
    assert (tmp_path / "jobs.db.backup.20261122-120000").read_bytes() == b"x"
    assert not partial.exists()
    assert [event["event"] for event in logs] == ["backup_directory_without_hard_links"]


def test_rename_no_replace_refuses_an_existing_target(tmp_path: Path) -> None:
    """The fallback rename raises FileExistsError rather than replacing a file."""
    make_files(tmp_path, ["a", "b"])
    with pytest.raises(FileExistsError):
        rename_no_replace(tmp_path / "a", tmp_path / "b")
    rename_no_replace(tmp_path / "a", tmp_path / "c")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["b", "c"]


def test_a_backup_the_file_system_leaves_group_readable_is_warned_about(tmp_path: Path) -> None:
    """A published backup with group or other permissions (vfat shows 0777) logs a warning."""
    partial = tmp_path / ".partial"
    partial.write_bytes(b"x")
    partial.chmod(0o777)  # what a file system without permissions reports
    with capture_logs() as logs:
        publish_backup(partial, tmp_path, "jobs.db", NOW)
    (warning,) = [event for event in logs if event["event"] == "backup_not_owner_only"]
    assert warning["mode"] == "0777"
