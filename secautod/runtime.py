"""Opening the configured store, for the daemon and the CLI alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from secautod.backup import with_restore_hint
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
