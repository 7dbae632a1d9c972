"""Create (and cache) the benchmark databases: 1,000,000 realistic jobs.

The file is made through the real schema: a `JobStore` is opened once so
secautod's migrations create every table and index, then rows are
bulk-inserted with plain `sqlite3` in large transactions (much faster than
one `save_job` per row, and the resulting file is the same). Rows are
inserted in creation order, as an engine would, so old jobs sit at low
rowids. The mix:

- statuses: 78 % completed, 10 % failed, 4 % cancelled, 7.5 % pending,
  0.5 % running;
- creation times spread evenly over the last 120 days;
- playbooks of 0.5-2 KB (60 playbook definitions with 2-9 steps), contexts
  of 0.4-1.3 KB (an alert with indicators), results of ~0.3 KB;
- 92 % of rows carry secautod's timestamp form, 5 % `2026-01-21T10:00:00Z`
  and 3 % Go's `2026-01-21 10:00:00.123456789-07:00`, as other writers do.

Usage: python benchmarks/generate.py [--cache DIR] [--jobs N] [--force]
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from common import base_parser

from secautod import JobStore
from secautod.store.sqlite.queries import JOB_COLUMNS

GENERATOR_VERSION = 3
AGE_DAYS = 120
STATUS_WEIGHTS = {
    "completed": 0.78,
    "failed": 0.10,
    "cancelled": 0.04,
    "pending": 0.075,
    "running": 0.005,
}
TERMINAL = ("completed", "failed", "cancelled")
BATCH_ROWS = 20_000
TRANSACTION_ROWS = 200_000

_PLAYBOOK_NAMES = (
    "phishing-triage",
    "malware-containment",
    "brute-force-response",
    "impossible-travel",
    "ransomware-isolation",
    "suspicious-login",
    "dlp-incident",
    "vulnerability-remediation",
    "c2-beacon-block",
    "insider-threat-review",
    "cloud-misconfiguration",
    "edr-alert-enrichment",
)
_ACTIONS = (
    "virustotal.lookup_hash",
    "virustotal.lookup_ip",
    "abuseipdb.check",
    "crowdstrike.contain_host",
    "crowdstrike.get_detections",
    "okta.suspend_user",
    "okta.reset_sessions",
    "splunk.search",
    "jira.create_ticket",
    "slack.notify_channel",
    "mail.quarantine_message",
    "firewall.block_ip",
    "sentinel.add_comment",
    "whois.lookup_domain",
)
_SOURCES = ("splunk", "sentinel", "crowdstrike", "guardduty", "okta", "proofpoint", "suricata")
_SEVERITIES = ("low", "medium", "high", "critical")
_VERDICTS = ("benign", "suspicious", "malicious", "false_positive")
_ERRORS = (
    "step enrich_ip failed: virustotal.lookup_ip timed out after 30s",
    "step contain_host failed: crowdstrike API returned 503 Service Unavailable",
    "step suspend_user failed: okta API rate limit exceeded (429)",
    "playbook aborted: input alert.src_ip is missing",
    "step create_ticket failed: jira authentication rejected (401)",
)
_GO_ZONE = timezone(timedelta(hours=-7))


class JobFactory:
    """Makes realistic job values (Python objects and their JSON text) from a seeded RNG."""

    def __init__(self, seed: int = 20260121) -> None:
        self.rng = random.Random(seed)
        self.playbooks = [self._playbook(index) for index in range(60)]
        self.playbook_texts = [_dumps(playbook) for playbook in self.playbooks]

    def _playbook(self, index: int) -> dict[str, Any]:
        rng = self.rng
        steps = []
        for number in range(rng.randint(2, 9)):
            action = rng.choice(_ACTIONS)
            steps.append(
                {
                    "id": f"step-{number + 1}",
                    "name": action.split(".", 1)[1],
                    "action": action,
                    "inputs": {"target": "{{alert.src_ip}}", "lookback": "24h"},
                    "timeout_seconds": rng.choice((10, 30, 60, 120)),
                    "retries": rng.randint(0, 3),
                    "on_failure": rng.choice(("abort", "continue")),
                }
            )
        return {
            "name": _PLAYBOOK_NAMES[index % len(_PLAYBOOK_NAMES)],
            "version": index // len(_PLAYBOOK_NAMES) + 1,
            "owner": f"soc-team-{'abc'[index % 3]}",
            "trigger": {"source": _SOURCES[index % len(_SOURCES)], "min_severity": "medium"},
            "steps": steps,
        }

    def playbook(self) -> dict[str, Any]:
        """Return one of the playbook definitions."""
        return self.rng.choice(self.playbooks)

    def context(self, created: datetime) -> dict[str, Any]:
        """Return an alert context (~0.4-1.3 KB as JSON)."""
        rng = self.rng
        indicators = [
            {"type": "sha256", "value": f"{rng.getrandbits(256):064x}"}
            for _ in range(rng.randint(1, 6))
        ]
        seen = created - timedelta(minutes=rng.randint(1, 600))
        return {
            "alert": {
                "id": f"ALR-{rng.randint(1, 99_999_999):08d}",
                "source": rng.choice(_SOURCES),
                "rule": f"rule-{rng.randint(1, 900)}",
                "severity": rng.choice(_SEVERITIES),
                "src_ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                "dst_ip": f"203.0.113.{rng.randint(1, 254)}",
                "hostname": f"ws-{rng.randint(1, 9999):04d}.corp.example.org",
                "user": f"user{rng.randint(1, 20000)}@example.org",
                "indicators": indicators,
            },
            "tenant": rng.choice(("acme", "globex", "initech", "umbrella")),
            "requested_by": "engine",
            "first_seen": seen.isoformat(timespec="seconds"),
            "event_count": rng.randint(1, 5000),
        }

    def results(self, status: str) -> dict[str, Any] | None:
        """Return results for a finished job (~0.3 KB), None for others."""
        rng = self.rng
        if status not in ("completed", "failed"):
            return None
        return {
            "verdict": rng.choice(_VERDICTS),
            "steps_completed": rng.randint(1, 14),
            "actions_taken": rng.sample(_ACTIONS, rng.randint(1, 4)),
            "ticket": f"SOC-{rng.randint(1000, 99999)}",
            "score": round(rng.random() * 100, 2),
        }

    def status(self) -> str:
        """Return a status drawn from the mix."""
        return self.rng.choices(tuple(STATUS_WEIGHTS), weights=tuple(STATUS_WEIGHTS.values()))[0]

    def row(self, created: datetime, status: str | None = None) -> tuple[Any, ...]:
        """Return one `jobs` row (JOB_COLUMNS order) created at `created`."""
        rng = self.rng
        status = status or self.status()
        started = created + timedelta(seconds=rng.uniform(0.05, 20))
        completed = started + timedelta(seconds=rng.uniform(1, 900))
        if status == "pending":
            started_at, completed_at = None, None
        elif status == "running":
            started_at, completed_at = started, None
        else:
            started_at, completed_at = (None if status == "cancelled" else started), completed
        updated = completed_at or started_at or created
        form = rng.random()
        stamp = _secautod_stamp if form < 0.92 else _rfc3339_stamp if form < 0.97 else _go_stamp
        results = self.results(status)
        error = rng.choice(_ERRORS) if status == "failed" else None
        if status == "cancelled":
            error = "cancelled by operator"
        return (
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            status,
            rng.choice(self.playbook_texts),
            _dumps(self.context(created)),
            None if results is None else _dumps(results),
            error,
            stamp(created),
            None if started_at is None else stamp(started_at),
            None if completed_at is None else stamp(completed_at),
            stamp(updated),
        )

    def rows(self, count: int, now: datetime) -> Iterator[tuple[Any, ...]]:
        """Yield `count` rows in creation order, spread over the last AGE_DAYS days."""
        span = AGE_DAYS * 86400.0
        # The newest job is an hour old, so every completion time lies in the past.
        start = now - timedelta(seconds=span + 3600)
        for index in range(count):
            offset = span * index / count + self.rng.uniform(0, span / count)
            yield self.row(start + timedelta(seconds=offset))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _secautod_stamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def _rfc3339_stamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}Z"


def _go_stamp(moment: datetime) -> str:
    local = moment.astimezone(_GO_ZONE)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond:06d}{local.microsecond % 1000:03d}-07:00"


INSERT = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608


def database_path(cache: Path, jobs: int, running: int = 0) -> Path:
    """Return where the database with `jobs` jobs (and `running` forced running) is cached."""
    suffix = f"-running{running}" if running else ""
    return cache / f"jobs-{jobs}{suffix}.db"


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def _cached(path: Path) -> dict[str, Any] | None:
    meta = _meta_path(path)
    if not path.is_file() or not meta.is_file():
        return None
    document: dict[str, Any] = json.loads(meta.read_text())
    return document if document.get("version") == GENERATOR_VERSION else None


def ensure_database(cache: Path, jobs: int, *, force: bool = False, quiet: bool = False) -> Path:
    """Return the cached database of `jobs` jobs, generating it first if needed."""
    path = database_path(cache, jobs)
    if not force and _cached(path) is not None:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", ".meta.json"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    started = time.perf_counter()
    now = datetime.now(UTC)
    with JobStore(path):  # runs the migrations: the real schema
        pass
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -2000000")  # 2 GB: keep every index page in memory
    factory = JobFactory()
    rows = factory.rows(jobs, now)
    done = 0
    while done < jobs:
        conn.execute("BEGIN")
        in_transaction = 0
        while in_transaction < TRANSACTION_ROWS and done < jobs:
            batch = [next(rows) for _ in range(min(BATCH_ROWS, jobs - done))]
            conn.executemany(INSERT, batch)
            done += len(batch)
            in_transaction += len(batch)
        conn.execute("COMMIT")
        if not quiet:
            print(f"  {done:,} / {jobs:,} jobs ({time.perf_counter() - started:.0f} s)", flush=True)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    counts = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
    conn.close()
    meta = {
        "version": GENERATOR_VERSION,
        "jobs": jobs,
        "generated_at": now.isoformat(),
        "seconds": round(time.perf_counter() - started, 1),
        "size_bytes": path.stat().st_size,
        "status_counts": counts,
    }
    _meta_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    if not quiet:
        print(f"generated {path} ({path.stat().st_size / 1e9:.2f} GB) in {meta['seconds']} s")
    return path


def ensure_running_variant(cache: Path, jobs: int, running: int) -> Path:
    """Return a copy of the large database in which `running` jobs in all are `running`.

    The newest jobs that are not running yet are turned into running ones
    (started, not completed, no results), as a crash in the middle of a busy
    period would leave them.
    """
    path = database_path(cache, jobs, running)
    if _cached(path) is not None:
        return path
    base = ensure_database(cache, jobs)
    for suffix in ("", "-wal", "-shm", ".meta.json"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(base, path)
    path.chmod(0o600)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    (already,) = conn.execute("SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()
    conn.execute(
        """UPDATE jobs SET status = 'running', completed_at = NULL, results = NULL,
               error = NULL, started_at = coalesce(started_at, created_at),
               updated_at = coalesce(started_at, created_at)
           WHERE rowid IN (SELECT rowid FROM jobs WHERE status <> 'running'
                           ORDER BY rowid DESC LIMIT ?)""",
        (max(0, running - already),),
    )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (count,) = conn.execute("SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()
    conn.close()
    meta = {"version": GENERATOR_VERSION, "jobs": jobs, "running": count}
    _meta_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def main() -> int:
    """Generate the large database unless it is cached."""
    parser = base_parser("Generate the benchmark database.")
    parser.add_argument("--force", action="store_true", help="regenerate even if cached")
    args = parser.parse_args()
    path = ensure_database(args.cache, args.jobs, force=args.force)
    print(f"database: {path}")
    print(_meta_path(path).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
