"""Recovery of interrupted jobs: which jobs, what they are told, who hears of it.

The store fails the jobs and queues the notifications in one transaction;
this module decides the error text and the webhook body and logs what was
recovered.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import datetime

from secautod.log import get_logger
from secautod.metrics import DAEMON_RESTARTED, record_recovered
from secautod.store import JobStore
from secautod.store.records import RecoveredJob
from secautod.timestamps import format_timestamp, isoformat_utc

log = get_logger("secautod.recovery")

JOB_RECOVERED = "job_recovered"
# Up to this many recovered jobs get a job_recovered line each; more are logged
# as job_recovered_batch lines of ids (100,000 single lines take seconds).
RECOVERED_LOG_ONE_BY_ONE = 1000
RECOVERED_LOG_BATCH = 1000


def recover_interrupted_jobs(
    store: JobStore, boot_id: str, now: datetime, endpoints: Sequence[str]
) -> list[RecoveredJob]:
    """Fail every `running` job as interrupted by a restart; notify `endpoints` of each."""
    error = recovery_error(boot_id, now)
    body = RecoveryNotice(boot_id, now, error)
    recovered = store.recover_running_jobs(error, now, endpoints, body)
    _log_recovered([job.id for job in recovered], boot_id)
    record_recovered(DAEMON_RESTARTED, len(recovered))
    log.info(
        "jobs_recovered",
        count=len(recovered),
        boot_id=boot_id,
        notifications_queued=len(recovered) * len(endpoints),
    )
    return recovered


def recovery_error(boot_id: str, now: datetime) -> str:
    """Return the `error` text of a job recovered by the daemon start `boot_id`."""
    return (
        f"interrupted: the job was running when secautod restarted "
        f"(recovered by boot {boot_id} at {format_timestamp(now)} UTC)"
    )


class RecoveryNotice:
    """Builds the `job_recovered` webhook body of each job one recovery failed.

    `{"id", "event", "boot_id", "timestamp", "job": {"id", "status", "error",
    "created_at", "started_at", "completed_at", "updated_at"}}`: the job's
    playbook and context are not copied (the receiver has them, and security
    context should not sit in an outbox). `id` is unique per notification.
    The parts shared by every job are encoded once.
    """

    def __init__(self, boot_id: str, now: datetime, error: str) -> None:
        stamp = json.dumps(isoformat_utc(now))
        event = {"event": JOB_RECOVERED, "boot_id": boot_id}
        self._to_job_id = '",' + json.dumps(event, separators=(",", ":"))[1:-1]
        self._to_job_id += f',"timestamp":{stamp},"job":{{"id":'
        self._to_created_at = f',"status":"failed","error":{json.dumps(error)},"created_at":'
        self._end = f',"completed_at":{stamp},"updated_at":{stamp}}}}}'

    def __call__(self, job: RecoveredJob) -> str:
        """Return the body for one recovered job."""
        return (
            '{"id":"'
            + secrets.token_hex(16)
            + self._to_job_id
            + json.dumps(job.id, ensure_ascii=False)
            + self._to_created_at
            + json.dumps(job.created_at, ensure_ascii=False)
            + ',"started_at":'
            + json.dumps(job.started_at, ensure_ascii=False)
            + self._end
        )


def _log_recovered(job_ids: list[str], boot_id: str) -> None:
    """Log each recovered job; after a mass crash, in batches of ids (one line each)."""
    if len(job_ids) <= RECOVERED_LOG_ONE_BY_ONE:
        for job_id in job_ids:
            log.info("job_recovered", job_id=job_id, boot_id=boot_id)
        return
    for start in range(0, len(job_ids), RECOVERED_LOG_BATCH):
        batch = job_ids[start : start + RECOVERED_LOG_BATCH]
        log.info("job_recovered_batch", job_ids=batch, count=len(batch), boot_id=boot_id)
