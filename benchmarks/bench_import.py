"""`secautod import-json` of legacy job files: wall time and peak memory.

Generates legacy files in the old file-based store's shape (one JSON object
mapping job id to job, the table's fields, RFC 3339 timestamps, Go's zero
time `0001-01-01T00:00:00Z` and `""` for unset values, one job per line)
of 200,000 jobs and of twice that, and imports each into a new, empty
store with the real command. Peak resident memory comes from
`/usr/bin/time -v` (or `getrusage(RUSAGE_CHILDREN)` without it); if it
stays the same for a file twice as large, the import streams.

Usage: python benchmarks/bench_import.py [--import-jobs 200000]
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import (
    SECAUTOD,
    Target,
    base_parser,
    child_env,
    print_targets,
    save_results,
    work_dir,
)
from generate import AGE_DAYS, GENERATOR_VERSION, JobFactory

from secautod.jobs import JOB_COLUMNS as JOBS_COLUMNS

_GO_ZERO = "0001-01-01T00:00:00Z"


def _rfc3339(text: str | None) -> str:
    """Turn a generated table timestamp into the legacy file's RFC 3339 text."""
    if text is None:
        return _GO_ZERO
    if "T" in text:
        return text
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ensure_legacy_file(cache: Path, jobs: int) -> Path:
    """Return the cached legacy file of `jobs` jobs, writing it (streamed) if needed."""
    path = cache / f"legacy-{jobs}.json"
    meta = path.with_name(path.name + ".meta.json")
    cached = path.is_file() and meta.is_file()
    if cached and json.loads(meta.read_text()).get("version") == GENERATOR_VERSION:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    factory = JobFactory(seed=jobs)
    now = datetime.now(UTC)
    span = AGE_DAYS * 86400.0
    started = time.perf_counter()
    with path.open("w", encoding="utf-8") as handle:
        handle.write("{\n")
        for index in range(jobs):
            created = now - timedelta(seconds=span * (1 - index / jobs) + 3600)
            row = factory.row(created)
            job: dict[str, Any] = dict(zip(JOBS_COLUMNS, row, strict=True))
            job["playbook"] = json.loads(job["playbook"])
            job["context"] = json.loads(job["context"])
            job["results"] = None if job["results"] is None else json.loads(job["results"])
            job["error"] = job["error"] or ""
            for name in ("created_at", "started_at", "completed_at", "updated_at"):
                job[name] = _rfc3339(job[name])
            separator = ",\n" if index < jobs - 1 else "\n"
            handle.write(f"{json.dumps(job['id'])}: {json.dumps(job, ensure_ascii=False)}")
            handle.write(separator)
        handle.write("}\n")
    meta.write_text(json.dumps({"version": GENERATOR_VERSION, "jobs": jobs}) + "\n")
    print(
        f"  generated {path} ({path.stat().st_size / 1e6:.0f} MB) "
        f"in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return path


def run_import(folder: Path, legacy: Path) -> dict[str, Any]:
    """Import `legacy` into a new store; return wall time, peak RSS and the output."""
    data = folder / "data"
    shutil.rmtree(data, ignore_errors=True)
    config = folder / "config.yaml"
    config.write_text(f'data_directory: "{data}"\n')
    command = [SECAUTOD, "import-json", str(legacy), "--config", str(config), "--json"]
    use_time = Path("/usr/bin/time").exists()
    if use_time:
        command = ["/usr/bin/time", "-v", *command]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    completed = subprocess.run(
        command, capture_output=True, text=True, check=False, env=child_env(folder.parent.parent)
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"import failed ({completed.returncode}): {completed.stderr[-800:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if use_time:
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", completed.stderr)
        peak_kib = int(match.group(1)) if match else peak_kib
    elif peak_kib <= before:
        peak_kib = 0  # an earlier child was larger: getrusage cannot tell
    report = json.loads(completed.stdout)
    database = data / "jobs.db"
    size = database.stat().st_size
    shutil.rmtree(data, ignore_errors=True)
    return {
        "seconds": elapsed,
        "peak_rss_kib": peak_kib,
        "imported": report["imported"],
        "skipped": report["skipped"],
        "rejected": len(report["rejected"]),
        "file_bytes": legacy.stat().st_size,
        "database_bytes": size,
    }


def main() -> int:
    """Generate the legacy files and time their import."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--import-jobs", type=int, default=200_000)
    args = parser.parse_args()
    folder = work_dir(args.cache, "import")
    sizes = (args.import_jobs, args.import_jobs * 2)
    results: dict[str, Any] = {}
    for jobs in sizes:
        legacy = ensure_legacy_file(args.cache, jobs)
        result = run_import(folder, legacy)
        results[str(jobs)] = result
        print(
            f"  import-json of {jobs:,} jobs ({result['file_bytes'] / 1e6:.0f} MB file): "
            f"{result['seconds']:.1f} s ({jobs / result['seconds']:.0f} jobs/s), "
            f"peak RSS {result['peak_rss_kib'] / 1024:.0f} MiB, imported {result['imported']:,}, "
            f"rejected {result['rejected']}",
            flush=True,
        )
    small, large = (results[str(jobs)] for jobs in sizes)
    targets = [
        Target(
            f"import-json of {sizes[0]:,} jobs < 15 s",
            f"{small['seconds']:.1f} s ({small['file_bytes'] / 1e6:.0f} MB file)",
            small["seconds"] < 15,
        ),
        Target(
            "import-json peak RSS < 200 MB, flat with file size",
            f"{small['peak_rss_kib'] / 1024:.0f} MiB for {sizes[0]:,} jobs, "
            f"{large['peak_rss_kib'] / 1024:.0f} MiB for {sizes[1]:,} "
            f"({large['seconds']:.1f} s)",
            max(small["peak_rss_kib"], large["peak_rss_kib"]) * 1024 < 200e6
            and large["peak_rss_kib"] < small["peak_rss_kib"] * 1.25,
        ),
    ]
    print_targets("bench_import", targets)
    save_results(args.cache, "import", targets, {"imports": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
