"""The `secautod_leader` gauge of an instance whose store stops answering (SPEC §11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import write_config
from pg_server import scratch_schema

from secautod import JobStore
from secautod.config import load_config
from secautod.leadership import Leadership
from secautod.metrics import render
from secautod.monitor import Monitor
from secautod.store.records import Candidate

LEASE = timedelta(seconds=30)


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def leader_gauge(monitor: Monitor) -> str:
    lines = render(monitor.registry).decode().splitlines()
    return next(line for line in lines if line.startswith("secautod_leader "))


def test_a_leader_cut_off_from_the_store_stops_showing_itself_leader(tmp_path: Path) -> None:
    """The figures stay from the last read, but secautod_leader drops to 0 once the lease is gone."""
    config = load_config(write_config(tmp_path, metrics={"textfile": "metrics.prom"}))
    clock = FakeMonotonic()
    with scratch_schema() as url:
        assert url is not None
        store = JobStore(url)
        try:
            leadership = Leadership(store, Candidate("a", "h", 1), LEASE, monotonic=clock)
            leadership._claim()
            monitor = Monitor(store, config, "a", lambda: datetime.now(UTC), leadership=leadership)
            monitor._refresh()
            assert leader_gauge(monitor) == "secautod_leader 1.0"
        finally:
            store.close()  # every read fails from here on, as with the server gone
        clock.now += LEASE.total_seconds() + 1  # no renewal could reach the server
        monitor._refresh()
        assert leader_gauge(monitor) == "secautod_leader 0.0"
