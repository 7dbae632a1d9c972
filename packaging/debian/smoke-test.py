"""Build-time smoke test: the built package works with Debian's libraries.

Run by dh_auto_test (pybuild puts the built package on PYTHONPATH). It opens
a new job store, which applies the packaged SQL migrations, stores and reads
a job, takes a verified backup, runs the maintenance scheduler (APScheduler)
for a moment and logs a JSON event through structlog, as the daemon does.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

from secautod import Job, JobStore, __version__
from secautod.config import load_config
from secautod.log import configure_logging, get_logger
from secautod.scheduler import MaintenanceScheduler


def check(condition: object, problem: str) -> None:
    """Fail the build with `problem` unless `condition` holds."""
    if not condition:
        raise SystemExit(f"smoke test failed: {problem}")


with tempfile.TemporaryDirectory() as tmp:
    config_path = Path(tmp) / "config.yaml"
    config_path.write_text('data_directory: "data"\nlogging:\n  format: json\n')
    config = load_config(config_path)
    with JobStore(config.database_path) as store:
        job = Job.create({"name": "smoke"}, {"alert_id": 1})
        store.save_job(job)
        loaded = store.load_job(job.id)
        check(loaded is not None, "the saved job is missing")
        check(
            loaded is not None and (loaded.playbook, loaded.context) == (job.playbook, job.context),
            f"the job read back differs: {loaded}",
        )
        check(store.backup_jobs().is_file(), "the backup file is missing")
        scheduler = MaintenanceScheduler(store, config)
        scheduler.start()
        check(scheduler.healthy(), "the scheduler thread is not running")
        check(scheduler.next_run_times(), "no maintenance task is scheduled")
        check(scheduler.shutdown(10), "the scheduler did not stop")

stream = io.StringIO()
configure_logging("info", "json", stream)
get_logger("secautod.smoke").info("smoke_test_passed", version=__version__)
event = json.loads(stream.getvalue().splitlines()[-1])
check(event["event"] == "smoke_test_passed", f"unexpected log line: {event}")
check(event["level"] == "info", f"unexpected log level: {event}")
print(f"smoke test passed: secautod {__version__}")
