"""The storage layer: the only code that talks to a database driver.

`JobStore` is the boundary every backend implements (`base.py`); the
embedded SQLite backend lives in `sqlite/`. Outside this package nothing
imports `sqlite3` (ruff's banned-api rule enforces it).
"""

from secautod.store.base import (
    BACKUP_CHECKS,
    DEFAULT_BUSY_TIMEOUT_SECONDS,
    SYNCHRONOUS_LEVELS,
    BackupCheck,
    JobStore,
    SupervisorState,
    Synchronous,
)
from secautod.store.sqlite.restore import (
    RestoreResult,
    restore_database_file,
    verify_restore_source,
)
from secautod.store.sqlite.snapshot import verify_database_file

__all__ = [
    "BACKUP_CHECKS",
    "DEFAULT_BUSY_TIMEOUT_SECONDS",
    "SYNCHRONOUS_LEVELS",
    "BackupCheck",
    "JobStore",
    "RestoreResult",
    "SupervisorState",
    "Synchronous",
    "restore_database_file",
    "verify_database_file",
    "verify_restore_source",
]
