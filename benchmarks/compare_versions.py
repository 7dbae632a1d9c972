"""Two versions of secautod side by side: the store ratios and the start-up time, alternating.

Each version is installed *without* `-e` into a virtualenv of its own
(`pip install <tree>`), so each interpreter imports its own copy of the
package; each runs its own tree's `benchmarks/bench_store.py` (the script
differs between versions only in where it imports the SQL from). The
rounds alternate: before, after, after, before, ...

- store ratios: `bench_store.py --rounds R` of each version (JobStore vs
  raw `sqlite3` running that version's SQL, on a copy of the jobs file);
- start-up: `secautod run` of each version on a copy of the jobs file,
  Popen to READY=1 on a real NOTIFY_SOCKET (interpreter start included),
  `--starts` times per version after one warm-up start (which recovers the
  generator's running jobs), alternating start by start.

The older version may not know the newer schema: its copy of the file has
the migrations it does not know taken out (`--before-schema`, the highest
migration it knows; only secautod's own small tables differ, never `jobs`).

Usage: python benchmarks/compare_versions.py --before-venv V1 --before-tree T1
           --after-venv V2 --after-tree T2 [--before-schema 2] [--store-runs 2]
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from bench_daemon import NotifySocket
from common import (
    BENCH_DIR,
    Target,
    base_parser,
    child_env,
    copy_database,
    cpu_seconds,
    median,
    print_targets,
    save_results,
    warm_page_cache,
    work_dir,
)
from generate import database_path, ensure_database

# Tables and indexes each migration after 0002 added (0003: engine sessions).
LATER_MIGRATIONS = {3: ("DROP TABLE IF EXISTS job_claims", "DROP TABLE IF EXISTS engine_sessions")}


def older_schema_file(source: Path, cache: Path, jobs: int, version: int) -> Path:
    """Return `source` copied into `cache` with the migrations above `version` taken out."""
    target = database_path(cache, jobs)
    meta = source.with_name(source.name + ".meta.json")
    marker = target.with_name(target.name + f".schema{version}")
    if target.is_file() and marker.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    copy_database(source, target)
    conn = sqlite3.connect(target, isolation_level=None)
    for number, statements in sorted(LATER_MIGRATIONS.items()):
        if number > version:
            for statement in statements:
                conn.execute(statement)
    conn.execute("DELETE FROM schema_migrations WHERE version > ?", (version,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    shutil.copyfile(meta, target.with_name(target.name + ".meta.json"))
    marker.write_text("")
    return target


def run_store(python: Path, tree: Path, cache: Path, jobs: int, rounds: int) -> dict[str, Any]:
    """Run one version's bench_store.py; return its ratios and latencies from its results."""
    command = [
        str(python),
        str(tree / "benchmarks" / "bench_store.py"),
        "--cache",
        str(cache),
        "--jobs",
        str(jobs),
        "--rounds",
        str(rounds),
    ]
    started = time.monotonic()
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    document = json.loads((cache / "results" / "store-full.json").read_text())
    return {
        "seconds": time.monotonic() - started,
        "targets": document["targets"],
        "machine_load": document["machine"]["load"],
        "output_tail": output.splitlines()[-30:],
    }


def store_ratios(run: dict[str, Any]) -> dict[str, str]:
    """Return {operation: measured} of the store ratio lines of one bench_store run."""
    found = {}
    for target in run["targets"]:
        name = target["target"].strip()
        found[name] = target["measured"]
    return found


def cpu_per_call(
    args: Any, sides: dict[str, dict[str, Path]], order: tuple[str, str]
) -> dict[str, Any]:
    """Run cpu_per_call.py with each version on its own copy, alternating; print medians."""
    copies = {}
    for side in order:
        copy = work_dir(args.cache, f"compare-cpu-{side}") / "jobs.db"
        copy_database(database_path(sides[side]["cache"], args.jobs), copy)
        warm_page_cache(copy)
        copies[side] = copy
    runs: dict[str, list[dict[str, dict[str, float]]]] = {side: [] for side in order}
    for number in range(args.cpu_runs):
        for side in order if number % 2 == 0 else tuple(reversed(order)):
            python = sides[side]["venv"] / "bin" / "python"
            output = subprocess.run(
                [
                    str(python),
                    str(BENCH_DIR / "cpu_per_call.py"),
                    str(copies[side]),
                    "--tag",
                    f"{side}{number}",
                ],
                capture_output=True,
                text=True,
                check=True,
                cwd="/",
            ).stdout
            runs[side].append(json.loads(output))
    for side in order:
        shutil.rmtree(args.cache / "work" / f"compare-cpu-{side}", ignore_errors=True)
    summary = {}
    print(f"CPU per call (the calling thread), medians of {args.cpu_runs} runs per side:")
    for name in runs["before"][0]:
        values = {side: median([run[name]["cpu_us"] for run in runs[side]]) for side in order}
        walls = {side: median([run[name]["wall_us"] for run in runs[side]]) for side in order}
        summary[name] = {"cpu_us": values, "wall_us": walls}
        print(
            f"  {name:<30} before {values['before']:8.1f} µs  after {values['after']:8.1f} µs  "
            f"after/before {values['after'] / values['before']:.3f}  (wall "
            f"{walls['before']:.0f} vs {walls['after']:.0f} µs)"
        )
    return {"runs": runs, "summary": summary}


def write_config(folder: Path, data: Path) -> Path:
    """Write a config both versions read; return its path."""
    config = folder / "config.yaml"
    config.write_text(
        f'data_directory: "{data}"\n'
        "logging:\n  level: info\n  format: json\n"
        "jobs:\n  retention_days: 36500\n  backup_enabled: false\n"
    )
    return config


def start_once(
    secautod: Path, config: Path, notify: NotifySocket, log: Path, cache: Path
) -> tuple[float, float]:
    """Start `secautod run`, wait for READY=1, stop it; return (wall, CPU) seconds to READY=1."""
    env = child_env(cache, NOTIFY_SOCKET=notify.path)
    started = time.monotonic()
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [str(secautod), "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
    try:
        ready = notify.wait_for("READY=1", started, 600) - started
        cpu = cpu_seconds(process.pid)
    finally:
        process.terminate()
        process.wait(120)
    return ready, cpu


def main() -> int:
    """Compare two installed versions."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--before-venv", type=Path, required=True)
    parser.add_argument("--before-tree", type=Path, required=True)
    parser.add_argument("--after-venv", type=Path, required=True)
    parser.add_argument("--after-tree", type=Path, default=BENCH_DIR.parent)
    parser.add_argument("--before-schema", type=int, default=2)
    parser.add_argument("--store-runs", type=int, default=2, help="bench_store.py runs per side")
    parser.add_argument("--store-rounds", type=int, default=3, help="its --rounds")
    parser.add_argument("--starts", type=int, default=5, help="timed starts per side")
    parser.add_argument("--skip-store", action="store_true")
    parser.add_argument(
        "--cpu-runs", type=int, default=0, help="cpu_per_call.py runs per side (alternating)"
    )
    args = parser.parse_args()
    source = ensure_database(args.cache, args.jobs)
    sides = {
        "before": {
            "venv": args.before_venv,
            "tree": args.before_tree,
            "cache": args.cache / "before",
        },
        "after": {"venv": args.after_venv, "tree": args.after_tree, "cache": args.cache / "after"},
    }
    older_schema_file(source, sides["before"]["cache"], args.jobs, args.before_schema)
    after_db = database_path(sides["after"]["cache"], args.jobs)
    if not after_db.is_file():
        sides["after"]["cache"].mkdir(parents=True, exist_ok=True)
        copy_database(source, after_db)
        shutil.copyfile(
            source.with_name(source.name + ".meta.json"),
            after_db.with_name(after_db.name + ".meta.json"),
        )
    figures: dict[str, Any] = {"store": {"before": [], "after": []}, "starts": {}}
    order = ("before", "after")
    if args.cpu_runs:
        figures["cpu_per_call"] = cpu_per_call(args, sides, order)
    if not args.skip_store:
        for number in range(args.store_runs):
            for side in order if number % 2 == 0 else tuple(reversed(order)):
                conf = sides[side]
                run = run_store(
                    conf["venv"] / "bin" / "python",
                    conf["tree"],
                    conf["cache"],
                    args.jobs,
                    args.store_rounds,
                )
                figures["store"][side].append(run)
                print(f"bench_store.py ({side}, load {run['machine_load']}):")
                for name, measured in store_ratios(run).items():
                    print(f"  {name}: {measured}")

    notify = NotifySocket()
    try:
        folders = {}
        for side in order:
            folder = work_dir(args.cache, f"compare-start-{side}")
            data = folder / "data"
            data.mkdir(mode=0o700)
            source_db = database_path(sides[side]["cache"], args.jobs)
            copy_database(source_db, data / "jobs.db")
            warm_page_cache(data / "jobs.db")
            config = write_config(folder, data)
            secautod = sides[side]["venv"] / "bin" / "secautod"
            warmup, _ = start_once(secautod, config, notify, folder / "daemon.log", args.cache)
            print(f"{side}: warm-up start {warmup:.3f} s")
            folders[side] = (secautod, config, folder)
        times: dict[str, list[float]] = {side: [] for side in order}
        cpu: dict[str, list[float]] = {side: [] for side in order}
        for number in range(args.starts):
            for side in order if number % 2 == 0 else tuple(reversed(order)):
                secautod, config, folder = folders[side]
                wall, used = start_once(secautod, config, notify, folder / "daemon.log", args.cache)
                times[side].append(wall)
                cpu[side].append(used)
        figures["starts"] = times
        figures["start_cpu"] = cpu
    finally:
        notify.close()
    for side in order:
        shutil.rmtree(args.cache / "work" / f"compare-start-{side}", ignore_errors=True)
        print(
            f"start to READY=1 ({side}): median {median(times[side]):.3f} s, "
            + ", ".join(f"{value:.3f}" for value in times[side])
            + f"; the daemon's CPU until then: median {median(cpu[side]):.3f} s, "
            + ", ".join(f"{value:.2f}" for value in cpu[side])
        )
    targets = [
        Target(
            f"start to READY=1, {side} (median of {args.starts}; CPU until READY=1)",
            f"{median(times[side]):.3f} s ({min(times[side]):.3f}-{max(times[side]):.3f}); "
            f"CPU {median(cpu[side]):.3f} s",
            None,
        )
        for side in order
    ]
    for side in order:
        for number, run in enumerate(figures["store"][side]):
            for name, measured in store_ratios(run).items():
                if name.startswith("store/raw ratio"):
                    targets.append(Target(f"{side} run {number + 1}: {name}", measured, None))
    print_targets("compare_versions", targets)
    save_results(args.cache, "compare_versions", targets, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
