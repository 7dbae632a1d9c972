"""A directory secautod creates is synced into its parent, so a power loss cannot drop it."""

from __future__ import annotations

from pathlib import Path

import pytest

import secautod.files
from secautod.files import prepare_directory


def test_each_created_directory_is_synced_into_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Creating a/b/c syncs tmp_path, a and b (the parents of what was created), in order."""
    synced: list[Path] = []
    real = secautod.files.fsync_directory

    def recording(path: Path) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(secautod.files, "fsync_directory", recording)
    prepare_directory(tmp_path / "a" / "b" / "c")
    assert synced == [tmp_path, tmp_path / "a", tmp_path / "a" / "b"]
    synced.clear()
    prepare_directory(tmp_path / "a" / "b" / "c")  # exists: nothing to sync
    assert synced == []
