"""Run every benchmark in turn and print one results table.

Each script runs as its own process with this interpreter; its output is
shown as it comes and kept in `<cache>/results/<name>.log`. At the end the
targets of all scripts are gathered from `<cache>/results/*.json` into a
Markdown table (also written to `<cache>/results/summary.md`).

Usage: python benchmarks/run_all.py [--cache DIR] [--only store,cli,...] [--server URL]
Takes about 20 minutes on 2 cores once the database is generated (about 3-5
more minutes the first time, and ~2 more for the supervision benchmark's
copies), plus ~4 minutes for the PostgreSQL steps (`pg-store`, `pg-cleanup`),
which need the server at `--server` (an admin URL with CREATEDB; each step
creates its own scratch database and drops it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from common import BENCH_DIR, base_parser, machine
from pg_data import add_server_option

STEPS = {
    "generate": ["generate.py"],
    "store": ["bench_store.py"],
    "store-normal": ["bench_store.py", "--synchronous", "NORMAL"],
    "cli": ["bench_cli.py"],
    "import": ["bench_import.py"],
    "daemon": ["bench_daemon.py"],
    "maintenance": ["bench_maintenance.py"],
    "supervision": ["bench_supervision.py"],
    "metrics": ["bench_metrics.py"],
    "pg-store": ["bench_pg_store.py"],
    "pg-cleanup": ["bench_pg_cleanup.py"],
}
# Steps that take the PostgreSQL server's admin URL.
SERVER_STEPS = {"pg-store", "pg-cleanup"}
RESULT_FILES = {
    "store": "store-full",
    "store-normal": "store-normal",
    "cli": "cli",
    "import": "import",
    "daemon": "daemon",
    "maintenance": "maintenance",
    "supervision": "supervision",
    "metrics": "bench_metrics",
    "pg-store": "pg-store-full",
    "pg-cleanup": "pg-cleanup",
}


def run_step(
    name: str, arguments: list[str], cache: Path, jobs: int, server: str
) -> tuple[float, bool]:
    """Run one script, teeing its output into a log; return its duration and success."""
    log_dir = cache / "results"
    log_dir.mkdir(parents=True, exist_ok=True)
    if name in RESULT_FILES:  # a failed step must not leave an earlier run's figures behind
        (log_dir / f"{RESULT_FILES[name]}.json").unlink(missing_ok=True)
    command = [
        sys.executable,
        str(BENCH_DIR / arguments[0]),
        *arguments[1:],
        "--cache",
        str(cache),
        "--jobs",
        str(jobs),
        *(["--server", server] if name in SERVER_STEPS else []),
    ]
    print(f"\n### {name}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    with (log_dir / f"{name}.log").open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        for line in process.stdout or ():
            sys.stdout.write(line)
            log.write(line)
        status = process.wait()
    if status != 0:
        print(f"### {name} FAILED with status {status}", flush=True)
    return time.monotonic() - started, status == 0


def summary(cache: Path, names: list[str]) -> str:
    """Return the Markdown table of every target measured."""
    lines = ["| target | measured | met? |", "| --- | --- | --- |"]
    for name in names:
        if name not in RESULT_FILES:
            continue
        path = cache / "results" / f"{RESULT_FILES[name]}.json"
        if not path.exists():
            lines.append(f"| ({name}: no results) | | |")
            continue
        document = json.loads(path.read_text())
        for target in document["targets"]:
            met = target["met"]
            verdict = "reference" if met is None else ("met" if met else "**not met**")
            lines.append(f"| {target['target'].strip()} | {target['measured']} | {verdict} |")
    return "\n".join(lines)


def main() -> int:
    """Run the benchmarks and print the summary."""
    parser = base_parser(__doc__.splitlines()[0])
    add_server_option(parser)
    parser.add_argument(
        "--only", help=f"comma-separated steps to run (default all: {','.join(STEPS)})"
    )
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(STEPS)
    unknown = [name for name in names if name not in STEPS]
    if unknown:
        parser.error(f"unknown steps: {unknown}")
    facts = machine()
    print("machine: " + ", ".join(f"{key}={value}" for key, value in facts.items()))
    durations = {}
    failed = []
    for name in names:
        durations[name], ok = run_step(name, STEPS[name], args.cache, args.jobs, args.server)
        if not ok:
            failed.append(name)
    table = summary(args.cache, names)
    timing = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in durations.items())
    text = (
        f"machine: {', '.join(f'{key}={value}' for key, value in facts.items())}\n"
        f"steps: {timing}\n\n{table}\n"
    )
    (args.cache / "results" / "summary.md").write_text(text)
    print("\n" + text)
    if failed:
        print(f"failed steps: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
