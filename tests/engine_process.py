"""A real engine process for the tests: opens a session, runs jobs, waits for orders.

Usage: python engine_process.py DATABASE LEASE_SECONDS JOB_ID...

Opens an engine session, moves each job to `running` (claimed by the
session), prints `ready <session_id>` and then reads commands from stdin,
one per line: `complete JOB_ID` (update_job_status completed: prints `ok`
or `lost` for SessionLostError), `close` (closes the session and exits).
EOF at stdin exits without closing the session, like a crash.
"""

from __future__ import annotations

import sys
from datetime import timedelta

from secautod import JobStatus, JobStore, SessionLostError


def main() -> int:
    database, lease, *job_ids = sys.argv[1:]
    store = JobStore(database)
    session = store.engine_session(name="test-engine", lease=timedelta(seconds=float(lease)))
    session.open()
    for job_id in job_ids:
        store.update_job_status(job_id, JobStatus.RUNNING)
    print(f"ready {session.session_id}", flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "complete":
            try:
                store.update_job_status(argument, JobStatus.COMPLETED)
            except SessionLostError:
                print("lost", flush=True)
            else:
                print("ok", flush=True)
        elif command == "close":
            session.close()
            store.close()
            print("closed", flush=True)
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
