"""The long-running supervisor behind `secautod run`.

Start-up order (SPEC §3): lock the data directory, open the store, recover
interrupted jobs, schedule maintenance, start webhook delivery, report
READY. Signals are blocked in every thread and taken synchronously by the
main thread with `sigtimedwait`, so no work ever happens in a signal
handler, and it works the same as PID 1 in a container.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from secautod import __version__
from secautod.backup import with_restore_hint
from secautod.config import Config, load_config, redact_url
from secautod.errors import (
    EX_OK,
    EX_SOFTWARE,
    EX_UNEXPECTED,
    SecautodError,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
)
from secautod.files import prepare_directory
from secautod.jobs import JobStatus
from secautod.leadership import Leadership
from secautod.lock import DirectoryLock
from secautod.log import configure_logging, get_logger
from secautod.monitor import Monitor
from secautod.runtime import open_store
from secautod.scheduler import MaintenanceScheduler
from secautod.store import JobStore
from secautod.store.records import Boot, Candidate
from secautod.supervision import Supervisor
from secautod.systemd import Notifier
from secautod.timestamps import format_timestamp, utc_now
from secautod.webhooks import WebhookDispatcher

log = get_logger("secautod.daemon")

T = TypeVar("T")

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
HANDLED_SIGNALS = STOP_SIGNALS | {signal.SIGHUP}
# How long start-up keeps trying a write that engines keep waiting (`_patiently`).
START_BUSY_PATIENCE_SECONDS = 120.0
# Without a watchdog the main thread still wakes this often to notice clock jumps.
IDLE_TICK_SECONDS = 30.0


class Daemon:
    """One run of the supervisor, from lock to clean stop."""

    def __init__(
        self,
        config: Config,
        notifier: Notifier | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.boot_id = uuid.uuid4().hex[:16]
        self.stopped_cleanly = True
        self.monitor: Monitor | None = None
        self.leadership: Leadership | None = None

    def run(self) -> int:
        """Run until SIGTERM or SIGINT; return the exit status (0 on a clean stop)."""
        # Blocked before any thread starts, so every thread inherits the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        log.info(
            "daemon_starting",
            version=__version__,
            pid=os.getpid(),
            boot_id=self.boot_id,
            config=str(self.config.path),
        )
        prepare_directory(self.config.data_directory)
        try:
            with DirectoryLock(self.config.data_directory).acquire("start the daemon"):
                store = open_store(self.config, clock=self.clock)
                try:
                    return self._run_with_store(store)
                finally:
                    if self.stopped_cleanly:
                        store.close()
        except StoreCorruptError as exc:
            # Damage may only show once recovery reads the jobs, after the open.
            raise with_restore_hint(exc, self.config) from exc
        finally:
            self.notifier.close()

    # -- phases ------------------------------------------------------------------
    def _run_with_store(self, store: JobStore) -> int:
        log.info(
            "store_opened",
            path=self.config.store_location,
            schema_version=store.schema_version,
        )
        leadership = Leadership(
            store,
            Candidate(self.boot_id, socket.gethostname(), os.getpid()),
            self.config.storage.leader_lease,
            on_acquired=lambda: self._took_the_lead(workers),
            on_lost=lambda: self.notifier.status(self._status_line(store)),
        )
        self.leadership = leadership
        monitor = Monitor(
            store,
            self.config,
            self.boot_id,
            self.clock,
            on_store_check=lambda _check: self.notifier.status(self._status_line(store)),
            leadership=leadership,
        )
        monitor.bind()  # a metrics port that cannot be used stops start-up here
        self.monitor = monitor
        started_at = self.clock()
        # Recorded before recovery, so every recovered job names a boot that is on record.
        boot = Boot(self.boot_id, started_at, os.getpid(), __version__, recovered_jobs=0)
        with self.notifier.extending_timeout():
            _patiently("recording the daemon start", lambda: store.state.record_boot(boot))
        dispatcher = WebhookDispatcher(
            store,
            self.config.webhooks,
            self.config.webhook_delivery,
            self.clock,
            leading=leadership.leading,
        )
        supervisor = Supervisor(
            store,
            self.config,
            boot_id=self.boot_id,
            clock=self.clock,
            on_recovered=dispatcher.wake,
            leadership=leadership,
        )
        workers = _Workers(
            store,
            MaintenanceScheduler(
                store,
                self.config,
                self.clock,
                on_task_finished=lambda _task: self.notifier.status(self._status_line(store)),
                leadership=leadership,
            ),
            dispatcher,
            supervisor,
            monitor,
            leadership,
        )
        with self.notifier.extending_timeout():
            _patiently("claiming the leadership", leadership.start)
            recovered = _patiently("the start-up check", supervisor.check_at_start)
        workers.scheduler.start()
        try:
            workers.dispatcher.start()
            supervisor.start()
            monitor.start()
            self.notifier.ready(self._status_line(store))
            log.info(
                "daemon_ready",
                boot_id=self.boot_id,
                watchdog_interval_seconds=self.notifier.watchdog_interval,
                recovered_jobs=recovered,
            )
            if recovered:
                _checkpoint_recovery(store)
                try:
                    store.state.record_boot(replace(boot, recovered_jobs=recovered))
                except StoreError as exc:  # only the count; the boot itself is on record
                    log.warning("boot_record_failed", error=str(exc))
            signo = self._serve(workers)
        except BaseException:
            # Stop the workers before the store is closed under them.
            self.stopped_cleanly = self._stop_workers(workers)
            raise
        return self._shutdown(signo, workers)

    def _took_the_lead(self, workers: _Workers) -> None:
        """Pick up the leader's work: schedules from the stored runs, the outbox."""
        if workers.scheduler.running:  # else its start schedules from the stored runs
            workers.scheduler.resume()
        workers.dispatcher.wake()
        self.notifier.status(self._status_line(workers.store))

    def _serve(self, workers: _Workers) -> int:
        """Wait for signals, reload on SIGHUP, tick the watchdog; return the stop signal."""
        tick = self.notifier.watchdog_interval or IDLE_TICK_SECONDS
        next_tick = time.monotonic() + tick
        while True:
            info = signal.sigtimedwait(HANDLED_SIGNALS, max(0.0, next_tick - time.monotonic()))
            if info is not None and info.si_signo in STOP_SIGNALS:
                return info.si_signo
            if info is not None:
                self._reload(workers)
            if time.monotonic() >= next_tick:
                self._tick(workers)
                next_tick = time.monotonic() + tick

    def _tick(self, workers: _Workers) -> None:
        try:
            workers.scheduler.check_clock()
        except SecautodError as exc:  # rescheduling reads the store; try again next tick
            log.error("clock_check_failed", error=str(exc))
        if self.notifier.watchdog_interval is None:
            return
        problem = workers.health_problem()
        if problem is None:
            self.notifier.watchdog()
        else:
            log.error("watchdog_withheld", reason=problem)

    def _reload(self, workers: _Workers) -> None:
        self.notifier.reloading()
        log.info("reload_started", config=str(self.config.path))
        try:
            new = load_config(self.config.path)
            restart_required = _restart_required(self.config, new)
            # What cannot change under a running store stays as it was until a restart.
            new = replace(
                new, data_directory=self.config.data_directory, storage=self.config.storage
            )
            workers.scheduler.apply(new)  # reads the store before changing anything
        except Exception as exc:  # whatever went wrong, the running daemon carries on
            log.error(
                "reload_failed",
                error=str(exc),
                error_type=type(exc).__name__,
                kept="previous configuration",
            )
            self.notifier.ready(self._status_line(workers.store))
            return
        configure_logging(new.logging.level, new.logging.format)
        workers.dispatcher.update(new.webhooks, new.webhook_delivery)
        workers.supervisor.config = new
        workers.monitor.apply(new)
        self.config = new
        log.info(
            "reload_completed",
            restart_required=restart_required,
            webhooks=[redact_url(webhook.url) for webhook in new.webhooks],
        )
        self.notifier.ready(self._status_line(workers.store))

    def _shutdown(self, signo: int, workers: _Workers) -> int:
        started = time.monotonic()
        deadline = started + self.config.shutdown_timeout.total_seconds()
        self.notifier.stopping()
        log.info("shutdown_started", signal=signal.Signals(signo).name)
        with self.notifier.extending_timeout():
            self.stopped_cleanly = self._stop_workers(workers, deadline)
        log.info(
            "shutdown_completed",
            signal=signal.Signals(signo).name,
            duration_ms=round((time.monotonic() - started) * 1000),
        )
        return EX_OK if self.stopped_cleanly else EX_SOFTWARE

    def _stop_workers(self, workers: _Workers, deadline: float | None = None) -> bool:
        """Stop supervision, maintenance and delivery by `deadline`; True if all ended."""
        if deadline is None:
            deadline = time.monotonic() + self.config.shutdown_timeout.total_seconds()
        stopped = {
            "supervision": workers.supervisor.stop(max(0.0, deadline - time.monotonic())),
            "monitor": workers.monitor.stop(max(0.0, deadline - time.monotonic())),
            "maintenance": workers.scheduler.shutdown(max(0.0, deadline - time.monotonic())),
            "webhooks": workers.dispatcher.stop(max(0.0, deadline - time.monotonic())),
            # Last: the lease is released once no maintenance write can follow.
            "leadership": workers.leadership.stop(max(0.0, deadline - time.monotonic())),
        }
        left = [name for name, done in stopped.items() if not done]
        if left:
            # A thread still inside SQLite must not have its connection closed
            # under it; SQLite's journal makes simply exiting safe.
            log.warning(
                "shutdown_deadline_exceeded",
                threads_left=left,
                maintenance_stopped=stopped["maintenance"],
                webhooks_stopped=stopped["webhooks"],
            )
        return not left

    def _status_line(self, store: JobStore) -> str:
        try:
            stats = store.get_stats()
            runs = store.state.task_runs()
        except SecautodError as exc:
            return f"running; store unreadable: {exc}"
        backup = runs.get("backup")
        last_backup = (
            format_timestamp(backup.last_success_at)[:16] + " UTC"
            if backup is not None and backup.last_success_at is not None
            else "never"
        )
        counts = stats.by_status
        check = self.monitor.store_check if self.monitor is not None else None
        damaged = "STORE DAMAGED (see secautod status); " if check and not check.ok else ""
        leadership = self.leadership
        role = ""
        if leadership is not None and leadership.elected:
            term = leadership.term
            role = f"leader (term {term}); " if leadership.leading() else "standby; "
        return (
            f"{damaged}{role}{stats.total} jobs ({counts[JobStatus.PENDING]} pending, "
            f"{counts[JobStatus.RUNNING]} running); "
            f"last backup {last_backup}"
        )


def _patiently(step: str, action: Callable[[], T]) -> T:
    """Run a start-up step, trying again while engines keep the write lock busy.

    SQLite's busy handler is not fair: an engine committing back to back can
    hold a waiting writer off for longer than its busy timeout. At start-up
    that must not end the daemon, so the step is tried again for up to
    `START_BUSY_PATIENCE_SECONDS`, each failure logged.
    """
    give_up = time.monotonic() + START_BUSY_PATIENCE_SECONDS
    while True:
        try:
            return action()
        except StoreBusyError as exc:
            if time.monotonic() >= give_up:
                raise
            log.warning("store_busy_at_start", step=step, error=str(exc))


def _checkpoint_recovery(store: JobStore) -> None:
    """Fold the recovery's WAL into the database file, now that systemd has READY=1.

    Recovery commits without its checkpoint so start-up does not wait for it
    (the boot record, written after this, would otherwise take it on); left
    to the engine, the copy would land in one of its commits.
    """
    started = time.monotonic()
    try:
        frames_left = store.checkpoint()
    except StoreError as exc:
        log.warning("checkpoint_failed", error=str(exc))
        return
    log.info(
        "checkpoint_completed",
        frames_left=frames_left,
        duration_ms=round((time.monotonic() - started) * 1000),
    )


@dataclass(frozen=True, slots=True)
class _Workers:
    """The store and the background workers the daemon runs on it."""

    store: JobStore
    scheduler: MaintenanceScheduler
    dispatcher: WebhookDispatcher
    supervisor: Supervisor
    monitor: Monitor
    leadership: Leadership

    def health_problem(self) -> str | None:
        """Return why the daemon is unhealthy, or None when all parts answer."""
        if not self.scheduler.healthy():
            return "the maintenance scheduler thread is not running"
        if not self.dispatcher.healthy():
            return "the webhook delivery thread is not running"
        if not self.supervisor.healthy():
            return "the supervision thread is not running"
        if not self.monitor.healthy():
            return "the monitor thread (metrics, store check) is not running"
        if not self.leadership.healthy():
            return "the leader election thread is not running"
        try:
            self.store.ping()
        except SecautodError as exc:
            return f"the database does not answer: {exc}"
        return None


def _restart_required(old: Config, new: Config) -> list[str]:
    """Name the changed settings a reload cannot apply."""
    changed = []
    if new.data_directory != old.data_directory:
        changed.append("data_directory")
    if new.storage != old.storage:
        changed.append("storage")
    return changed


def run_daemon(config: Config) -> int:
    """Configure logging and run the daemon with `config`; return the exit status.

    A failure is logged here, once, as an event (stderr stays one JSON
    object per line); the caller only exits with the status.
    """
    configure_logging(config.logging.level, config.logging.format)
    log.info(
        "config_loaded",
        path=str(config.path),
        data_directory=str(config.data_directory),
        webhooks=len(config.webhooks),
    )
    daemon = Daemon(config)
    try:
        status = daemon.run()
    except SecautodError as exc:
        log.error("daemon_failed", error=str(exc), exit_status=exc.exit_status)
        status = exc.exit_status
    except Exception:
        log.exception("daemon_crashed", exit_status=EX_UNEXPECTED)
        status = EX_UNEXPECTED
    if not daemon.stopped_cleanly:
        # Worker threads that ignored the deadline would otherwise keep the
        # interpreter from exiting; SQLite's journal makes simply exiting safe.
        status = status or EX_SOFTWARE
        log.error("shutdown_incomplete", exit_status=status)
        logging.shutdown()
        os._exit(status)
    return status
