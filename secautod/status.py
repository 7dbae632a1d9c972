"""`secautod status`: the state of one installation at a glance.

The report reads only files and the store, so it works with or without a
running daemon. While a daemon runs, the settings and the store check come
from the state it last published (`health.py`), not from a `config.yaml`
that may hold an edit it has not loaded; such an edit is only a note. Its
`problems` decide the exit status: 0 when there are none, 3 when something
needs attention, which makes it a health check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from secautod.backup import (
    BackupFile,
    future_backups,
    list_backups,
    newest_backup,
    recorded_verification,
    restore_hint,
)
from secautod.config import Config, redact_url
from secautod.health import DaemonState
from secautod.lock import holder_pid
from secautod.maintenance import BACKUP, first_run_time, task_intervals
from secautod.metrics import StoreCheck
from secautod.store import JobStore
from secautod.store.records import (
    Boot,
    LeaderRecord,
    OutboxSummary,
    SessionRecord,
    TaskRun,
    describe_problems,
)

# A task counts as overdue this long after it was due (runs take time).
OVERDUE_GRACE_FRACTION = 0.1
OVERDUE_GRACE_MIN = timedelta(minutes=10)
# The daemon republishes its state every metrics.refresh_seconds; this many
# refreshes (and at least STALE_MIN) without one mean its monitor is stuck.
STALE_REFRESHES = 4
STALE_MIN = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """One maintenance task's history and expected next run."""

    task: str
    interval: timedelta
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    next_run_at: datetime
    overdue: bool


@dataclass(frozen=True, slots=True)
class BackupStatus:
    """The newest backup on disk."""

    path: Path
    taken_at: datetime
    size_bytes: int
    verified: bool


@dataclass
class StatusReport:
    """Everything `secautod status` shows."""

    daemon_pid: int | None
    database: str  # the file, or the URL without its password
    database_bytes: int  # the file and its WAL, or secautod's tables in the server
    last_boot: Boot | None
    tasks: list[TaskStatus]
    newest_backup: BackupStatus | None
    outbox: list[OutboxSummary]
    sessions: list[SessionRecord] = field(default_factory=list)  # engine sessions alive
    store_check: StoreCheck | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # On a store several instances share (SPEC §11): who leads, and whether it is this one.
    elects_leader: bool = False
    leader: LeaderRecord | None = None
    leading_here: bool = False


def build_status(
    config: Config,
    store: JobStore,
    now: datetime,
    published: DaemonState | None = None,
    notes: list[str] | None = None,
) -> StatusReport:
    """Collect the status of the installation described by `config`.

    `published` is what the running daemon last published: `config` must
    then already carry its settings (`DaemonState.effective_config`).
    """
    pid = holder_pid(config.data_directory)
    boot = store.state.latest_boot()
    runs = store.state.task_runs()
    started = boot.started_at if boot is not None and pid is not None else None
    tasks = [
        _task_status(task, interval, runs.get(task), started, now)
        for task, interval in task_intervals(config).items()
    ]
    report = StatusReport(
        daemon_pid=pid,
        database=config.store_location,
        database_bytes=_store_bytes(store),
        last_boot=boot,
        tasks=tasks,
        newest_backup=_backup_status(
            store,
            newest_backup(
                config.backup_directory, store.path.name, recorded_verification(store), now
            ),
        ),
        outbox=store.state.outbox_summary(),
        sessions=[s for s in store.engine_sessions(include_ended=True) if s.alive],
        store_check=published.store_check if published is not None else None,
        notes=list(notes or []),
        elects_leader=store.elects_leader,
    )
    if store.elects_leader:
        report.leader = store.current_leader()
        report.leading_here = (
            published is not None
            and pid is not None
            and report.leader is not None
            and report.leader.current
            and report.leader.holder.instance_id == published.boot_id
        )
    report.problems = _problems(report, config, now)
    if published is not None:
        report.problems.extend(_publication_problems(published, now))
    for backup in future_backups(list_backups(config.backup_directory, store.path.name), now):
        report.problems.append(
            f"backup {backup.path.name} is dated in the future (a clock ran ahead, or it was "
            "copied in): it is never pruned nor restored by default; check it, then delete "
            "or rename it"
        )
    return report


def _task_status(
    task: str,
    interval: timedelta,
    run: TaskRun | None,
    daemon_started: datetime | None,
    now: datetime,
) -> TaskStatus:
    last = run.last_success_at if run is not None else None
    grace = max(interval * OVERDUE_GRACE_FRACTION, OVERDUE_GRACE_MIN)
    # Never run: it is due at daemon start, so it is only late once that start is old.
    reference = last + interval if last is not None else daemon_started
    overdue = reference is not None and now > reference + grace
    return TaskStatus(
        task=task,
        interval=interval,
        last_success_at=last,
        last_attempt_at=run.last_attempt_at if run is not None else None,
        last_error=run.last_error if run is not None else None,
        next_run_at=first_run_time(last, interval, now),
        overdue=overdue,
    )


def _backup_status(store: JobStore, newest: BackupFile | None) -> BackupStatus | None:
    if newest is None:
        return None
    record = store.state.backup_record(newest.path)
    verified = record is not None and record.integrity == "ok"
    return BackupStatus(newest.path, newest.taken_at, newest.size_bytes, verified)


def _problems(report: StatusReport, config: Config, now: datetime) -> list[str]:
    problems = []
    if report.daemon_pid is None:
        problems.append("no secautod daemon is running for this data directory")
    for task in report.tasks:
        if task.overdue:
            problems.append(
                f"{task.task} is overdue (last success: {task.last_success_at or 'never'})"
            )
        if task.last_error:  # cleared by the next success
            problems.append(f"last {task.task} attempt failed: {task.last_error}")
    # On a shared store the leader's host keeps the backup files; its record shows here.
    backups_here = not report.elects_leader or report.leading_here
    if (
        backups_here
        and any(task.task == BACKUP for task in report.tasks)
        and report.newest_backup is None
    ):
        problems.append("there is no backup yet")
    problems.extend(_leader_problems(report, config))
    late_after = config.webhook_delivery.late_after
    for summary in report.outbox:
        # One failed attempt is no trouble yet: the endpoint may be restarting.
        oldest = summary.oldest_created_at
        if oldest is not None and now - oldest > late_after:
            endpoint = redact_url(summary.endpoint)
            problems.append(
                f"{summary.count} webhook notification(s) waiting for {endpoint}, the oldest "
                f"for over {late_after.total_seconds():g} s "
                f"(after up to {summary.max_attempts} failed attempt(s))"
            )
    check = report.store_check
    if check is not None and not check.ok:
        problems.append(
            f"the store failed its check (PRAGMA quick_check) at {check.checked_at:%Y-%m-%d %H:%M} "
            f"UTC: {describe_problems(list(check.problems))}; {restore_hint(config)}"
        )
    return problems


def _leader_problems(report: StatusReport, config: Config) -> list[str]:
    """Report a shared store that nobody has led for longer than a standby needs to take over."""
    if not report.elects_leader:
        return []
    leader, lease = report.leader, config.storage.leader_lease
    if leader is None:
        return ["no secautod instance has ever led this store: nothing runs cleanup or backups"]
    if leader.remaining < -lease:
        return [
            f"no secautod instance leads this store: the lease of {leader.holder.describe()} "
            f"(term {leader.term}) ran out at {leader.expires_at:%Y-%m-%d %H:%M:%S} UTC; "
            f"cleanup, backups and lease-expiry recovery wait for a leader"
        ]
    return []


def _publication_problems(published: DaemonState, now: datetime) -> list[str]:
    stale_after = max(published.refresh * STALE_REFRESHES, STALE_MIN)
    if now - published.published_at > stale_after:
        return [
            f"the daemon has not published its state since "
            f"{published.published_at:%Y-%m-%d %H:%M:%S} UTC: its monitor thread may be stuck"
        ]
    return []


def _store_bytes(store: JobStore) -> int:
    size = store.store_size()
    return size.database_bytes + (size.wal_bytes or 0)
