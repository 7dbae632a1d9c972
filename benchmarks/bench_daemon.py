"""The daemon as systemd sees it: start-up to READY=1, recovery, idle CPU and memory.

Runs the real `secautod run` with a real `NOTIFY_SOCKET` datagram socket on
copies of the 1,000,000-job database:

1. Start-up with nothing to recover: a warm-up start recovers the jobs the
   generator left running, then `--starts` more starts are timed from
   `Popen` to the READY=1 datagram (interpreter start included), and each
   stop from SIGTERM to exit. Maintenance is recorded as just done, so no
   task is due.
2. Idle cost: the last of those daemons is watched for `--idle-seconds`
   (60): CPU from /proc/<pid>/stat (utime + stime, all threads), context
   switches (wake-ups) of all threads, VmRSS and VmHWM.
3. Recovery: a copy in which 100,000 jobs are `running`, with one webhook
   endpoint configured (a closed local port), so every recovered job also
   queues an outbox notification. Start to READY=1 is timed and the
   EXTEND_TIMEOUT_USEC= datagrams are counted, `--recovery-starts` (3)
   times, each alternating with plain `sqlite3` running the store's two
   recovery statements and commit on another fresh copy (the floor).

Usage: python benchmarks/bench_daemon.py [--idle-seconds 60] [--recover 100000]
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    SECAUTOD,
    Target,
    base_parser,
    child_env,
    copy_database,
    cpu_seconds,
    median,
    print_targets,
    proc_status,
    remove_database,
    save_results,
    touch_memory,
    warm_page_cache,
    work_dir,
)
from generate import ensure_database, ensure_running_variant

from secautod import JobStore
from secautod.recovery import RecoveryNotice, unclaimed_at_start
from secautod.store.records import JOB_RECOVERED, RecoveredJob
from secautod.store.sqlite import queries
from secautod.store.sqlite.connection import connect
from secautod.supervision import this_host
from secautod.timestamps import format_optional, format_timestamp


class NotifySocket:
    """A real sd_notify datagram socket that timestamps every message."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="sd-"))
        self.path = str(self.directory / "notify")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.messages: list[tuple[float, str]] = []
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                data = self.socket.recv(65536)
            except OSError:
                return
            with self._arrived:
                self.messages.append((time.monotonic(), data.decode("latin-1")))
                self._arrived.notify_all()

    def wait_for(self, line: str, after: float, timeout: float) -> float:
        """Return when a datagram containing `line` arrived after `after`."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for arrived, message in self.messages:
                    if arrived >= after and line in message.split("\n"):
                        return arrived
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {line} within {timeout} s")
                self._arrived.wait(left)

    def count(self, prefix: str, start: float, end: float) -> int:
        """Count datagrams with a line starting with `prefix` between `start` and `end`."""
        return sum(
            1
            for arrived, message in self.messages
            if start <= arrived <= end
            and any(line.startswith(prefix) for line in message.split("\n"))
        )

    def close(self) -> None:
        """Close and remove the socket."""
        self.socket.close()
        Path(self.path).unlink(missing_ok=True)
        self.directory.rmdir()


def prepare(folder: Path, source: Path, webhook: bool) -> Path:
    """Make a data directory with a copy of `source`, maintenance just done; return config."""
    data = folder / "data"
    data.mkdir(mode=0o700)
    database = data / "jobs.db"
    copy_database(source, database)
    warm_page_cache(database)
    now = datetime.now(UTC)
    with JobStore(database) as store:
        for task in ("cleanup", "backup"):
            store.state.record_task_success(task, now, {"note": "benchmark"})
    config = folder / "config.yaml"
    lines = [
        f'data_directory: "{data}"',
        "logging:",
        "  level: info",
        "  format: json",
    ]
    if webhook:
        lines += [
            "webhooks:",
            '  - url: "http://127.0.0.1:9/secautod-benchmark"',
            "    timeout_seconds: 1",
        ]
    config.write_text("\n".join(lines) + "\n")
    return config


class Daemon:
    """One `secautod run` process."""

    def __init__(self, config: Path, notify: NotifySocket, log: Path, cache: Path) -> None:
        env = child_env(cache, NOTIFY_SOCKET=notify.path)
        self.notify = notify
        self.log = log
        self.started = time.monotonic()
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [SECAUTOD, "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
            )
        self.ready_at = 0.0

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait for READY=1; return the seconds since Popen."""
        self.ready_at = self.notify.wait_for("READY=1", self.started, timeout)
        return self.ready_at - self.started

    def stop(self) -> float:
        """SIGTERM the daemon; return the seconds until it exited."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(120)
        if status != 0:
            print(f"  (daemon exited with status {status}; see {self.log})")
        return time.monotonic() - started

    def phases(self) -> dict[str, float]:
        """Seconds from the first log line to each start-up event."""
        events: dict[str, float] = {}
        first = None
        for line in self.log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            moment = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
            first = first or moment
            name = entry.get("event", "")
            if name in (
                "config_loaded",
                "store_opened",
                "job_recovered",
                "jobs_recovered",
                "daemon_ready",
            ):
                events.setdefault(name, (moment - first).total_seconds())
        return events


def context_switches(pid: int) -> int:
    """Return the voluntary + involuntary context switches of all threads of `pid`."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with (task / "status").open(encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def idle_cost(pid: int, seconds: float) -> dict[str, Any]:
    """Watch an idle daemon; return CPU share, wake-ups and memory."""
    rss: list[int] = []
    cpu_before, switches_before = cpu_seconds(pid), context_switches(pid)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        rss.append(proc_status(pid)["VmRSS"])
        time.sleep(min(5.0, max(0.0, seconds - (time.monotonic() - started))))
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(pid) - cpu_before
    status = proc_status(pid)
    rss.append(status["VmRSS"])
    threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "cpu_percent": cpu / elapsed * 100,
        "wakeups_per_s": (context_switches(pid) - switches_before) / elapsed,
        "rss_max_kib": max(rss),
        "rss_end_kib": rss[-1],
        "hwm_kib": status["VmHWM"],
        "threads": threads,
    }


def recovery_start(folder: Path, source: Path, notify: NotifySocket, cache: Path) -> dict[str, Any]:
    """Start the daemon on a fresh copy of `source` with jobs to recover; return its figures."""
    folder.mkdir(mode=0o700)
    config = prepare(folder, source, webhook=True)
    touch_memory()
    daemon = Daemon(config, notify, folder / "recovery.log", cache)
    ready_s = daemon.wait_ready(timeout=600)
    figures = {
        "ready_s": ready_s,
        "extend_messages": notify.count("EXTEND_TIMEOUT_USEC=", daemon.started, daemon.ready_at),
        "phases": daemon.phases(),
        "hwm_kib": proc_status(daemon.process.pid)["VmHWM"],
    }
    daemon.stop()
    figures["notifications"] = outbox_count(folder / "data" / "jobs.db")
    return figures


def raw_recovery(database: Path, source: Path) -> dict[str, float]:
    """Run the store's recovery statements with plain `sqlite3` on a fresh copy; time each part.

    The same pragmas as the store (`connect()`), automatic checkpoints off as
    during the store's recovery, one endpoint as in the daemon's config.
    """
    copy_database(source, database)
    warm_page_cache(database)
    now = datetime.now(UTC)
    boot_id = "0123456789abcdef0123456789abcdef"
    # The daemon's start-up rule (after_reboot): running since before this host booted.
    recovery = unclaimed_at_start("after_reboot", this_host(), now)
    if recovery is None:
        raise SystemExit("this host's boot time is unreadable: no start-up recovery to compare")
    body = RecoveryNotice(recovery, now, boot_id, None)
    stamp = format_timestamp(now)
    params = {
        "now": stamp,
        "error": recovery.error,
        "started_before": format_optional(recovery.started_before),
        "updated_before": None,
    }
    conn = connect(database)
    conn.execute(queries.AUTOCHECKPOINT_OFF)
    touch_memory()
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    rows = conn.execute(queries.RECOVER_UNCLAIMED_JOBS, params).fetchall()
    updated = time.perf_counter()
    conn.executemany(
        queries.QUEUE_NOTIFICATION,
        (
            ("http://127.0.0.1:9/raw", JOB_RECOVERED, row[0], body(RecoveredJob(*row)), stamp)
            for row in rows
        ),
    )
    queued = time.perf_counter()
    conn.execute("COMMIT")
    committed = time.perf_counter()
    conn.close()
    remove_database(database)
    return {
        "update_s": updated - started,
        "queue_s": queued - updated,
        "commit_s": committed - queued,
        "total_s": committed - started,
    }


def outbox_count(database: Path) -> int:
    """Count queued webhook notifications."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        (count,) = conn.execute("SELECT count(*) FROM webhook_outbox").fetchone()
    finally:
        conn.close()
    return int(count)


def main() -> int:
    """Measure start-up, idle cost and recovery of the real daemon."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3, help="timed starts")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--recover", type=int, default=100_000, help="running jobs to recover")
    parser.add_argument(
        "--recovery-only", action="store_true", help="only measure the recovery start"
    )
    parser.add_argument(
        "--recovery-starts", type=int, default=3, help="timed recovery starts (and raw runs)"
    )
    args = parser.parse_args()
    base = ensure_database(args.cache, args.jobs)
    figures: dict[str, Any] = {}
    notify = NotifySocket()
    try:
        if not args.recovery_only:
            folder = work_dir(args.cache, "daemon")
            config = prepare(folder, base, webhook=False)
            warmup = Daemon(config, notify, folder / "warmup.log", args.cache)
            figures["warmup_ready_s"] = warmup.wait_ready()
            warmup.stop()
            print(
                f"warm-up start (recovers the generator's jobs): {figures['warmup_ready_s']:.2f} s"
            )

            ready_times, stop_times, phases = [], [], []
            daemon = None
            for number in range(args.starts):
                daemon = Daemon(config, notify, folder / f"start-{number}.log", args.cache)
                ready_times.append(daemon.wait_ready())
                phases.append(daemon.phases())
                if number < args.starts - 1:
                    stop_times.append(daemon.stop())
            if daemon is None:
                raise SystemExit("--starts must be at least 1")
            print(
                "start to READY=1, nothing to recover: "
                + ", ".join(f"{value:.3f} s" for value in ready_times)
            )
            print(f"  log events (s after the first log line): {phases[-1]}")
            time.sleep(2.0)  # let start-up work settle
            idle = idle_cost(daemon.process.pid, args.idle_seconds)
            stop_times.append(daemon.stop())
            print(
                f"idle over {idle['seconds']:.0f} s: CPU {idle['cpu_percent']:.3f} % of a core "
                f"({idle['cpu_seconds']:.2f} s), {idle['wakeups_per_s']:.2f} wake-ups/s, "
                f"{idle['threads']} threads"
            )
            print(
                f"  memory: VmRSS max {idle['rss_max_kib'] / 1024:.1f} MiB, "
                f"VmHWM {idle['hwm_kib'] / 1024:.1f} MiB"
            )
            print("SIGTERM to exit: " + ", ".join(f"{value:.3f} s" for value in stop_times))
            figures.update(
                ready_s=ready_times, stop_s=stop_times, phases=phases, idle=idle, jobs=args.jobs
            )

        folder = work_dir(args.cache, "daemon-recovery")
        source = ensure_running_variant(args.cache, args.jobs, args.recover)
        runs, raw_runs = [], []
        for number in range(args.recovery_starts):  # the two sides alternate
            runs.append(recovery_start(folder / f"run-{number}", source, notify, args.cache))
            raw_runs.append(raw_recovery(folder / f"raw-{number}.db", source))
            shutil.rmtree(folder / f"run-{number}", ignore_errors=True)
        for run, raw in zip(runs, raw_runs, strict=True):
            print(
                f"recovery of {args.recover:,} running jobs: READY=1 after {run['ready_s']:.2f} s, "
                f"{run['extend_messages']} EXTEND_TIMEOUT_USEC= messages, "
                f"{run['notifications']:,} notifications queued, "
                f"VmHWM {run['hwm_kib'] / 1024:.0f} MiB"
            )
            print(f"  log events (s after the first log line): {run['phases']}")
            print(
                f"  raw sqlite3, the same statements: {raw['total_s']:.2f} s (outbox "
                f"{raw['queue_s']:.2f} s, UPDATE {raw['update_s']:.2f} s, "
                f"COMMIT {raw['commit_s']:.2f} s)"
            )
        recovery_times = [run["ready_s"] for run in runs]
        raw_times = [raw["total_s"] for raw in raw_runs]
        recovery_s = median(recovery_times)
        extends = min(run["extend_messages"] for run in runs)
        queued = min(run["notifications"] for run in runs)
        hwm = max(run["hwm_kib"] for run in runs)
        figures["recovery"] = {"jobs": args.recover, "runs": runs, "raw": raw_runs}
    finally:
        notify.close()

    targets = []
    if not args.recovery_only:
        targets += [
            Target(
                "start to READY=1 < 1 s, nothing to recover (1M jobs)",
                f"median {median(ready_times):.3f} s, max {max(ready_times):.3f} s",
                max(ready_times) < 1.0,
            ),
            Target(
                "idle CPU < 0.5 % of a core over a minute",
                f"{idle['cpu_percent']:.3f} % ({idle['wakeups_per_s']:.2f} wake-ups/s)",
                idle["cpu_percent"] < 0.5,
            ),
            Target(
                "idle RSS < 60 MB with 1M jobs",
                f"VmRSS {idle['rss_max_kib'] / 1024:.1f} MiB, "
                f"VmHWM {idle['hwm_kib'] / 1024:.1f} MiB",
                idle["rss_max_kib"] * 1024 < 60e6,
            ),
        ]
    targets += [
        Target(
            f"recover {args.recover:,} jobs + outbox < 3 s",
            f"max {max(recovery_times):.2f} s, median {recovery_s:.2f} s over {len(runs)} starts "
            f"({queued:,} notifications queued)",
            max(recovery_times) < 3.0,
        ),
        Target(
            "  raw sqlite3 running the same statements",
            f"median {median(raw_times):.2f} s, range {min(raw_times):.2f}-{max(raw_times):.2f} s "
            f"(daemon/raw {recovery_s / median(raw_times):.2f}x, READY=1 included)",
            None,
        ),
        Target(
            "EXTEND_TIMEOUT_USEC= sent when recovery is long",
            f"at least {extends} message(s) in each start (median {recovery_s:.1f} s)",
            extends > 0 if min(recovery_times) > 2.0 else None,
        ),
        Target(
            "  peak RSS while recovering (VmHWM)",
            f"{hwm / 1024:.0f} MiB",
            None,
        ),
    ]
    for name in ("daemon", "daemon-recovery"):  # 3.4 GB copies
        shutil.rmtree(args.cache / "work" / name, ignore_errors=True)
    print_targets("bench_daemon", targets)
    save_results(
        args.cache, "daemon-recovery" if args.recovery_only else "daemon", targets, figures
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
