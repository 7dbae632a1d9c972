"""Opening the configured store, for the daemon and the CLI alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from secautod.backup import newest_backup
from secautod.config import Config
from secautod.errors import StoreCorruptError
from secautod.store import JobStore
from secautod.timestamps import utc_now


def open_store(
    config: Config, *, create: bool = True, clock: Callable[[], datetime] = utc_now
) -> JobStore:
    """Open the configured job store; a failure says which backup to restore and how."""
    try:
        return JobStore(
            config.database_path,
            synchronous=config.storage.synchronous,
            busy_timeout=config.storage.busy_timeout.total_seconds(),
            create=create,
            clock=clock,
        )
    except StoreCorruptError as exc:
        raise with_restore_hint(exc, config) from exc


def with_restore_hint(exc: StoreCorruptError, config: Config) -> StoreCorruptError:
    """Return `exc` with the restore hint appended (once).

    Only damage to the file itself calls for a restore: a busy, full or
    foreign-written store does not, and a restore would lose newer jobs.
    """
    if "secautod restore" in str(exc) or "No backup found" in str(exc):
        return exc
    return type(exc)(f"{exc}. {restore_hint(config)}")


def restore_hint(config: Config) -> str:
    """Name the newest backup and the command that restores it."""
    newest = newest_backup(config.backup_directory, config.database_path.name)
    if newest is None:
        return f"No backup found in {config.backup_directory}"
    return (
        f"Newest backup: {newest.path}; restore it with: "
        f"secautod restore --config {config.path} {newest.path.name}"
    )
