"""Cost of the metrics on the 1,000,000-job file: a scrape, the background read, the store check.

- *scrape*: GET /metrics from the real listener (`exporter.MetricsServer`),
  which only renders the figures last read: the issue's target is < 10 ms;
- *figures read*: `monitor.read_figures`, the monitor thread's queries and
  file stats every `metrics.refresh_seconds` (it never blocks a scrape);
- *quick_check*: the start-up and daily `PRAGMA quick_check` of the live store.

Each is run once to warm up, then `--runs` times (the store check fewer:
it reads the whole file); the median and the worst are reported.

Usage: python benchmarks/bench_metrics.py [--runs 50]
"""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import (
    Target,
    base_parser,
    copy_database,
    median,
    ms,
    print_targets,
    save_results,
    warm_page_cache,
    work_dir,
)
from generate import ensure_database

from secautod.config import Config
from secautod.exporter import MetricsServer
from secautod.metrics import FiguresCollector, build_registry
from secautod.monitor import read_figures
from secautod.store import JobStore
from secautod.timestamps import utc_now

SCRAPE_TARGET_SECONDS = 0.010


def timed(action: Callable[[], Any], runs: int) -> list[float]:
    """Run `action` once to warm up, then `runs` times; return each run's seconds."""
    action()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--check-runs", type=int, default=3)
    args = parser.parse_args()
    source = ensure_database(args.cache, args.jobs)
    directory = work_dir(args.cache, "metrics")
    database = directory / "jobs.db"
    copy_database(source, database)
    warm_page_cache(database)
    config = Config(path=directory / "config.yaml", data_directory=directory)
    collector = FiguresCollector()
    registry = build_registry(collector)
    with JobStore(database) as store:
        read = timed(lambda: read_figures(store, config, utc_now(), None), args.runs)
        collector.update(read_figures(store, config, utc_now(), None))
        server = MetricsServer(("127.0.0.1", 0), registry)
        server.start()
        url = f"http://127.0.0.1:{server.port}/metrics"
        try:
            scrape = timed(lambda: _get(url), args.runs)
        finally:
            server.close()
        check = timed(store.quick_check, args.check_runs)
    size = Path(database).stat().st_size
    shutil.rmtree(directory, ignore_errors=True)  # a 3.4 GB copy
    figures = {
        "jobs": args.jobs,
        "database_bytes": size,
        "scrape_seconds": scrape,
        "figures_read_seconds": read,
        "quick_check_seconds": check,
    }
    targets = [
        Target(
            f"scrape at {args.jobs:,} jobs < 10 ms",
            f"median {ms(median(scrape))}, worst {ms(max(scrape))}",
            max(scrape) < SCRAPE_TARGET_SECONDS,
        ),
        Target(
            "figures read (background, every refresh)",
            f"median {ms(median(read))}, worst {ms(max(read))}",
            None,
        ),
        Target(
            "PRAGMA quick_check (start-up, daily)",
            f"median {ms(median(check))}, worst {ms(max(check))}",
            None,
        ),
    ]
    print_targets("metrics", targets)
    save_results(args.cache, "bench_metrics", targets, figures)
    return 0


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http only
        return bytes(response.read())


if __name__ == "__main__":
    raise SystemExit(main())
