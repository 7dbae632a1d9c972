"""The real daemon on a PostgreSQL store (SPEC §11): supervision, webhooks, bad input."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import (
    DaemonFactory,
    Engine,
    free_port,
    protocol_sql_blocks,
    receiver,
    require,
    run_cli,
    wait_until,
    write_config,
)
from pg_server import admin_connection, schema_of, scratch_schema
from scrape import scrape, value

from secautod import JobStatus, JobStore
from secautod.store.postgres import queries

CHECK = 0.3  # supervision.check_interval in these tests, seconds
FAST = {"retry_initial_seconds": 0.1, "retry_max_seconds": 0.5}
PASSWORD = "hunter2-not-for-logs"
# What an engine on another host records about itself (docs/ENGINE-PROTOCOL.md's table).
REMOTE_ENGINE = {
    "name": "pg-engine",
    "host": "engine-host-2",
    "boot_id": "boot-b",
    "pid_namespace": "pid:[4026531999]",
    "pid": "4242",
    "process_start": "12345",
}
PSQL_APPLICATION = "engine-protocol-test"
SCHEMA_TABLES_SIZE = """
SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'"""


@pytest.fixture
def store_url() -> Iterator[str]:
    """A PostgreSQL URL working in a fresh schema, dropped after the test."""
    with scratch_schema() as url:
        assert url is not None
        yield url


def config_for(tmp_path: Path, store_url: str, hook_url: str) -> Path:
    return write_config(
        tmp_path,
        storage={"url": store_url},
        supervision={"check_interval": CHECK},
        webhooks=[{"url": hook_url}],
        webhook_delivery=FAST,
        jobs={"backup_enabled": False},
    )


def status_of(url: str, job_id: str) -> JobStatus:
    with JobStore(url) as store:
        return store.get_job(job_id).status


def test_daemon_on_postgresql_recovers_a_killed_engines_job_and_stops_cleanly(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any, store_url: str
) -> None:
    """With storage.url, a SIGKILLed engine's running job fails (engine_exited), is notified, and SIGTERM exits 0."""
    with JobStore(store_url) as store:
        store.save_job(make_job(id="j1"))
        store.save_job(make_job(id="j2"))
    with receiver() as hooks:
        daemon = daemons.start(config_for(tmp_path, store_url, hooks.url))
        engine = Engine.start(store_url, "j1", lease=60)  # type: ignore[arg-type]
        try:
            engine.kill()
            wait_until(lambda: status_of(store_url, "j1") is JobStatus.FAILED, timeout=CHECK + 2)
            wait_until(lambda: hooks.deliveries, what="the job_recovered webhook")
        finally:
            engine.close()
        assert daemon.stop() == 0
    (line,) = daemon.named("job_recovered")
    assert (line["reason"], line["job_id"]) == ("engine_exited", "j1")
    body = hooks.deliveries[0].json()
    assert (body["reason"], body["job"]["id"]) == ("engine_exited", "j1")
    assert daemon.named("shutdown_completed")
    assert status_of(store_url, "j2") is JobStatus.PENDING


def test_a_session_of_another_host_is_judged_by_its_lease_alone(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any, store_url: str
) -> None:
    """A session registered through SQL as another host keeps its job until its lease runs out, then lease_expired."""
    with JobStore(store_url) as store:
        store.save_job(make_job(id="remote", status="running", started_at=datetime.now(UTC)))
    lease = 2.0
    schema = schema_of(store_url)
    with admin_connection() as admin:  # the SQL an engine on another host runs
        admin.execute(f"SET search_path = {schema}")
        admin.execute(
            "INSERT INTO engine_sessions (session_id, name, host, boot_id, pid_namespace, pid,"
            " process_start, lease_seconds, opened_at, renewed_at)"
            " VALUES ('s-remote', 'engine', 'engine-host-2', 'boot-b', 'pidns-b', 1, '1', %s,"
            " now(), now())",
            (lease,),
        )
        admin.execute(
            "INSERT INTO job_claims (job_id, session_id, claimed_at) VALUES ('remote', 's-remote', now())"
        )
    with receiver() as hooks:
        daemon = daemons.start(config_for(tmp_path, store_url, hooks.url))
        started = time.monotonic()
        wait_until(lambda: status_of(store_url, "remote") is JobStatus.FAILED, timeout=lease + 5)
        waited = time.monotonic() - started
        assert daemon.stop() == 0
    assert (
        waited >= lease - CHECK
    )  # pid 1 on this host is alive, but another host's pid says nothing
    (line,) = daemon.named("job_recovered")
    assert line["reason"] == "lease_expired"


def psql_command(url: str, **variables: str) -> list[str]:
    """psql reading a script on stdin: quiet, unaligned, stopping at the first error."""
    command = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url]
    for name, given in variables.items():
        command += ["-v", f"{name}={given}"]
    return command


def psql(url: str, block: str, **variables: str) -> str:
    """Run one of the protocol's blocks through psql with `variables`; return what it printed."""
    result = subprocess.run(
        psql_command(url, **variables),
        input=block,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"{result.stderr}\n{block}"
    return result.stdout.strip()


def test_the_sql_protocol_from_psql(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any, store_url: str
) -> None:
    """docs/ENGINE-PROTOCOL.md's PostgreSQL blocks, run by psql, are what the store reads; renewals stopped, the lease decides."""
    require(shutil.which("psql"), "psql (Debian package postgresql-client) is not installed")
    blocks = protocol_sql_blocks()
    lease = 2.0
    with JobStore(store_url) as store:
        for job_id in ("pg-1", "pg-2", "pg-3"):
            store.save_job(make_job(id=job_id))

    def run(name: str, session: str, **more: str) -> str:
        return psql(
            store_url,
            blocks[name],
            session_id=session,
            lease_seconds=str(lease),
            **REMOTE_ENGINE,
            **more,
        )

    assert run("pg-open", "pg-a") == ""
    assert run("pg-claim", "pg-a", job_id="pg-1") == "1"
    assert run("pg-claim", "pg-a", job_id="pg-2") == "1"
    assert run("pg-renew", "pg-a") == "1"
    assert run("pg-finish", "pg-a", job_id="pg-2", status="completed") == "1"
    assert run("pg-open", "pg-b") == ""
    assert run("pg-claim", "pg-b", job_id="pg-3") == "1"
    assert run("pg-close", "pg-b") == ""
    with JobStore(store_url) as store:  # what secautod reads
        sessions = {s.session_id: s for s in store.engine_sessions(include_ended=True)}
        first = sessions["pg-a"]
        assert (first.name, first.host, first.boot_id, first.pid_namespace) == (
            "pg-engine",
            "engine-host-2",
            "boot-b",
            "pid:[4026531999]",
        )
        assert (first.pid, first.process_start, first.lease) == (
            4242,
            "12345",
            timedelta(seconds=lease),
        )
        assert (first.renewals, first.running_jobs, first.alive) == (1, 1, True)
        assert (sessions["pg-b"].alive, sessions["pg-b"].closed_at is not None) == (False, True)
        claims = store.job_claims(["pg-1", "pg-2", "pg-3"])
        assert {job: claim.session_id for job, claim in claims.items()} == {
            "pg-1": "pg-a",
            "pg-3": "pg-b",
        }
        running = store.get_job("pg-1")
        assert (running.status, running.started_at is not None) == (JobStatus.RUNNING, True)
        finished = store.get_job("pg-2")
        assert (finished.status, finished.completed_at is not None) == (JobStatus.COMPLETED, True)
    with receiver() as hooks:
        daemon = daemons.start(config_for(tmp_path, store_url, hooks.url))
        wait_until(lambda: status_of(store_url, "pg-3") is JobStatus.FAILED, timeout=CHECK + 5)
        renewing_until = time.monotonic() + 2 * lease
        while True:  # renewals keep the session past its lease
            assert run("pg-renew", "pg-a") == "1"
            renewed = time.monotonic()
            if renewed > renewing_until:
                break
            time.sleep(lease / 4)  # the engine's renewal cadence, not a wait for a condition
        assert status_of(store_url, "pg-1") is JobStatus.RUNNING
        wait_until(lambda: status_of(store_url, "pg-1") is JobStatus.FAILED, timeout=lease + 5)
        assert time.monotonic() - renewed >= lease - CHECK  # the lease ran from the last renewal
        assert run("pg-renew", "pg-a") == "0"  # declared gone: stop, open a new session
        assert run("pg-finish", "pg-a", job_id="pg-1", status="completed") == "0"
        assert daemon.stop() == 0
    reasons = {line["job_id"]: line["reason"] for line in daemon.named("job_recovered")}
    assert reasons == {"pg-3": "engine_stopped", "pg-1": "lease_expired"}
    assert status_of(store_url, "pg-1") is JobStatus.FAILED


@pytest.mark.parametrize(
    ("block", "job_status", "after"),
    [("pg-finish", "running", JobStatus.FAILED), ("pg-claim", "pending", JobStatus.PENDING)],
)
def test_the_postgresql_fence_waits_for_a_recovery_in_progress(
    make_job: Any, store_url: str, block: str, job_status: str, after: JobStatus
) -> None:
    """A claim or finish racing secautod's recovery waits for it, then changes nothing: the recovered outcome stands."""
    require(shutil.which("psql"), "psql (Debian package postgresql-client) is not installed")
    blocks = protocol_sql_blocks()
    with JobStore(store_url) as store:
        store.save_job(make_job(id="raced", status=job_status))
    engine = {"session_id": "pg-raced", "lease_seconds": "30", **REMOTE_ENGINE}
    psql(store_url, blocks["pg-open"], **engine)
    if job_status == "running":
        assert psql(store_url, blocks["pg-claim"], job_id="raced", **engine) == "1"
    now = datetime.now(UTC)
    gone = {"now": now, "reason": "lease_expired", "session_id": "pg-raced"}
    failed = {"now": now, "error": "recovered", "session_id": "pg-raced"}
    engine_write = subprocess.Popen(
        psql_command(store_url, job_id="raced", status="completed", **engine),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PGAPPNAME": PSQL_APPLICATION},
    )
    recovering = psycopg.connect(store_url)  # secautod's recovery, held open half-way
    try:
        assert recovering.execute(queries.DECLARE_SESSION_GONE, gone).rowcount == 1
        recovering.execute(queries.RECOVER_SESSION_JOBS, failed)
        assert engine_write.stdin is not None
        engine_write.stdin.write(blocks[block])  # psql runs a statement once its line ends
        engine_write.stdin.flush()
        with admin_connection() as admin:
            wait_until(
                lambda: admin.execute(
                    "SELECT 1 FROM pg_stat_activity"
                    " WHERE application_name = %s AND wait_event_type = 'Lock'",
                    (PSQL_APPLICATION,),
                ).fetchone(),
                what="the engine's write waiting for the recovery's lock",
            )
        recovering.commit()
    finally:
        recovering.close()
        out, err = engine_write.communicate(timeout=30)  # ends psql's input
    assert engine_write.returncode == 0, err
    assert out.strip() == "0"
    with JobStore(store_url) as store:
        assert store.get_job("raced").status is after
        claims = store.job_claims(["raced"])
    assert [claim.session_id for claim in claims.values()] == (
        ["pg-raced"] if job_status == "running" else []
    )


def test_status_and_metrics_show_the_size_of_secautods_tables_in_the_server(
    tmp_path: Path, daemons: DaemonFactory, make_job: Any, store_url: str
) -> None:
    """On PostgreSQL, status and secautod_database_size_bytes show the tables' size; no WAL figure is exported."""
    with JobStore(store_url) as store:
        store.save_job(make_job(id="big", context={"blob": secrets.token_urlsafe(200_000)}))
    schema = schema_of(store_url)

    def tables_bytes() -> int:
        with admin_connection() as admin:
            row = admin.execute(SCHEMA_TABLES_SIZE, (schema,)).fetchone()
        assert row is not None
        return int(row[0])

    port = free_port()
    config = write_config(
        tmp_path,
        storage={"url": store_url},
        metrics={"listen": f"127.0.0.1:{port}", "refresh_seconds": 0.1},
        jobs={"backup_enabled": False},
    )
    daemon = daemons.start(config)
    samples = wait_until(
        lambda: (
            (samples := scrape(port))
            and value(samples, "secautod_database_size_bytes") == tables_bytes()
            and samples
        ),
        what="secautod_database_size_bytes equal to the tables' size in the server",
    )
    assert value(samples, "secautod_database_size_bytes") > 200_000  # type: ignore[operator]
    assert not [name for name, _ in samples if name.startswith("secautod_database_wal")]

    def status() -> dict[str, Any]:
        result = run_cli("status", "--config", str(config), "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        return dict(json.loads(result.stdout))

    report = wait_until(
        lambda: (report := status()) and report["database_bytes"] == tables_bytes() and report,
        what="status's database_bytes equal to the tables' size in the server",
    )
    assert report["database"] == store_url
    shown = run_cli("status", "--config", str(config))
    assert f"database:      {store_url} (" in shown.stdout
    assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("url", "shows"),
    [
        (f"postgresql://secautod:{PASSWORD}@127.0.0.1:1/jobs", "cannot reach PostgreSQL"),
        (f"postgresql://no_such_role:{PASSWORD}@127.0.0.1:5432/test", "refused the credentials"),
        (f"postgres://postgres:{PASSWORD}@127.0.0.1:5432/no_such_db", "does not exist"),
    ],
)
def test_a_store_that_cannot_be_opened_is_one_line_and_status_74(
    tmp_path: Path, url: str, shows: str
) -> None:
    """Unreachable server, wrong credentials, missing database: exit 74, one line, the password redacted."""
    admin_connection().close()  # the server itself must answer (else this proves nothing)
    config = write_config(tmp_path, storage={"url": url}, jobs={"backup_enabled": False})
    result = run_cli("run", "--config", str(config), timeout=60)
    assert result.returncode == 74
    assert PASSWORD not in result.stderr + result.stdout
    failed = [line for line in result.stderr.splitlines() if "daemon_failed" in line]
    assert len(failed) == 1
    assert shows in failed[0]
    assert ":***@127.0.0.1" in failed[0]
    listing = run_cli("jobs", "list", "--config", str(config))
    assert listing.returncode == 74
    assert PASSWORD not in listing.stderr + listing.stdout
    assert len(listing.stderr.strip().splitlines()) == 1


def test_password_env_supplies_the_password_and_must_be_set(tmp_path: Path, store_url: str) -> None:
    """storage.password_env is read at load; unset, it is a config error (78) naming the key."""
    JobStore(store_url).close()  # the schema exists: the CLI does not create stores
    config = write_config(
        tmp_path, storage={"url": store_url, "password_env": "SECAUTOD_TEST_PGPASSWORD"}
    )
    unset = run_cli("jobs", "stats", "--config", str(config))
    assert unset.returncode == 78
    assert "storage.password_env" in unset.stderr
    given = run_cli(
        "jobs", "stats", "--config", str(config), env={"SECAUTOD_TEST_PGPASSWORD": "unused"}
    )
    assert given.returncode == 0, given.stderr
    assert "total" in given.stdout
    # (The server trusts local connections, so this proves the key is read, not that
    # the server checked the password: libpq sends it only when asked.)
