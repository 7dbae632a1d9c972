from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from secautod.backup import (
    backup_name,
    list_backups,
    parse_backup_name,
    prune_backups,
    resolve_backup,
)
from secautod.errors import NotFoundError

TAKEN = datetime(2026, 1, 21, 10, 0, 5, tzinfo=UTC)


def test_backup_name_is_utc_stamp_with_sequence_after_the_first() -> None:
    """Names are jobs.db.backup.YYYYMMDD-HHMMSS in UTC, then -2, -3 within one second."""
    local = TAKEN.astimezone(timezone(timedelta(hours=5)))
    assert backup_name("jobs.db", local) == "jobs.db.backup.20260121-100005"
    assert backup_name("jobs.db", TAKEN, 2) == "jobs.db.backup.20260121-100005-2"


@pytest.mark.parametrize(
    "name",
    [
        "jobs.db",
        "jobs.db-wal",
        "jobs.db.backup.",
        "jobs.db.backup.2026-01-21",
        "jobs.db.backup.20261399-000000",
        "other.db.backup.20260121-100005",
        ".jobs.db.backup.20260121-100005.123.partial",
        "jobs.db.pre-restore-20260121-100005",
    ],
)
def test_parse_rejects_names_that_are_not_backups(name: str) -> None:
    """Only exact backup names of this database count as backups."""
    assert parse_backup_name("jobs.db", name) is None


def test_parse_round_trips_names() -> None:
    """A generated name parses back to its time and sequence."""
    assert parse_backup_name("jobs.db", backup_name("jobs.db", TAKEN, 3)) == (TAKEN, 3)


def make_files(directory: Path, names: list[str]) -> None:
    for name in names:
        (directory / name).write_bytes(b"x")


def test_list_orders_newest_first_including_sequences(tmp_path: Path) -> None:
    """Listing sorts by time then sequence (numerically, so -10 is after -9)."""
    make_files(
        tmp_path,
        [
            "jobs.db.backup.20260121-100005",
            "jobs.db.backup.20260121-100005-10",
            "jobs.db.backup.20260121-100005-9",
            "jobs.db.backup.20260120-000000",
            "jobs.db",
            "notes.txt",
        ],
    )
    names = [backup.path.name for backup in list_backups(tmp_path, "jobs.db")]
    assert names == [
        "jobs.db.backup.20260121-100005-10",
        "jobs.db.backup.20260121-100005-9",
        "jobs.db.backup.20260121-100005",
        "jobs.db.backup.20260120-000000",
    ]


def test_prune_keeps_newest_and_protected_and_ignores_other_files(tmp_path: Path) -> None:
    """Pruning deletes only surplus old backups, never the protected one or other files."""
    names = [f"jobs.db.backup.2026012{day}-000000" for day in range(1, 6)]
    make_files(tmp_path, [*names, "jobs.db", "unrelated.backup.20260101-000000"])
    protected = tmp_path / names[0]
    removed = prune_backups(tmp_path, "jobs.db", keep=2, protect=protected)
    assert sorted(path.name for path in removed) == sorted(names[1:3])
    left = sorted(path.name for path in tmp_path.iterdir())
    assert left == sorted(
        [names[0], names[3], names[4], "jobs.db", "unrelated.backup.20260101-000000"]
    )


def test_resolve_backup_defaults_to_newest_and_explains_absence(tmp_path: Path) -> None:
    """With no name the newest backup is chosen; a missing one is a clear NotFoundError."""
    with pytest.raises(NotFoundError, match=r"no backups of jobs\.db"):
        resolve_backup(None, tmp_path, "jobs.db")
    make_files(tmp_path, ["jobs.db.backup.20260120-000000", "jobs.db.backup.20260121-000000"])
    assert resolve_backup(None, tmp_path, "jobs.db").name == "jobs.db.backup.20260121-000000"
    named = resolve_backup("jobs.db.backup.20260120-000000", tmp_path, "jobs.db", Path("/"))
    assert named == tmp_path / "jobs.db.backup.20260120-000000"
    with pytest.raises(NotFoundError, match="'nope' not found"):
        resolve_backup("nope", tmp_path, "jobs.db", tmp_path)


def test_a_taken_pre_restore_name_gets_a_sequence_instead_of_being_overwritten(
    tmp_path: Path,
) -> None:
    """A second restore in the same second keeps its copy beside the first one, never over it."""
    from secautod.backup import pre_restore_name, unused_path

    name = pre_restore_name("test", datetime(2026, 12, 6, 18, 0, tzinfo=UTC))
    first = unused_path(tmp_path, name)
    first.write_text("the first restore's copy")
    second = unused_path(tmp_path, name)
    assert (first.name, second.name) == (name, f"{name}-2")
    assert first.read_text() == "the first restore's copy"
