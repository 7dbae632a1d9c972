"""Other writers and readers while the daemon cleans up and backs up a 500,000-job store."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from harness import DaemonFactory, bulk_jobs, require, run_cli, write_config

from secautod import JobStore

EXPIRED = 100_000
RECENT = 100_000

API_WRITER = textwrap.dedent(
    """
    import sys, time, pathlib
    from secautod import Job, JobStatus, JobStore
    database, stop_file = sys.argv[1], pathlib.Path(sys.argv[2])
    store = JobStore(database)  # default busy timeout: 5 s
    written = 0
    while not stop_file.exists():
        job = Job.create({"name": "api-writer"}, {"n": written}, job_id=f"api-{written}")
        store.save_job(job)
        store.update_job_status(job.id, JobStatus.RUNNING)
        written += 1
        time.sleep(0.005)
    print(written, flush=True)
    """
)


@pytest.fixture
def sqlite3_shell() -> str:
    """The sqlite3 shell's path (Debian's package sqlite3, which .ci/run installs)."""
    path = shutil.which("sqlite3")
    require(path is not None, "the sqlite3 shell is not installed (apt-get install sqlite3)")
    assert path is not None
    return path


def test_no_writer_or_reader_is_refused_during_maintenance(
    tmp_path: Path, daemons: DaemonFactory, sqlite3_shell: str
) -> None:
    """A sqlite3-shell writer, an API writer and CLI readers never fail while cleanup and backup run."""
    database = tmp_path / "data" / "jobs.db"
    JobStore(database).close()
    bulk_jobs(database, EXPIRED, status="completed", age_days=90, prefix="old")
    bulk_jobs(database, RECENT, status="completed", age_days=1, prefix="new")
    config = write_config(tmp_path)
    # The daemon first: its start-up recovery would (rightly) fail jobs left running.
    daemon = daemons.start(config)
    shell = subprocess.Popen(
        [sqlite3_shell, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert shell.stdin is not None
    shell.stdin.write(".timeout 5000\n.bail on\n")
    stop_file = tmp_path / "stop"
    api = subprocess.Popen(
        [sys.executable, "-c", API_WRITER, str(database), str(stop_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reader_failures: list[str] = []
    reads = 0
    stop_readers = threading.Event()

    def read_loop() -> None:
        nonlocal reads
        while not stop_readers.is_set():
            for command in (["jobs", "list", "--limit", "20"], ["jobs", "stats"]):
                result = run_cli(*command, "--config", str(config))
                reads += 1
                if result.returncode != 0:
                    reader_failures.append(result.stderr)

    reader = threading.Thread(target=read_loop)
    reader.start()
    shell_rows = 0
    try:
        deadline = time.monotonic() + 600  # a bound for a hang, not a performance target
        while not (daemon.named("cleanup_completed") and daemon.named("backup_completed")):
            assert time.monotonic() < deadline, "maintenance did not finish"
            assert not daemon.named("cleanup_failed")
            assert not daemon.named("backup_failed")
            shell.stdin.write(
                f"INSERT INTO jobs (id, status, playbook, context, created_at) VALUES "
                f"('shell-{shell_rows}', 'pending', '{{}}', '{{}}', strftime('%Y-%m-%d %H:%M:%f', 'now'));\n"
                f"UPDATE jobs SET status = 'running', updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') "
                f"WHERE id = 'shell-{shell_rows}';\n"
            )
            shell.stdin.flush()
            shell_rows += 1
            time.sleep(0.005)  # the pace of an engine writing every 5 ms
        deleted = daemon.named("cleanup_completed")[0]["deleted"]
        assert daemon.stop() == 0
    finally:
        stop_readers.set()
        reader.join()
        stop_file.touch()
        _, shell_err = shell.communicate(timeout=60)
        api_out, api_err = api.communicate(timeout=60)
    assert shell.returncode == 0, shell_err
    assert "locked" not in shell_err
    assert api.returncode == 0, api_err
    assert reader_failures == []
    assert reads > 0
    assert deleted == EXPIRED
    with JobStore(database) as store:
        stats = store.get_stats()
        assert stats.by_status["running"] == shell_rows + int(api_out)
        assert store.integrity_check() == []
    assert shell_rows > 50
    assert int(api_out) > 50
