"""The daemon's own account of its health: the store check and the state it publishes.

The running daemon writes `daemon-state.json` in the data directory
(atomically, owner-only) at start-up, after each store check and every
metrics refresh: its pid and boot, the settings it actually runs with, the
digest of the config file it loaded, and the last `PRAGMA quick_check`.
`secautod status` reads this instead of trusting `config.yaml`, which may
hold an edit the daemon has not loaded yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from secautod.backup import restore_hint
from secautod.config import Config
from secautod.errors import SecautodError
from secautod.files import DATABASE_FILE_MODE
from secautod.lock import holder_pid
from secautod.log import get_logger
from secautod.metrics import StoreCheck
from secautod.store import JobStore
from secautod.store.records import describe_problems
from secautod.timestamps import isoformat_utc, parse_timestamp

log = get_logger("secautod.health")

STATE_FILE_NAME = "daemon-state.json"
STATE_FORMAT = 1


def check_store(store: JobStore, config: Config, now: datetime) -> StoreCheck:
    """Run `PRAGMA quick_check` on the live store; log damage at error with the restore command."""
    started = time.monotonic()
    try:
        problems = tuple(store.quick_check())
    except SecautodError as exc:  # a check that cannot even read the file found damage too
        problems = (str(exc),)
    check = StoreCheck(now, problems, time.monotonic() - started)
    if check.ok:
        log.info(
            "store_check_completed",
            result="ok",
            duration_ms=round(check.duration_seconds * 1000),
        )
    else:
        log.error(
            "store_check_failed",
            path=str(store.path),
            problems=describe_problems(list(problems)),
            duration_ms=round(check.duration_seconds * 1000),
            restore=restore_hint(config),
        )
    return check


def config_digest(path: Path) -> str | None:
    """Return the SHA-256 of the config file's bytes (None if it cannot be read)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class DaemonState:
    """What the running daemon last published about itself."""

    pid: int
    boot_id: str
    published_at: datetime
    config_path: Path
    config_sha256: str | None
    # The settings `status` needs, as the daemon runs with them.
    database_file: str
    backup_directory: Path
    cleanup_interval: timedelta
    backup_interval: timedelta | None  # None: backups are off
    check_interval: timedelta
    late_after: timedelta
    refresh: timedelta
    store_check: StoreCheck | None

    def effective_config(self, base: Config) -> Config:
        """Return `base` with the settings the daemon runs with in place of the file's."""
        jobs = replace(
            base.jobs,
            cleanup_interval=self.cleanup_interval,
            backup_enabled=self.backup_interval is not None,
            backup_interval=self.backup_interval or base.jobs.backup_interval,
            backup_directory=self.backup_directory,
            check_interval=self.check_interval,
        )
        return replace(
            base,
            storage=replace(base.storage, database_file=self.database_file),
            jobs=jobs,
            webhook_delivery=replace(base.webhook_delivery, late_after=self.late_after),
            metrics=replace(base.metrics, refresh=self.refresh),
        )


def daemon_state(
    config: Config,
    pid: int,
    boot_id: str,
    now: datetime,
    config_sha256: str | None,
    store_check: StoreCheck | None,
) -> DaemonState:
    """Describe the daemon running with `config`."""
    jobs = config.jobs
    return DaemonState(
        pid=pid,
        boot_id=boot_id,
        published_at=now,
        config_path=config.path,
        config_sha256=config_sha256,
        database_file=config.storage.database_file,
        backup_directory=config.backup_directory,
        cleanup_interval=jobs.cleanup_interval,
        backup_interval=jobs.backup_interval if jobs.backup_enabled else None,
        check_interval=jobs.check_interval,
        late_after=config.webhook_delivery.late_after,
        refresh=config.metrics.refresh,
        store_check=store_check,
    )


def publish_state(directory: Path, state: DaemonState) -> None:
    """Write `state` to the data directory atomically, readable by its owner only."""
    check = state.store_check
    document: dict[str, Any] = {
        "format": STATE_FORMAT,
        "pid": state.pid,
        "boot_id": state.boot_id,
        "published_at": isoformat_utc(state.published_at),
        "config": {"path": str(state.config_path), "sha256": state.config_sha256},
        "settings": {
            "database_file": state.database_file,
            "backup_directory": str(state.backup_directory),
            "cleanup_interval_seconds": state.cleanup_interval.total_seconds(),
            "backup_interval_seconds": None
            if state.backup_interval is None
            else state.backup_interval.total_seconds(),
            "check_interval_seconds": state.check_interval.total_seconds(),
            "webhook_late_after_seconds": state.late_after.total_seconds(),
            "refresh_seconds": state.refresh.total_seconds(),
        },
        "store_check": None
        if check is None
        else {
            "checked_at": isoformat_utc(check.checked_at),
            "ok": check.ok,
            "problems": list(check.problems),
            "duration_seconds": check.duration_seconds,
        },
    }
    path = directory / STATE_FILE_NAME
    partial = directory / f".{STATE_FILE_NAME}.tmp"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, DATABASE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=1)
    os.replace(partial, path)


def read_state(directory: Path) -> DaemonState | None:
    """Return the state the daemon last published in `directory` (None if none or unreadable)."""
    try:
        document = json.loads((directory / STATE_FILE_NAME).read_text(encoding="utf-8"))
        if document.get("format") != STATE_FORMAT:
            return None
        return _state_from(document)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def running_daemon_state(directory: Path) -> DaemonState | None:
    """Return what the daemon now holding `directory`'s lock published, if it did."""
    pid = holder_pid(directory)
    state = read_state(directory) if pid is not None else None
    if state is None or pid not in (0, state.pid):
        return None  # published by an earlier daemon, or by none
    return state


def _state_from(document: dict[str, Any]) -> DaemonState:
    settings = document["settings"]
    check = document["store_check"]
    backup = settings["backup_interval_seconds"]
    return DaemonState(
        pid=int(document["pid"]),
        boot_id=str(document["boot_id"]),
        published_at=_time(document["published_at"]),
        config_path=Path(document["config"]["path"]),
        config_sha256=document["config"]["sha256"],
        database_file=str(settings["database_file"]),
        backup_directory=Path(settings["backup_directory"]),
        cleanup_interval=timedelta(seconds=settings["cleanup_interval_seconds"]),
        backup_interval=None if backup is None else timedelta(seconds=backup),
        check_interval=timedelta(seconds=settings["check_interval_seconds"]),
        late_after=timedelta(seconds=settings["webhook_late_after_seconds"]),
        refresh=timedelta(seconds=settings["refresh_seconds"]),
        store_check=None
        if check is None
        else StoreCheck(
            _time(check["checked_at"]), tuple(check["problems"]), check["duration_seconds"]
        ),
    )


def _time(text: str) -> datetime:
    moment = parse_timestamp(text)
    if moment is None:
        raise ValueError(f"not a time: {text!r}")
    return moment
