"""Wall time of the operator's CLI commands on the 1,000,000-job file.

Each command is run as a new process (`secautod ...`, the console script of
this virtualenv, so interpreter start-up and imports are included), once
to warm up and then `--runs` times; the median and the worst are reported.
Bytecode is cached as for an installed package (see `common.child_env`).
`status` exits 3 here because no daemon runs: the time is what counts.
For reference: a bare `python -c pass`, and the modules that cost the
most to import (`python -X importtime`).

Usage: python benchmarks/bench_cli.py [--runs 7]
"""

from __future__ import annotations

import shutil
import sqlite3
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
    median,
    print_targets,
    save_results,
    table,
    warm_page_cache,
    work_dir,
)
from generate import ensure_database


def timed(command: list[str], runs: int, cwd: Path, env: dict[str, str]) -> tuple[list[float], int]:
    """Run `command` once to warm up, then `runs` times; return durations and exit status.

    `cwd` is a neutral folder: from the repository, `python -c` would import
    the package from the working directory instead of the installed one.
    """
    status = 0
    durations = []
    for number in range(runs + 1):
        started = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, check=False, cwd=cwd, env=env)
        elapsed = time.perf_counter() - started
        status = completed.returncode
        if status not in (0, 3):
            raise RuntimeError(f"{command} failed ({status}): {completed.stderr.decode()[-500:]}")
        if number:
            durations.append(elapsed)
    return durations, status


def import_costs(
    module: str, cwd: Path, env: dict[str, str], top: int = 8
) -> list[tuple[str, float]]:
    """Return the modules whose own import code costs most under `module`, in ms."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        env=env,
    )
    costs = []
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        own, _, name = line.removeprefix("import time:").split("|")
        if own.strip().isdigit():
            costs.append((name.strip(), int(own) / 1000))
    return sorted(costs, key=lambda entry: -entry[1])[:top]


def main() -> int:
    """Time the CLI commands."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    base = ensure_database(args.cache, args.jobs)
    folder = work_dir(args.cache, "cli")
    data = folder / "data"
    data.mkdir(mode=0o700)
    database = data / "jobs.db"
    copy_database(base, database)
    warm_page_cache(database)
    config = folder / "config.yaml"
    config.write_text(f'data_directory: "{data}"\n')
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    (job_id,) = conn.execute("SELECT id FROM jobs WHERE rowid = 500000").fetchone()
    conn.close()

    cfg = ["--config", str(config)]
    commands: dict[str, list[str]] = {
        "secautod --help": [SECAUTOD, "--help"],
        "secautod jobs list --limit 50": [SECAUTOD, "jobs", "list", "--limit", "50", *cfg],
        "secautod jobs list --status failed --limit 50": [
            SECAUTOD,
            "jobs",
            "list",
            "--status",
            "failed",
            "--limit",
            "50",
            *cfg,
        ],
        "secautod jobs show ID": [SECAUTOD, "jobs", "show", job_id, *cfg],
        "secautod jobs stats": [SECAUTOD, "jobs", "stats", *cfg],
        "secautod status": [SECAUTOD, "status", *cfg],
        "(python -c pass)": [sys.executable, "-c", "pass"],
        "(python -c 'import secautod.commands')": [
            sys.executable,
            "-c",
            "import secautod.commands",
        ],
    }
    results: dict[str, Any] = {}
    for name, command in commands.items():
        durations, status = timed(command, args.runs, folder, child_env(args.cache))
        results[name] = {"seconds": durations, "exit_status": status}
        print(
            f"  {name:<46} median {median(durations) * 1000:6.0f} ms, "
            f"max {max(durations) * 1000:6.0f} ms",
            flush=True,
        )
    rows = [
        [
            name,
            f"{median(item['seconds']) * 1000:.0f}",
            f"{max(item['seconds']) * 1000:.0f}",
            str(item["exit_status"]),
        ]
        for name, item in results.items()
    ]
    print()
    print(table(["command", "median ms", "max ms", "exit"], rows))
    costs = {
        module: import_costs(module, folder, child_env(args.cache))
        for module in ("secautod.cli", "secautod.commands")
    }
    for module, entries in costs.items():
        listed = ", ".join(f"{name} {value:.1f}" for name, value in entries)
        print(f"\nimport {module}: modules with the largest own import time (ms): {listed}")

    limits = {
        "secautod --help": 0.200,
        "secautod jobs list --limit 50": 0.300,
        "secautod jobs show ID": 0.300,
        "secautod jobs stats": 0.300,
        "secautod status": 0.300,
    }
    targets = [
        Target(
            f"{name} < {limit * 1000:.0f} ms",
            f"median {median(results[name]['seconds']) * 1000:.0f} ms, "
            f"max {max(results[name]['seconds']) * 1000:.0f} ms",
            median(results[name]["seconds"]) < limit,
        )
        for name, limit in limits.items()
    ]
    print_targets("bench_cli", targets)
    save_results(
        args.cache,
        "cli",
        targets,
        {"commands": results, "imports": {key: list(value) for key, value in costs.items()}},
    )
    shutil.rmtree(folder, ignore_errors=True)  # a 3.4 GB copy
    return 0


if __name__ == "__main__":
    sys.exit(main())
