"""Failover on a shared PostgreSQL store: how long maintenance has no leader.

Starts three real `secautod run` instances (own data directories, one fresh
database on the local server) with the default 15 s lease, then, `--trials`
times each:

1. **Crash**: SIGKILL the leader, and time from the kill to a standby's
   `leadership_acquired` line. The lease decides: between two thirds of a
   lease and one lease, by where in its renewal cycle the leader died.
2. **Clean stop**: SIGTERM the leader (it releases the lease), and time
   from the signal to a standby's `leadership_acquired`. A standby looks
   again at most a third of a lease after its last look.

After each trial a new instance replaces the one that went, so three run
throughout. The database is dropped at the end.

Usage: python benchmarks/bench_failover.py [--trials 3] [--lease 15]
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import yaml
from common import SECAUTOD, Target, base_parser, child_env, median, print_targets, save_results
from common import work_dir as fresh_work_dir

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POLL_SECONDS = 0.02


class Instance:
    """One `secautod run` process and its JSON log."""

    def __init__(self, directory: Path, url: str, lease: float, cache: Path) -> None:
        directory.mkdir(parents=True)
        config = directory / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "data_directory": "data",
                    "logging": {"level": "info", "format": "json"},
                    "storage": {"url": url, "leader_lease_seconds": lease},
                    "jobs": {"backup_enabled": False},
                }
            )
        )
        self.log = directory / "daemon.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [SECAUTOD, "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=child_env(cache),
            )

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [event for line in lines if (event := json.loads(line)).get("event") == name]


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"timed out waiting for {what}")


def acquired(instances: list[Instance], term: int) -> Instance | None:
    """Return the instance that took `term`, if one did."""
    for instance in instances:
        if any(event["term"] == term for event in instance.events("leadership_acquired")):
            return instance
    return None


def create_database() -> tuple[str, str]:
    name = f"bench_failover_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")  # a generated name
    return name, urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def one_failover(
    instances: list[Instance], term: int, sig: signal.Signals, lease: float
) -> tuple[float, Instance]:
    """Signal the leader of `term`; return the seconds until `term + 1` began, and the leader."""
    leader = acquired(instances, term)
    assert leader is not None
    standbys = [instance for instance in instances if instance is not leader]
    sent = time.monotonic()
    leader.process.send_signal(sig)
    wait_for(lambda: acquired(standbys, term + 1), 3 * lease, f"term {term + 1}")
    took = time.monotonic() - sent
    leader.process.wait(30)
    return took, leader


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="kills and clean stops each (3)")
    parser.add_argument("--lease", type=float, default=15.0, help="leader_lease_seconds (15)")
    args = parser.parse_args()
    work = fresh_work_dir(args.cache, "failover")
    name, url = create_database()
    instances: list[Instance] = []
    figures: dict[str, list[float]] = {"kill": [], "stop": []}
    try:
        for index in range(3):
            instances.append(Instance(work / f"i{index}", url, args.lease, args.cache))
        wait_for(lambda: acquired(instances, 1), 60, "the first leader")
        term, started = 1, 3
        for trial in range(args.trials):
            for kind, sig in (("kill", signal.SIGKILL), ("stop", signal.SIGTERM)):
                took, gone = one_failover(instances, term, sig, args.lease)
                figures[kind].append(took)
                print(f"trial {trial + 1} {kind:4}: term {term} -> {term + 1} in {took:.2f} s")
                term += 1
                instances.remove(gone)
                instances.append(Instance(work / f"i{started}", url, args.lease, args.cache))
                started += 1
                wait_for(lambda: instances[-1].events("daemon_ready"), 60, "the replacement ready")
    finally:
        for instance in instances:
            instance.process.kill()
            instance.process.wait(30)
        drop_database(name)
    lease = args.lease
    kills, stops = figures["kill"], figures["stop"]
    targets = [
        Target(
            f"failover after SIGKILL of the leader (lease {lease:g} s)",
            f"median {median(kills):.1f} s, max {max(kills):.1f} s ({len(kills)} trials)",
            max(kills) <= lease + 1.0,
        ),
        Target(
            "handover after a clean stop (lease released)",
            f"median {median(stops):.1f} s, max {max(stops):.1f} s ({len(stops)} trials)",
            None,
        ),
    ]
    print_targets("failover", targets)
    save_results(args.cache, "failover", targets, {**figures, "lease_seconds": lease})


if __name__ == "__main__":
    main()
