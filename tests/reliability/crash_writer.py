"""A stand-in for the SOAR engine: drives jobs through their life via the Python API.

Usage: crash_writer.py DATABASE LEDGER PREFIX

It holds an engine session (so its running jobs are claimed) and drives
each job pending -> running -> running with results -> completed. After
every call returns, one line `<step> <job id>` is appended to the ledger
with a single write(2), so the ledger lists exactly the operations the
store acknowledged. It runs until it is killed; should secautod ever
declare this live engine gone, it writes `LOST <job id>` and exits 3.
"""

from __future__ import annotations

import itertools
import os
import sys
from datetime import timedelta

from secautod import Job, JobStatus, JobStore, SessionLostError


def main() -> None:
    database, ledger_path, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
    ledger = os.open(ledger_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    store = JobStore(database, busy_timeout=10.0)
    store.engine_session(name=f"crash-{prefix}", lease=timedelta(seconds=30)).open()

    def acknowledge(step: int, job_id: str) -> None:
        os.write(ledger, f"{step} {job_id}\n".encode())

    for number in itertools.count():
        job_id = f"{prefix}-{number}"
        try:
            store.save_job(
                Job.create({"name": "crash-test", "n": number}, {"writer": prefix}, job_id=job_id)
            )
            acknowledge(0, job_id)
            store.update_job_status(job_id, JobStatus.RUNNING)
            acknowledge(1, job_id)
            store.update_job_results(job_id, {"n": number})
            acknowledge(2, job_id)
            store.update_job_status(job_id, JobStatus.COMPLETED)
            acknowledge(3, job_id)
        except SessionLostError:
            os.write(ledger, f"LOST {job_id}\n".encode())
            sys.exit(3)


if __name__ == "__main__":
    main()
