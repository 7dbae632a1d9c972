"""`secautod migrate` of the 1,000,000-job SQLite store into PostgreSQL: wall time and peak RSS.

Copies the cached database (`generate.py`) into a scratch data directory,
creates an empty PostgreSQL database, runs the real command (`--json`) under
`/usr/bin/time -v` (or `getrusage(RUSAGE_CHILDREN)` without it), then runs it
a second time over the finished copy (everything skipped), and drops the
database. Targets (issue 22): the copy < 3 min, peak RSS < 200 MB.

Usage: python benchmarks/bench_migrate.py [--jobs 1000000]
    [--server postgresql://postgres@127.0.0.1:5432/postgres] [--batch 2000]
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    SECAUTOD,
    Target,
    base_parser,
    child_env,
    copy_database,
    print_targets,
    save_results,
    work_dir,
)
from generate import ensure_database
from pg_data import add_server_option, scratch_database


def run_migrate(config: Path, url: str, batch: int, cache: Path) -> dict[str, Any]:
    """Run `secautod migrate --json`; return its wall time, peak RSS and report."""
    command = [SECAUTOD, "migrate", "--config", str(config), "--to", url, "--batch", str(batch)]
    command.append("--json")
    use_time = Path("/usr/bin/time").exists()
    if use_time:
        command = ["/usr/bin/time", "-v", *command]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    completed = subprocess.run(
        command, capture_output=True, text=True, check=False, env=child_env(cache)
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"migrate failed ({completed.returncode}): {completed.stderr[-800:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if use_time:
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", completed.stderr)
        peak_kib = int(match.group(1)) if match else peak_kib
    elif peak_kib <= before:
        peak_kib = 0  # an earlier child was larger: getrusage cannot tell
    report = json.loads(completed.stdout)
    return {
        "seconds": elapsed,
        "peak_rss_kib": peak_kib,
        "copied": report["copied"],
        "already_present": report["already_present"],
        "unreadable": report["unreadable"],
        "verified": report["verified"],
    }


def main() -> int:
    """Copy the generated store into a scratch PostgreSQL database, twice, and report."""
    parser = base_parser(__doc__.splitlines()[0])
    add_server_option(parser)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    source = ensure_database(args.cache, args.jobs)
    folder = work_dir(args.cache, "migrate")
    (folder / "data").mkdir(mode=0o700)
    copy_database(source, folder / "data" / "jobs.db")
    config = folder / "config.yaml"
    config.write_text(f'data_directory: "{folder / "data"}"\n')
    with scratch_database(args.server, "secautod_bench") as url:
        first = run_migrate(config, url, args.batch, args.cache)
        print(
            f"  migrate of {args.jobs:,} jobs: {first['seconds']:.1f} s "
            f"({first['copied'] / first['seconds']:.0f} jobs/s), "
            f"peak RSS {first['peak_rss_kib'] / 1024:.0f} MiB, verified {first['verified']}",
            flush=True,
        )
        again = run_migrate(config, url, args.batch, args.cache)
        print(
            f"  second run (all skipped): {again['seconds']:.1f} s, "
            f"peak RSS {again['peak_rss_kib'] / 1024:.0f} MiB",
            flush=True,
        )
    targets = [
        Target(
            f"migrate of {args.jobs:,} jobs < 3 min",
            f"{first['seconds']:.1f} s (a re-run over the copy: {again['seconds']:.1f} s)",
            first["seconds"] < 180 and first["verified"],
        ),
        Target(
            "migrate peak RSS < 200 MB",
            f"{max(first['peak_rss_kib'], again['peak_rss_kib']) / 1024:.0f} MiB",
            max(first["peak_rss_kib"], again["peak_rss_kib"]) * 1024 < 200e6,
        ),
    ]
    print_targets("bench_migrate", targets)
    save_results(args.cache, "migrate", targets, {"first": first, "again": again})
    return 0


if __name__ == "__main__":
    sys.exit(main())
