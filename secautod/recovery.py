"""Recovery of interrupted jobs: the proofs that an engine is gone, and what follows.

A job is interrupted when the process running it is gone, not when
secautod restarts (SPEC §9). `session_verdict` names the proof for an
engine session (`engine_exited`, `host_rebooted`, `lease_expired`,
`engine_stopped`); jobs no session claims are recovered by the rules in
`unclaimed_at_start`, `stale_jobs` and `unclaimed_now`. `recover` fails the
jobs through the store (one transaction, webhooks queued with them), logs
one `job_recovered` line per job and returns what it recovered.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from secautod.config import AT_START
from secautod.log import get_logger
from secautod.metrics import record_recovered
from secautod.processes import ProcessState, probe_process
from secautod.reasons import ENGINE_EXITED, ENGINE_STOPPED, HOST_REBOOTED, LEASE_EXPIRED, STALE
from secautod.store import JobStore
from secautod.store.records import JOB_RECOVERED, RecoveredJob, Recovery, SessionRecord
from secautod.timestamps import format_timestamp, isoformat_utc

log = get_logger("secautod.recovery")

# Up to this many recovered jobs get a job_recovered line each; more are logged
# as job_recovered_batch lines of ids (100,000 single lines take seconds).
RECOVERED_LOG_ONE_BY_ONE = 1000
RECOVERED_LOG_BATCH = 1000

Probe = Callable[[int, str], ProcessState]


@dataclass(frozen=True, slots=True)
class Host:
    """Where the supervisor runs: what a session's record is compared with."""

    name: str
    boot_id: str
    pid_namespace: str
    boot_time: datetime | None


# -- the proofs ----------------------------------------------------------------------
def session_verdict(
    session: SessionRecord, here: Host, silent_for: timedelta, probe: Probe = probe_process
) -> str | None:
    """Return the reason `session`'s engine is proven gone, or None while it may live.

    `silent_for` is how long the supervisor has seen no renewal of the lease.
    A process is only looked at in the pid namespace it was recorded in, on
    the same boot; elsewhere, and wherever the kernel's answer is no proof,
    the lease decides.
    """
    if session.closed_at is not None:
        return ENGINE_STOPPED
    if session.host == here.name and session.boot_id and session.boot_id != here.boot_id:
        return HOST_REBOOTED
    seen_here = (
        session.pid_namespace == here.pid_namespace != "" and session.boot_id == here.boot_id
    )
    if seen_here and probe(session.pid, session.process_start) is ProcessState.GONE:
        return ENGINE_EXITED
    if silent_for > session.lease:
        return LEASE_EXPIRED
    return None


class LeaseWatch:
    """How long each session has gone without renewing, on the supervisor's own clock.

    Renewals are counted, not their timestamps compared: a wall clock set
    forward never expires a lease, and a supervisor that just started gives
    every engine a full lease to show it lives.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._seen: dict[str, tuple[int, float]] = {}

    def silent_for(self, session: SessionRecord) -> timedelta:
        """Return how long `session`'s renewal count has stood still."""
        now = self._monotonic()
        seen = self._seen.get(session.session_id)
        if seen is None or seen[0] != session.renewals:
            self._seen[session.session_id] = (session.renewals, now)
            return timedelta(0)
        return timedelta(seconds=now - seen[1])

    def keep_only(self, session_ids: set[str]) -> None:
        """Forget sessions no longer looked at."""
        for session_id in set(self._seen) - session_ids:
            del self._seen[session_id]


# -- what each recovery says ---------------------------------------------------------
def session_recovery(session: SessionRecord, reason: str, now: datetime) -> Recovery:
    """Return the recovery of the running jobs of a session whose engine is gone."""
    why = {
        ENGINE_EXITED: f"the engine process {session.pid} exited",
        HOST_REBOOTED: f"the engine's host {session.host} rebooted",
        LEASE_EXPIRED: f"the engine did not renew its {_seconds(session.lease)} s lease",
        ENGINE_STOPPED: "the engine closed its session with the job still running",
    }[reason]
    error = (
        f"interrupted ({reason}): {why}; engine session {session.describe()} "
        f"(session {session.session_id}); recovered by secautod at {format_timestamp(now)} UTC"
    )
    return Recovery(reason, error, session_id=session.session_id)


def unclaimed_at_start(rule: str, here: Host, now: datetime) -> Recovery | None:
    """Return the start-up recovery of running jobs no engine session claims, if any.

    `after_reboot`: those running since before this host booted (their
    engine cannot have survived); `at_start`: all of them.
    """
    stamp = format_timestamp(now)
    if rule == AT_START:
        return Recovery(
            ENGINE_STOPPED,
            f"interrupted ({ENGINE_STOPPED}): the job was running when secautod started and no "
            f"engine session claims it (supervision.unclaimed: at_start); recovered by "
            f"secautod at {stamp} UTC",
        )
    if here.boot_time is None:
        return None
    return Recovery(
        HOST_REBOOTED,
        f"interrupted ({HOST_REBOOTED}): the job was running since before this host booted "
        f"at {format_timestamp(here.boot_time)} UTC and no engine session claims it; "
        f"recovered by secautod at {stamp} UTC",
        started_before=here.boot_time,
    )


def stale_jobs(stale_after: timedelta, now: datetime) -> Recovery:
    """Return the recovery of unclaimed running jobs not updated for `stale_after`."""
    return Recovery(
        STALE,
        f"interrupted ({STALE}): no update for more than {_hours(stale_after)} h and no engine "
        f"session claims it (jobs.stale_after); recovered by secautod at "
        f"{format_timestamp(now)} UTC",
        updated_before=now - stale_after,
    )


def unclaimed_now(now: datetime) -> Recovery:
    """Return the recovery `secautod recover` runs: every running job no session claims."""
    return Recovery(
        ENGINE_STOPPED,
        f"interrupted ({ENGINE_STOPPED}): the engine stopped with the job running and no engine "
        f"session claims it (secautod recover); recovered at {format_timestamp(now)} UTC",
    )


# -- doing it --------------------------------------------------------------------------
def recover(
    store: JobStore,
    recovery: Recovery,
    now: datetime,
    endpoints: Sequence[str],
    *,
    boot_id: str | None = None,
    session: SessionRecord | None = None,
) -> list[RecoveredJob]:
    """Fail the jobs `recovery` selects, queue their notifications, log each one."""
    body = RecoveryNotice(recovery, now, boot_id, session)
    recovered = store.recover_jobs(recovery, now, endpoints, body)
    session_name = session.describe() if session is not None else None
    _log_recovered(recovered, recovery.reason, session_name, recovery.session_id)
    if recovered or recovery.session_id is not None:
        log.info(
            "jobs_recovered",
            count=len(recovered),
            reason=recovery.reason,
            session=recovery.session_id,
            boot_id=boot_id,
            notifications_queued=len(recovered) * len(endpoints),
        )
    record_recovered(recovery.reason, len(recovered))
    return recovered


class RecoveryNotice:
    """Builds the `job_recovered` webhook body of each job one recovery failed.

    `{"id", "event", "reason", "session", "boot_id", "timestamp", "job":
    {"id", "rowid", "status", "error", "created_at", "started_at",
    "completed_at", "updated_at"}}`: the job's playbook and context are not
    copied (the receiver has them, and security context should not sit in
    an outbox). `id` is unique per notification. The parts shared by every
    job are encoded once.
    """

    def __init__(
        self,
        recovery: Recovery,
        now: datetime,
        boot_id: str | None,
        session: SessionRecord | None,
    ) -> None:
        stamp = json.dumps(isoformat_utc(now))
        event = {
            "event": JOB_RECOVERED,
            "reason": recovery.reason,
            "session": None
            if session is None
            else {
                "id": session.session_id,
                "name": session.name,
                "host": session.host,
                "pid": session.pid,
            },
            "boot_id": boot_id,
        }
        shared = json.dumps(event, separators=(",", ":"), ensure_ascii=False)[1:-1]
        self._to_job_id = f'",{shared},"timestamp":{stamp},"job":{{"id":'
        self._to_created_at = (
            f',"status":"failed","error":{json.dumps(recovery.error, ensure_ascii=False)},'
            f'"created_at":'
        )
        self._end = f',"completed_at":{stamp},"updated_at":{stamp}}}}}'

    def __call__(self, job: RecoveredJob) -> str:
        """Return the body for one recovered job."""
        return (
            '{"id":"'
            + secrets.token_hex(16)
            + self._to_job_id
            + json.dumps(job.id, ensure_ascii=False)
            + f',"rowid":{int(job.rowid)}'
            + self._to_created_at
            + json.dumps(job.created_at, ensure_ascii=False)
            + ',"started_at":'
            + json.dumps(job.started_at, ensure_ascii=False)
            + self._end
        )


def _log_recovered(
    jobs: list[RecoveredJob], reason: str, session: str | None, session_id: str | None
) -> None:
    """Log each recovered job at warning; after a mass crash, in batches of ids."""
    if len(jobs) <= RECOVERED_LOG_ONE_BY_ONE:
        for job in jobs:
            log.warning(
                JOB_RECOVERED,
                job_id=job.id,
                rowid=job.rowid,
                reason=reason,
                session=session,
                session_id=session_id,
            )
        return
    for start in range(0, len(jobs), RECOVERED_LOG_BATCH):
        batch = jobs[start : start + RECOVERED_LOG_BATCH]
        log.warning(
            "job_recovered_batch",
            job_ids=[job.id for job in batch],
            rowids=[job.rowid for job in batch],
            count=len(batch),
            reason=reason,
            session=session,
            session_id=session_id,
        )


def _seconds(lease: timedelta) -> str:
    return f"{lease.total_seconds():g}"


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g}"
