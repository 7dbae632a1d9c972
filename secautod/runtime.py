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
    """Open the configured job store (PostgreSQL with `storage.url`); failures say what to do."""
    try:
        if config.storage.url is not None:
            password = config.storage.password
            return JobStore(
                config.storage.url,
                password=None if password is None else password.reveal(),
                synchronous=config.storage.synchronous,
                busy_timeout=config.storage.busy_timeout.total_seconds(),
                create=create,
                clock=clock,
                backup_directory=config.backup_directory,
            )
        return JobStore(
            config.database_path,
            synchronous=config.storage.synchronous,
            busy_timeout=config.storage.busy_timeout.total_seconds(),
            create=create,
            clock=clock,
        )
    except StoreCorruptError as exc:
        raise with_restore_hint(exc, config) from exc
