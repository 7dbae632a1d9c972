"""The real daemon on a PostgreSQL store (SPEC §11): supervision, webhooks, bad input."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from harness import (
    DaemonFactory,
    Engine,
    free_port,
    receiver,
    run_cli,
    wait_until,
    write_config,
)
from pg_server import admin_connection, schema_of, scratch_schema
from scrape import scrape, value

from secautod import JobStatus, JobStore

CHECK = 0.3  # supervision.check_interval in these tests, seconds
FAST = {"retry_initial_seconds": 0.1, "retry_max_seconds": 0.5}
PASSWORD = "hunter2-not-for-logs"
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
