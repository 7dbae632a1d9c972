"""Prometheus metrics: the families, the events counted, and the figures read in the background.

Every name is declared here once, under `secautod_`, in base units
(seconds, bytes) with `_total` on counters. Two kinds of values feed them:

- *events* (jobs recovered or deleted, task failures, webhook deliveries)
  are counted as they happen by the module-level `record_*` functions;
- *figures* (jobs per status, oldest waits, maintenance history, outbox,
  file sizes, store check) are read from the store by the daemon's monitor
  thread (`monitor.py`) every `metrics.refresh_seconds`.

A scrape only renders the last `Figures` it was given (`FiguresCollector`),
so it never runs a query, however many jobs there are.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from secautod import __version__
from secautod.jobs import JobStatus
from secautod.reasons import REASONS
from secautod.store.records import TaskRun

PREFIX = "secautod"
DELIVERED = "delivered"
FAILED = "failed"
DELIVERY_RESULTS = (DELIVERED, FAILED)
# The store check is reported beside cleanup and backup, as one more task.
STORE_CHECK = "check"


# -- events: counted as they happen, in this process ---------------------------------
class _Events:
    """The counters of things that happen; one set per process."""

    def __init__(self) -> None:
        self.recovered = Counter(
            f"{PREFIX}_jobs_recovered",
            "Jobs failed by recovery because the process running them was gone, per reason.",
            ["reason"],
            registry=None,
        )
        self.deleted = Counter(
            f"{PREFIX}_jobs_deleted",
            "Finished jobs deleted by retention cleanup.",
            registry=None,
        )
        self.task_failures = Counter(
            f"{PREFIX}_maintenance_failures",
            "Maintenance task runs that failed, per task.",
            ["task"],
            registry=None,
        )
        self.deliveries = Counter(
            f"{PREFIX}_webhook_deliveries",
            "Webhook delivery attempts, per result (delivered: a 2xx answer).",
            ["result"],
            registry=None,
        )
        # Every reason's series exists from the start, so `increase()` sees the first one.
        for reason in REASONS:
            self.recovered.labels(reason=reason)
        for result in DELIVERY_RESULTS:
            self.deliveries.labels(result=result)

    def collectors(self) -> tuple[Counter, ...]:
        return (self.recovered, self.deleted, self.task_failures, self.deliveries)


EVENTS = _Events()


def record_recovered(reason: str, count: int) -> None:
    """Count `count` jobs recovered for `reason` (one of `reasons.REASONS`)."""
    if count:
        EVENTS.recovered.labels(reason=reason).inc(count)


def record_deleted(count: int) -> None:
    """Count jobs that retention cleanup deleted."""
    if count:
        EVENTS.deleted.inc(count)


def record_task_failure(task: str) -> None:
    """Count one failed run of a maintenance task."""
    EVENTS.task_failures.labels(task=task).inc()


def record_delivery(delivered: bool) -> None:
    """Count one webhook delivery attempt."""
    EVENTS.deliveries.labels(result=DELIVERED if delivered else FAILED).inc()


def register_task(task: str) -> None:
    """Create a task's failure series at 0, so its first failure shows as an increase."""
    EVENTS.task_failures.labels(task=task)


# -- figures: read from the store in the background -----------------------------------
@dataclass(frozen=True, slots=True)
class StoreCheck:
    """The outcome of the last `PRAGMA quick_check` on the live store."""

    checked_at: datetime
    problems: tuple[str, ...]
    duration_seconds: float

    @property
    def ok(self) -> bool:
        """Whether the store was found sound."""
        return not self.problems


@dataclass(frozen=True, slots=True)
class Figures:
    """What the store and the data directory hold, as of `read_at`."""

    read_at: datetime
    read_seconds: float
    jobs_by_status: dict[str, int]
    oldest_pending_age_seconds: float
    longest_running_age_seconds: float
    task_intervals: dict[str, float]
    task_runs: dict[str, TaskRun]
    outbox: dict[str, tuple[int, float]]  # redacted endpoint: (waiting, oldest age seconds)
    database_bytes: int
    wal_bytes: int | None  # None: the store has no WAL of its own (PostgreSQL)
    newest_backup_bytes: int
    engine_sessions: int
    store_check: StoreCheck | None
    leading: bool = True  # this instance runs maintenance (always, on SQLite)
    leader_term: int = 0  # the current leader's term (0: none, or no election)


class FiguresCollector:
    """Renders the last `Figures` it was given as gauge families (no query per scrape)."""

    def __init__(self) -> None:
        self._figures: Figures | None = None
        self._lock = threading.Lock()

    def update(self, figures: Figures) -> None:
        """Show `figures` from the next scrape on."""
        with self._lock:
            self._figures = figures

    def update_leading(self, leading: bool) -> None:
        """Show whether this instance leads; the other figures stay (the store did not answer)."""
        with self._lock:
            if self._figures is not None:
                self._figures = replace(self._figures, leading=leading)

    def collect(self) -> Iterator[Metric]:
        """Yield the gauge families (build info alone until the first figures arrive)."""
        info = _gauge(
            "build_info",
            "Always 1; the versions of secautod and Python as labels.",
            ["version", "python"],
        )
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info
        with self._lock:
            figures = self._figures
        if figures is not None:
            yield from _figure_families(figures)


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=list(labels))


def _figure_families(figures: Figures) -> Iterator[Metric]:
    jobs = _gauge("jobs", "Jobs in the store, per status.", ["status"])
    counts = {status.value: 0 for status in JobStatus} | figures.jobs_by_status
    for status, count in sorted(counts.items()):
        jobs.add_metric([status], count)
    yield jobs
    yield _single(
        "oldest_pending_job_age_seconds",
        "Age of the oldest pending job (0 when none is pending).",
        figures.oldest_pending_age_seconds,
    )
    yield _single(
        "longest_running_job_age_seconds",
        "Time the longest-running job has been running (0 when none is running).",
        figures.longest_running_age_seconds,
    )
    yield from _maintenance_families(figures)
    depth = _gauge(
        "webhook_outbox_notifications",
        "Notifications waiting for delivery, per endpoint.",
        ["endpoint"],
    )
    oldest = _gauge(
        "webhook_outbox_oldest_age_seconds",
        "Age of the oldest undelivered notification, per endpoint.",
        ["endpoint"],
    )
    for endpoint, (waiting, age) in sorted(figures.outbox.items()):
        depth.add_metric([endpoint], waiting)
        oldest.add_metric([endpoint], age)
    yield depth
    yield oldest
    yield _single(
        "database_size_bytes",
        "Size of the store: the database file (PostgreSQL: secautod's tables and indexes).",
        figures.database_bytes,
    )
    if figures.wal_bytes is not None:
        yield _single("database_wal_size_bytes", "Size of its write-ahead log.", figures.wal_bytes)
    yield _single(
        "backup_newest_size_bytes",
        "Size of the newest backup file (0 when there is none).",
        figures.newest_backup_bytes,
    )
    yield _single(
        "engine_sessions", "Engine sessions whose lease still holds.", figures.engine_sessions
    )
    yield _single(
        "leader",
        "1 while this instance leads (runs cleanup, backups and lease-expiry recovery; "
        "always on SQLite), 0 while it stands by.",
        1.0 if figures.leading else 0.0,
    )
    yield _single(
        "leader_term",
        "The current leader's term on a shared store (0: no leader, or SQLite).",
        figures.leader_term,
    )
    check = figures.store_check
    if check is not None:
        yield _single(
            "store_check_ok",
            "1 when the last PRAGMA quick_check found the store sound, 0 when damaged.",
            1.0 if check.ok else 0.0,
        )
    yield _single(
        "figures_timestamp_seconds",
        "When these figures were read from the store (Unix time).",
        figures.read_at.timestamp(),
    )
    yield _single(
        "figures_read_duration_seconds",
        "How long reading these figures from the store took.",
        figures.read_seconds,
    )


def _maintenance_families(figures: Figures) -> Iterator[Metric]:
    interval = _gauge("maintenance_interval_seconds", "Configured interval, per task.", ["task"])
    success = _gauge(
        "maintenance_last_success_timestamp_seconds",
        "When each task last succeeded (Unix time; 0: never).",
        ["task"],
    )
    duration = _gauge(
        "maintenance_last_duration_seconds", "How long each task's last success took.", ["task"]
    )
    failed = _gauge(
        "maintenance_last_run_failed", "1 when each task's last attempt failed.", ["task"]
    )
    for task, seconds in sorted(figures.task_intervals.items()):
        run = figures.task_runs.get(task)
        last = run.last_success_at if run is not None else None
        took = run.last_result.get("duration_ms", 0) if run is not None else 0
        interval.add_metric([task], seconds)
        success.add_metric([task], last.timestamp() if last is not None else 0.0)
        duration.add_metric([task], float(took) / 1000 if isinstance(took, int | float) else 0.0)
        failed.add_metric([task], 1.0 if run is not None and run.last_error else 0.0)
    yield from (interval, success, duration, failed)


def _single(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


# -- exposition -------------------------------------------------------------------------
def build_registry(collector: FiguresCollector) -> CollectorRegistry:
    """Return a registry holding the figures, this process's event counters and its resources."""
    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)
    for counter in EVENTS.collectors():
        registry.register(counter)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """Return the registry in Prometheus' text format."""
    return generate_latest(registry)
