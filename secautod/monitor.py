"""The daemon's monitor thread: figures for the metrics, the store check, the published state.

Every `metrics.refresh_seconds` it reads the figures from the store (a few
cheap queries), hands them to the metrics collector, rewrites the textfile
and republishes the daemon state for `secautod status`. At start-up and
every `jobs.check_interval` it runs `PRAGMA quick_check` on the live store.
A scrape therefore never waits for the store.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime

from secautod.backup import newest_backup
from secautod.config import Config, redact_url
from secautod.errors import SecautodError
from secautod.exporter import MetricsServer, format_address, write_textfile
from secautod.health import check_store, config_digest, daemon_state, publish_state
from secautod.leadership import Leadership
from secautod.log import get_logger
from secautod.maintenance import TASKS, task_intervals
from secautod.metrics import (
    STORE_CHECK,
    Figures,
    FiguresCollector,
    StoreCheck,
    build_registry,
    record_task_failure,
    register_task,
)
from secautod.store import JobStore

log = get_logger("secautod.monitor")


class Monitor:
    """Keeps the metrics, the store check and the published state fresh."""

    def __init__(
        self,
        store: JobStore,
        config: Config,
        boot_id: str,
        clock: Callable[[], datetime],
        on_store_check: Callable[[StoreCheck], None] | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self._store = store
        self._leadership = leadership
        self._config = config
        self._boot_id = boot_id
        self._clock = clock
        self._on_store_check = on_store_check
        self._config_sha256 = config_digest(config.path)
        self._collector = FiguresCollector()
        self.registry = build_registry(self._collector)
        self._server: MetricsServer | None = None
        self.store_check: StoreCheck | None = None
        self._check_due = 0.0  # monotonic; at once
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="monitor", daemon=True)
        for task in (*TASKS, STORE_CHECK):
            register_task(task)

    def bind(self) -> None:
        """Bind `metrics.listen`, if set; a `ConfigError` names an address that cannot be used."""
        if self._config.metrics.listen is not None:
            self._server = MetricsServer(self._config.metrics.listen, self.registry)

    def start(self) -> None:
        """Publish the daemon state, then serve and refresh in the background."""
        self._publish()
        if self._server is not None:
            self._server.start()
        self._thread.start()

    def apply(self, config: Config) -> None:
        """Adopt a reloaded config: a new listen address is bound, the rest applies at once.

        If the new address cannot be bound, the old listener stays and the
        failure is logged; the rest of the reload still applies.
        """
        old = self._config.metrics.listen
        self._config = config
        self._config_sha256 = config_digest(config.path)
        if config.metrics.listen != old:
            self._rebind(config.metrics.listen)
        self._wake.set()

    def healthy(self) -> bool:
        """Tell whether the monitor thread is alive (or not started yet)."""
        return self._thread.is_alive() or not self._thread.ident

    def stop(self, timeout: float) -> bool:
        """Stop refreshing and serving; True if the thread ended within `timeout`."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._server is not None:
            self._server.close()
        return not self._thread.is_alive()

    # -- internals -----------------------------------------------------------------
    def _rebind(self, address: tuple[str, int] | None) -> None:
        old = self._server
        if old is not None:
            old.close()  # first, so the same port on another address can be taken
            self._server = None
        if address is None:
            log.info("metrics_listener_closed")
            return
        try:
            server = MetricsServer(address, self.registry)
        except SecautodError as exc:
            log.error("metrics_listen_failed", error=str(exc), listen=format_address(address))
            if old is not None:
                with suppress(SecautodError):
                    self._server = MetricsServer(old.address, self.registry)
                    self._server.start()
            return
        server.start()
        self._server = server

    def _loop(self) -> None:
        while not self._stop.is_set():
            refresh = self._config.metrics.refresh.total_seconds()
            if time.monotonic() >= self._check_due:
                self._check_due = (
                    time.monotonic() + self._config.jobs.check_interval.total_seconds()
                )
                self._run_store_check()
            self._refresh()
            self._wake.wait(max(0.05, min(refresh, self._check_due - time.monotonic())))
            self._wake.clear()

    def _run_store_check(self) -> None:
        now = self._clock()
        check = check_store(self._store, self._config, now)
        self.store_check = check
        # Remembered like a maintenance run; on a damaged file the write may fail too.
        with suppress(SecautodError):
            if check.ok:
                duration_ms = round(check.duration_seconds * 1000)
                self._store.state.record_task_success(
                    STORE_CHECK, now, {"duration_ms": duration_ms}
                )
            else:
                self._store.state.record_task_failure(
                    STORE_CHECK, now, "; ".join(check.problems[:3])
                )
        if not check.ok:
            record_task_failure(STORE_CHECK)
        if self._on_store_check is not None:
            self._on_store_check(check)

    def _refresh(self) -> None:
        metrics = self._config.metrics
        # Nobody reads the figures without a listener or a textfile: an idle
        # daemon then spends nothing on them (the count of a million jobs).
        if metrics.listen is not None or metrics.textfile is not None:
            try:
                figures = read_figures(
                    self._store, self._config, self._clock(), self.store_check, self._leadership
                )
            except SecautodError as exc:  # the last figures stay; their timestamp shows their age
                log.warning("metrics_refresh_failed", error=str(exc))
                # Except whether this instance leads: its own state, known without the
                # store. A leader cut off from the database must not go on showing 1.
                if self._leadership is not None:
                    self._collector.update_leading(self._leadership.leading())
            else:
                self._collector.update(figures)
        textfile = self._config.metrics.textfile
        if textfile is not None:
            try:
                write_textfile(textfile, self.registry)
            except OSError as exc:
                log.warning("metrics_textfile_failed", path=str(textfile), error=str(exc))
        self._publish()

    def _publish(self) -> None:
        state = daemon_state(
            self._config,
            os.getpid(),
            self._boot_id,
            self._clock(),
            self._config_sha256,
            self.store_check,
        )
        try:
            publish_state(self._config.data_directory, state)
        except OSError as exc:
            log.warning("daemon_state_not_published", error=str(exc))


def read_figures(
    store: JobStore,
    config: Config,
    now: datetime,
    store_check: StoreCheck | None,
    leadership: Leadership | None = None,
) -> Figures:
    """Read every figure the metrics show, with a few cheap queries and file stats."""
    started = time.monotonic()
    leader = store.current_leader()
    jobs = store.job_figures()
    runs = store.state.task_runs()
    outbox = {
        redact_url(summary.endpoint): (summary.count, _age(summary.oldest_created_at, now))
        for summary in store.state.outbox_summary()
    }
    sessions = store.state.engine_sessions_alive()
    try:
        backup = newest_backup(config.backup_directory, store.path.name)
    except OSError:  # the backup task reports an unusable directory
        backup = None
    intervals = {task: every.total_seconds() for task, every in task_intervals(config).items()}
    intervals[STORE_CHECK] = config.jobs.check_interval.total_seconds()
    size = store.store_size()
    return Figures(
        read_at=now,
        read_seconds=time.monotonic() - started,
        jobs_by_status=jobs.by_status,
        oldest_pending_age_seconds=_age(jobs.oldest_pending_created_at, now),
        longest_running_age_seconds=_age(jobs.oldest_running_started_at, now),
        task_intervals=intervals,
        task_runs=runs,
        outbox=outbox,
        database_bytes=size.database_bytes,
        wal_bytes=size.wal_bytes,
        newest_backup_bytes=backup.size_bytes if backup is not None else 0,
        engine_sessions=sessions,
        store_check=store_check,
        leading=leadership is None or leadership.leading(),
        leader_term=leader.term if leader is not None and leader.current else 0,
    )


def _age(since: datetime | None, now: datetime) -> float:
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())
