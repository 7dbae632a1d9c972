"""Helpers shared by the benchmark scripts: paths, statistics, machine facts, results.

Every script prints its figures and also writes them to
`<cache>/results/<name>.json`, which `run_all.py` gathers into one table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Large scratch files belong in /tmp on the benchmark machine; the path is an option.
DEFAULT_CACHE = Path("/tmp/secautod-bench")  # noqa: S108
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# The console script of the interpreter running the benchmark (the dev virtualenv).
SECAUTOD = str(Path(sys.executable).parent / "secautod")


@dataclass
class Target:
    """One line of the results table: an issue's target and what was measured."""

    target: str
    measured: str
    met: bool | None  # None: a reference figure, not a target


def base_parser(description: str) -> argparse.ArgumentParser:
    """Return an argument parser with the options every script shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"where generated databases and results are kept (default {DEFAULT_CACHE})",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1_000_000,
        help="jobs in the large database (default 1,000,000)",
    )
    return parser


def child_env(cache: Path, **extra: str) -> dict[str, str]:
    """Return the environment for timed `secautod` processes.

    Bytecode is cached (in `<cache>/pycache`, not in the source tree) even if
    PYTHONDONTWRITEBYTECODE is set, as an installed package has its modules
    compiled: otherwise every run would compile the modules again.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache / "pycache")
    env.update(extra)
    return env


def work_dir(cache: Path, name: str) -> Path:
    """Return an empty scratch directory `<cache>/work/<name>`."""
    path = cache / "work" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    return path


def remove_database(path: Path) -> None:
    """Delete a database file and its companions."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def copy_database(source: Path, target: Path, *, sync: bool = True) -> float:
    """Copy a (checkpointed) database file; return the seconds `cp` took.

    The copy is then synced, outside the timing, so that gigabytes of dirty
    pages being written back do not stall the fsyncs of the measurement
    that follows.
    """
    remove_database(target)
    started = time.perf_counter()
    subprocess.run(["cp", "--sparse=never", str(source), str(target)], check=True)
    elapsed = time.perf_counter() - started
    target.chmod(0o600)
    if sync:
        fsync_file(target)
    return elapsed


def fsync_file(path: Path) -> float:
    """fsync one file; return the seconds it took."""
    started = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - started


def touch_memory(gib: float = 2.0) -> None:
    """Write one byte per page of `gib` GiB of new memory, then free it.

    On this VM a page of guest memory that is new to the host (never used,
    or handed back while free) costs a fault in the host when first written:
    the first recovery of a series took 3.3-5.3 s, the next ones 2.4-3.0 s,
    and plain `sqlite3` showed the same. A server whose memory is in use does
    not pay that, so a benchmark that writes a lot first makes this much free
    memory warm; the kernel hands recently freed pages out first.
    """
    chunk = 256 * 1024 * 1024
    page = os.sysconf("SC_PAGE_SIZE")
    ones = b"\1" * (chunk // page)
    held = []
    for _ in range(max(1, int(gib * 1024**3 // chunk))):
        block = bytearray(chunk)
        block[::page] = ones
        held.append(block)
    del held


def warm_page_cache(path: Path) -> None:
    """Read a file once so every run starts from the same (warm) page cache."""
    with path.open("rb") as handle:
        while handle.read(16 * 1024 * 1024):
            pass


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of `values` (fraction in 0..1)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: Iterable[float]) -> float:
    """Return the median, or NaN for no values."""
    values = list(values)
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    """Format seconds as milliseconds."""
    return f"{seconds * 1000:.1f} ms"


def machine() -> dict[str, str]:
    """Describe the machine the figures come from."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    disk = subprocess.run(
        ["df", "-hT", str(DEFAULT_CACHE.parent)], capture_output=True, text=True, check=False
    ).stdout.splitlines()[-1:]
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "disk": " ".join(disk[0].split()[:3]) if disk else "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load": " ".join(f"{value:.2f}" for value in os.getloadavg()),
    }


def save_results(cache: Path, name: str, targets: list[Target], figures: dict[str, Any]) -> Path:
    """Write a script's targets and raw figures to `<cache>/results/<name>.json`."""
    folder = cache / "results"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    document = {
        "name": name,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "targets": [asdict(target) for target in targets],
        "figures": figures,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def print_targets(title: str, targets: list[Target]) -> None:
    """Print the target lines of one script as a small table."""
    print(f"\n== {title}: targets ==")
    width = max((len(target.target) for target in targets), default=10)
    for target in targets:
        verdict = "ref" if target.met is None else ("MET" if target.met else "NOT MET")
        print(f"  {target.target:<{width}}  {target.measured:<40}  {verdict}")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return a plain text table."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return "\n".join(lines)


def written_by_this_process() -> tuple[int, int]:
    """Return (bytes passed to write calls, write calls) so far, from /proc/self/io.

    Unlike a time, the difference over an operation counts what SQLite wrote
    (WAL frames, checkpoint pages), not how fast the disk took it.
    """
    values = {}
    with open("/proc/self/io", encoding="utf-8") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            values[key] = int(value)
    return values["wchar"], values["syscw"]


def proc_status(pid: int) -> dict[str, int]:
    """Return the kB figures of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                values[key] = int(parts[0])
    return values


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds a process (all its threads) has used."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    # Fields after the command name start at field 3 (state); utime is 14, stime 15.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
