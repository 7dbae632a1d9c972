"""Copying one job store into another (`secautod migrate`): SQLite to PostgreSQL.

Rows are read in pages by rowid and each page is committed on its own, so a
stopped copy keeps what it wrote and a re-run goes on: jobs already in the
target are skipped (`import_encoded_jobs`), never overwritten, so running it
again changes nothing. Rows are carried over as stored (other writers'
statuses, JSON text unparsed); a row whose values the target cannot hold (an
id that is not text, bytes that are not UTF-8, a date no reader knows) is
reported by rowid and left behind. At the end the target is read back: its
counts per status and an order-independent checksum of its ids must equal
the copied rows'.

Only the `jobs` table is copied: secautod's own bookkeeping (daemon starts,
maintenance runs, backups, the webhook outbox, engine sessions) belongs to
the host it ran on.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from secautod.errors import StoreError
from secautod.store import JobStore
from secautod.store.records import UnreadableRow

DEFAULT_BATCH_JOBS = 2000
# Unreadable rows named in the report; beyond this they are only counted.
LISTED_UNREADABLE_ROWS = 1000
_CHECKSUM_MODULUS = 2**64

Phase = Literal["copy", "verify"]
# Told after each page: the phase, rows done so far, rows in all (the source's count).
ProgressCallback = Callable[[Phase, int, int], None]


class MigrationMismatch(StoreError):
    """The target does not hold what was copied: counts per status or the id checksum differ."""


@dataclass
class JobDigest:
    """Counts per status and an order-independent checksum of ids (a sum of id hashes)."""

    by_status: Counter[str] = field(default_factory=Counter)
    checksum: int = 0

    def add(self, job_id: str, status: str) -> None:
        """Count one job."""
        self.by_status[status] += 1
        digest = hashlib.blake2b(job_id.encode("utf-8", "surrogatepass"), digest_size=8)
        self.checksum = (self.checksum + int.from_bytes(digest.digest())) % _CHECKSUM_MODULUS

    @property
    def total(self) -> int:
        """How many jobs were counted."""
        return sum(self.by_status.values())

    def to_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values."""
        return {
            "jobs": self.total,
            "by_status": dict(sorted(self.by_status.items())),
            "id_checksum": f"{self.checksum:016x}",
        }


@dataclass
class MigrationReport:
    """What one `migrate_jobs` run did and found."""

    rows_read: int = 0
    copied: int = 0
    already_present: int = 0
    unreadable_count: int = 0
    unreadable: list[UnreadableRow] = field(default_factory=list)
    source: JobDigest = field(default_factory=JobDigest)
    target: JobDigest = field(default_factory=JobDigest)

    @property
    def matches(self) -> bool:
        """Tell whether the target holds exactly the copied jobs (counts and checksum)."""
        return (
            self.source.by_status == self.target.by_status
            and self.source.checksum == self.target.checksum
        )

    def mismatch(self) -> str:
        """Say in one line how source and target differ ('' when they match)."""
        if self.matches:
            return ""
        statuses = sorted(set(self.source.by_status) | set(self.target.by_status))
        differing = [
            f"{status} {self.source.by_status[status]} vs {self.target.by_status[status]}"
            for status in statuses
            if self.source.by_status[status] != self.target.by_status[status]
        ]
        counts = f"jobs per status differ ({', '.join(differing)})" if differing else ""
        checksum = "id checksums differ" if self.source.checksum != self.target.checksum else ""
        return " and ".join(part for part in (counts, checksum) if part)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values."""
        return {
            "rows_read": self.rows_read,
            "copied": self.copied,
            "already_present": self.already_present,
            "unreadable": self.unreadable_count,
            "unreadable_rows": [row.to_dict() for row in self.unreadable],
            "source": self.source.to_dict(),
            "target": self.target.to_dict(),
            "verified": self.matches,
        }


def migrate_jobs(
    source: JobStore,
    target: JobStore,
    *,
    batch: int = DEFAULT_BATCH_JOBS,
    on_progress: ProgressCallback | None = None,
) -> MigrationReport:
    """Copy every readable job of `source` that `target` lacks, then read `target` back.

    Memory stays one page of `batch` rows. The report's `matches` tells
    whether the target's counts per status and id checksum equal the copied
    rows' (`check_copy` raises when not).
    """
    if batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    report = MigrationReport()
    total = source.get_stats().total
    after = 0
    while (page := source.export_jobs(after, batch)).last_rowid is not None:
        after = page.last_rowid
        if page.jobs:
            counts = target.import_encoded_jobs([page.jobs])
            report.copied += counts.imported
            report.already_present += counts.skipped
        for job_id, status, *_ in page.jobs:
            report.source.add(job_id, status)
        report.unreadable_count += len(page.unreadable)
        room = LISTED_UNREADABLE_ROWS - len(report.unreadable)
        report.unreadable.extend(page.unreadable[: max(room, 0)])
        report.rows_read += len(page.jobs) + len(page.unreadable)
        if on_progress is not None:
            on_progress("copy", report.rows_read, max(total, report.rows_read))
    _read_back(target, report, batch, on_progress)
    return report


def check_copy(report: MigrationReport, target: JobStore) -> None:
    """Raise `MigrationMismatch` (one line) unless the target matched the copied rows."""
    if not report.matches:
        raise MigrationMismatch(
            f"the copy in {target_name(target)} does not match the source: {report.mismatch()} "
            f"(does the target hold other jobs, or did a writer change either side?)"
        )


def _read_back(
    target: JobStore, report: MigrationReport, batch: int, on_progress: ProgressCallback | None
) -> None:
    """Count the target's jobs per status and checksum its ids, a page at a time."""
    after: str | None = None
    expected = report.source.total
    while keys := target.job_keys(after, batch):
        for job_id, status in keys:
            report.target.add(job_id, status)
        after = keys[-1][0]
        if on_progress is not None:
            done = report.target.total
            on_progress("verify", done, max(expected, done))


def target_name(store: JobStore) -> str:
    """Name a store for messages: a URL without its password, or a path."""
    return str(getattr(store, "display_url", store.path))
