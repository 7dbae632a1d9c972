"""Three real daemons on one PostgreSQL database: one leader, fenced terms, fast takeover (SPEC §11).

Each test runs three `secautod run` processes (own data directories, one
database) with a 2 s lease and a cleanup every 1.8 s, so the leader makes a
fenced write every couple of seconds. The leader is then killed, paused or
cut off; a standby must take over within about one lease, and the table of
terms must show that no two leaders ever wrote in the same term, nor an old
leader after its successor began.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import Daemon, DaemonFactory, Engine, receiver, run_cli, wait_until, write_config
from pg_server import admin_connection, scratch_database

from secautod import JobStatus, JobStore

LEASE = 2.0  # storage.leader_lease_seconds
CLEANUP_HOURS = 0.0005  # 1.8 s: a fenced write by the leader every cleanup
# A standby claims as soon as the lease runs out; this covers scheduling noise.
TAKEOVER_SLACK = 1.5


@pytest.fixture
def store_url() -> Iterator[str]:
    """A fresh database for the three daemons, dropped afterwards."""
    with scratch_database() as url:
        yield url


def start_three(
    tmp_path: Path, daemons: DaemonFactory, store_url: str, **sections: Any
) -> list[Daemon]:
    """Start three instances one after the other; the first becomes the leader."""
    started = []
    for name in ("a", "b", "c"):
        directory = tmp_path / name
        directory.mkdir()
        config = write_config(
            directory,
            storage={"url": store_url, "leader_lease_seconds": LEASE},
            supervision={"check_interval": 0.5},
            jobs={
                "backup_enabled": False,
                "cleanup_interval": CLEANUP_HOURS,
                "retry_delay_seconds": 0.5,
            },
            webhook_delivery={"retry_initial_seconds": 0.1, "retry_max_seconds": 0.5},
            **sections,
        )
        started.append(daemons.start(config))
    leader = started[0]
    assert leader.named("leadership_acquired")[0]["term"] == 1
    for standby in started[1:]:
        assert standby.named("leadership_acquired") == []
    install_fence_audit(store_url)
    return started


# Every maintenance run recorded (a fenced write of the leader) leaves a row: the
# fencing token the writing transaction carried, and the lease as it stood then.
FENCE_AUDIT = """
CREATE TABLE fence_audit (
    at TIMESTAMPTZ NOT NULL, task TEXT NOT NULL, fence TEXT, lease_term BIGINT, lease_holder TEXT);
CREATE FUNCTION audit_fence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fence_audit
    SELECT clock_timestamp(), NEW.task, current_setting('secautod.fence', true), term, holder
    FROM leader_lease WHERE name = 'maintenance';
    RETURN NULL;
END $$;
CREATE TRIGGER audit_fence AFTER INSERT OR UPDATE ON maintenance_runs
    FOR EACH ROW WHEN (NEW.task IN ('cleanup', 'backup')) EXECUTE FUNCTION audit_fence();
"""


def install_fence_audit(store_url: str) -> None:
    """Record the fencing token of every maintenance write from now on."""
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute(FENCE_AUDIT)


def leader_writes(daemon: Daemon, count: int = 1) -> None:
    """Wait until `daemon` completed `count` cleanups (each a fenced write)."""
    daemon.wait_for_event("cleanup_completed", count=count)


def new_leader(standbys: list[Daemon], deadline: float) -> tuple[Daemon, dict[str, Any], float]:
    """Wait for one of `standbys` to take the lead; return it, its event and when it was seen."""
    found: list[tuple[Daemon, dict[str, Any]]] = wait_until(
        lambda: [
            (daemon, event) for daemon in standbys for event in daemon.named("leadership_acquired")
        ],
        timeout=deadline,
        what="a standby taking the lead",
    )
    seen = time.monotonic()
    assert len(found) == 1, f"two standbys took the lead: {found}"
    daemon, event = found[0]
    return daemon, event, seen


def terms_table(store_url: str) -> list[dict[str, Any]]:
    """Return the leader_terms table, the record of every term and its fenced writes."""
    with psycopg.connect(store_url, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT * FROM leader_terms ORDER BY term")
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def fence_audit(store_url: str) -> list[dict[str, Any]]:
    """Return the audited maintenance writes, oldest first."""
    with psycopg.connect(store_url, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT * FROM fence_audit ORDER BY at")
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def assert_fenced(terms: list[dict[str, Any]], store_url: str) -> None:
    """Each write carried the current term's token, no term had two holders, no terms overlapped."""
    print(json.dumps(terms, default=str, indent=1))  # the table, for the record in the test log
    audit = fence_audit(store_url)
    assert audit, "no maintenance write was audited"
    for write in audit:
        assert write["fence"] == f"{write['lease_term']}:{write['lease_holder']}", write
    holder_of = {term["term"]: term["holder"] for term in terms}
    for write in audit:
        assert holder_of[write["lease_term"]] == write["lease_holder"]
    numbers = [term["term"] for term in terms]
    assert numbers == list(range(1, len(terms) + 1))
    holders = [term["holder"] for term in terms]
    assert len(set(holders)) == len(holders), "an instance held two terms: it lost and came back"
    for earlier, later in itertools.pairwise(terms):
        if earlier["last_write_at"] is not None:
            assert earlier["last_write_at"] < later["acquired_at"]
        if later["first_write_at"] is not None:
            assert later["acquired_at"] <= later["first_write_at"]


def test_a_killed_leader_is_replaced_within_one_lease(
    tmp_path: Path, daemons: DaemonFactory, store_url: str
) -> None:
    """SIGKILL the leader: exactly one standby leads within a lease and goes on with cleanup."""
    leader, *standbys = start_three(tmp_path, daemons, store_url)
    leader_writes(leader)
    killed = time.monotonic()
    leader.process.send_signal(signal.SIGKILL)
    leader.process.wait(10)
    successor, event, seen = new_leader(standbys, LEASE + 10)
    assert event["term"] == 2
    assert seen - killed <= LEASE + TAKEOVER_SLACK, f"takeover took {seen - killed:.2f} s"
    leader_writes(successor)
    other = next(daemon for daemon in standbys if daemon is not successor)
    assert other.named("leadership_acquired") == []
    assert_fenced(terms_table(store_url), store_url)


def test_a_paused_leader_is_fenced_out_and_stands_by_when_it_wakes(
    tmp_path: Path, daemons: DaemonFactory, store_url: str
) -> None:
    """SIGSTOP the leader: a standby takes over; on SIGCONT the old one writes nothing and stands by."""
    leader, *standbys = start_three(tmp_path, daemons, store_url)
    leader_writes(leader)
    paused = time.monotonic()
    os.kill(leader.process.pid, signal.SIGSTOP)
    try:
        successor, _event, seen = new_leader(standbys, LEASE + 15)
        # A paused leader inside a fenced transaction holds the lease row until
        # the server ends its idle transaction, one lease after it went idle.
        assert seen - paused <= 2 * LEASE + TAKEOVER_SLACK, f"takeover took {seen - paused:.2f} s"
        leader_writes(successor)
        paused_writes = len(leader.named("cleanup_completed"))  # it cannot log while stopped
    finally:
        os.kill(leader.process.pid, signal.SIGCONT)
    leader.wait_for_event("leadership_lost")
    leader_writes(successor, count=3)
    assert len(leader.named("cleanup_completed")) == paused_writes, "the old leader ran cleanup"
    assert leader.process.poll() is None
    assert_fenced(terms_table(store_url), store_url)
    assert leader.stop() == 0


def test_a_leader_cut_off_from_the_database_reconnects_and_one_leader_goes_on(
    tmp_path: Path, daemons: DaemonFactory, store_url: str
) -> None:
    """pg_terminate_backend on the leader's connections: no crash, a leader within a lease, fenced."""
    leader, *standbys = start_three(tmp_path, daemons, store_url)
    leader_writes(leader)
    cut = terminate_connections_of(leader, store_url)
    assert cut > 0
    # Whoever leads next (the old leader renewing in time, or a standby), cleanup goes on.
    everyone = [leader, *standbys]
    before = {id(daemon): len(daemon.named("cleanup_completed")) for daemon in everyone}
    wait_until(
        lambda: any(
            len(daemon.named("cleanup_completed")) > before[id(daemon)] for daemon in everyone
        ),
        timeout=LEASE + 15,
        what="a cleanup after the cut",
    )
    assert all(daemon.process.poll() is None for daemon in everyone)
    assert_fenced(terms_table(store_url), store_url)
    status = run_cli("status", "--config", str(tmp_path / "b" / "config.yaml"), "--json")
    report = json.loads(status.stdout)
    assert report["leader"]["term"] == max(term["term"] for term in terms_table(store_url))
    for daemon in everyone:
        assert daemon.stop() == 0


def terminate_connections_of(daemon: Daemon, store_url: str) -> int:
    """Cut every connection `daemon` has to the database; return how many were cut."""
    ports = local_tcp_ports(daemon.process.pid)
    with admin_connection() as admin:
        rows = admin.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE client_port = ANY(%s)",
            (sorted(ports),),
        ).fetchall()
    return sum(1 for _pid, done in rows if done)


def local_tcp_ports(pid: int) -> set[int]:
    """Return the local ports of `pid`'s TCP sockets (from /proc, as `ss -p` reads them)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_an_engine_killed_beside_three_instances_is_recovered_and_notified_once(
    tmp_path: Path, daemons: DaemonFactory, store_url: str, make_job: Any
) -> None:
    """Every instance sees the dead engine; the job is recovered once and the leader delivers once."""
    with JobStore(store_url) as store:
        store.save_job(make_job(id="j1"))
    with receiver() as hooks:
        instances = start_three(tmp_path, daemons, store_url, webhooks=[{"url": hooks.url}])
        engine = Engine.start(store_url, "j1", lease=60)  # type: ignore[arg-type]
        try:
            engine.kill()
            wait_until(lambda: hooks.deliveries, what="the job_recovered webhook")
        finally:
            engine.close()
        # Room for a second delivery, were there one: two more rounds of the leader's work.
        leader = instances[0]
        leader_writes(leader, count=len(leader.named("cleanup_completed")) + 2)
        assert len(hooks.deliveries) == 1
    recovered = [line for daemon in instances for line in daemon.named("job_recovered")]
    assert [(line["job_id"], line["reason"]) for line in recovered] == [("j1", "engine_exited")]
    with JobStore(store_url) as store:
        assert store.get_job("j1").status is JobStatus.FAILED
    assert_fenced(terms_table(store_url), store_url)
