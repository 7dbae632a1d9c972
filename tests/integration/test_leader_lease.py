"""The PostgreSQL leader lease and its fence, driven through the store (SPEC §11)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from harness import wait_until
from pg_server import admin_connection, scratch_schema
from structlog.testing import capture_logs

from secautod import JobStore
from secautod.errors import LeadershipLostError, StoreUnreachableError
from secautod.leadership import Leadership
from secautod.store.postgres import queries
from secautod.store.records import Candidate, Fence

LEASE = timedelta(seconds=30)
A = Candidate("instance-a", "host-a", 101)
B = Candidate("instance-b", "host-b", 202)


@pytest.fixture
def store_url() -> Iterator[str]:
    with scratch_schema() as url:
        assert url is not None
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    with JobStore(store_url) as opened:
        yield opened


def expire_lease(store_url: str) -> None:
    """Make the lease run out now, as time passing would (the server's clock decides)."""
    schema = store_url.rsplit("search_path%3D", 1)[1]
    with admin_connection() as admin:
        admin.execute(f"UPDATE {schema}.leader_lease SET expires_at = now() - interval '1 s'")


def test_the_first_claimant_leads_and_another_waits_for_the_lease(store: JobStore) -> None:
    """One candidate gets term 1; a second gets nothing while the lease runs; renewing keeps the term."""
    assert store.elects_leader
    assert store.current_leader() is None
    assert store.claim_leadership(A, LEASE) == 1
    assert store.claim_leadership(B, LEASE) is None
    assert store.claim_leadership(A, LEASE) == 1
    leader = store.current_leader()
    assert leader is not None
    assert (leader.term, leader.holder, leader.current) == (1, A, True)


def test_a_lease_that_ran_out_goes_to_the_next_claimant_with_the_next_term(
    store: JobStore, store_url: str
) -> None:
    """After the lease runs out B takes term 2, and A's renewal no longer succeeds."""
    assert store.claim_leadership(A, LEASE) == 1
    expire_lease(store_url)
    assert store.claim_leadership(B, LEASE) == 2
    assert store.claim_leadership(A, LEASE) is None
    leader = store.current_leader()
    assert leader is not None
    assert leader.holder == B


def test_a_released_lease_is_taken_at_once(store: JobStore) -> None:
    """A leader that releases its lease lets a standby in without waiting the lease out."""
    term = store.claim_leadership(A, LEASE)
    assert term == 1
    store.release_leadership(Fence(term, A.instance_id, LEASE))
    assert store.claim_leadership(B, LEASE) == 2


def test_a_fenced_write_of_an_old_term_is_refused_and_changes_nothing(
    store: JobStore, store_url: str, make_job: Any
) -> None:
    """Once B leads, A's fenced writes raise LeadershipLostError and roll back; B's go through."""
    store.save_job(make_job(id="j1"))
    old = Fence(store.claim_leadership(A, LEASE) or 0, A.instance_id, LEASE)
    with store.fenced(old):
        store.state.record_task_failure("cleanup", store._clock(), "as leader A")
    expire_lease(store_url)
    new = Fence(store.claim_leadership(B, LEASE) or 0, B.instance_id, LEASE)
    assert new.term == old.term + 1
    with store.fenced(old), pytest.raises(LeadershipLostError, match="term 1 is over"):
        store.delete_job("j1")
    assert store.load_job("j1") is not None
    with store.fenced(new):
        assert store.delete_job("j1")
    assert [(t["term"], t["holder"], t["writes"]) for t in terms(store_url)] == [
        (1, "instance-a", 1),
        (2, "instance-b", 1),
    ]


def test_a_new_term_waits_for_the_old_leaders_write_in_flight(
    store: JobStore, store_url: str
) -> None:
    """A claim made while the old leader's fenced transaction is open begins only after it commits."""
    short = timedelta(seconds=1)
    # The fence's lease only sets how long the server lets its transaction idle.
    old = Fence(store.claim_leadership(A, short) or 0, A.instance_id, LEASE)
    inside, release = threading.Event(), threading.Event()

    def old_leader_writes() -> None:
        with store.fenced(old), store._pool.writing("a long maintenance write") as conn:
            conn.execute("SELECT 1")
            inside.set()
            release.wait(20)

    writer = threading.Thread(target=old_leader_writes)
    writer.start()
    assert inside.wait(10)
    leader = wait_until(
        lambda: (found := store.current_leader()) and not found.current and found,
        what="the lease running out",
    )
    assert leader.term == 1
    claimed: list[int | None] = []
    claimer = threading.Thread(target=lambda: claimed.append(store.claim_leadership(B, LEASE)))
    claimer.start()
    wait_until(lambda: waiting_on_lock(store_url), what="the claim waiting for the fence's lock")
    assert claimed == []
    release.set()
    writer.join(10)
    claimer.join(10)
    assert claimed == [2]
    first, second = terms(store_url)
    assert first["last_write_at"] < second["acquired_at"]


def terms(store_url: str) -> list[dict[str, Any]]:
    """Return the leader_terms table, oldest term first."""
    schema = store_url.rsplit("search_path%3D", 1)[1]
    with admin_connection() as admin, admin.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {schema}.leader_terms ORDER BY term")
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def waiting_on_lock(store_url: str) -> bool:
    """Tell whether some session of the test database waits for a lock."""
    with admin_connection() as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        ).fetchone()
        return bool(row and row[0])


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_leader_that_cannot_renew_stops_counting_itself_leader_when_its_lease_would_end(
    store: JobStore,
) -> None:
    """Without a renewal, `leading()` turns False once a lease has passed, and `fence()` refuses."""
    clock = FakeMonotonic()
    acquired: list[int] = []
    leadership = Leadership(
        store, A, LEASE, on_acquired=lambda: acquired.append(1), monotonic=clock
    )
    leadership._claim()
    assert leadership.leading()
    assert acquired == [1]
    fence = leadership.fence()
    assert fence is not None
    assert (fence.term, fence.instance_id) == (1, A.instance_id)
    clock.now += LEASE.total_seconds() - 0.1
    assert leadership.leading()
    clock.now += 0.2
    assert not leadership.leading()
    with pytest.raises(LeadershipLostError):
        leadership.fence()
    leadership._claim()  # nobody took it meanwhile: the same term goes on
    assert leadership.term == 1
    assert acquired == [1]


def test_a_standby_takes_the_lead_with_the_next_term_once_it_is_released(store: JobStore) -> None:
    """Two elections on one store: B stands by while A leads, and leads from A's release on."""
    a = Leadership(store, A, LEASE)
    b = Leadership(store, B, LEASE)
    a._claim()
    b._claim()
    assert (a.leading(), b.leading()) == (True, False)
    with pytest.raises(LeadershipLostError):
        b.fence()
    assert a.stop(1)  # releases
    b._claim()
    assert b.leading()
    assert b.term == 2


def test_without_election_the_only_daemon_always_leads(tmp_path: Any) -> None:
    """On SQLite (the data directory's lock makes one daemon) leading() is True and no fence is used."""
    with JobStore(tmp_path / "jobs.db") as sqlite_store:
        leadership = Leadership(sqlite_store, A, LEASE)
        leadership.start()
        assert not leadership.elected
        assert leadership.leading()
        assert leadership.fence() is None
        assert leadership.stop(1)


def test_a_fenced_transaction_left_idle_for_a_lease_is_ended_by_the_server(
    store: JobStore,
) -> None:
    """A frozen leader cannot hold the lease row: its idle fenced transaction ends after a lease."""
    short = timedelta(seconds=1)
    fence = Fence(store.claim_leadership(A, short) or 0, A.instance_id, short)
    with (  # noqa: PT012 - the write must stand idle inside the block
        pytest.raises(StoreUnreachableError),
        store.fenced(fence),
        store._pool.writing("a write of a frozen leader") as conn,
    ):
        conn.execute("SELECT 1")
        time.sleep(2.5)  # the freeze under test, not a wait for something
        conn.execute("SELECT 1")
    assert store.claim_leadership(B, LEASE) == 2


def test_a_leader_frozen_right_after_renewing_holds_no_lock_on_the_lease(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leader frozen once its renewal answered holds no lock on the lease: B takes over after it."""
    short = timedelta(seconds=1)
    frozen, thaw = threading.Event(), threading.Event()
    execute = psycopg.Connection.execute

    def freezing_execute(self: psycopg.Connection[Any], query: Any, *args: Any, **kw: Any) -> Any:
        cursor = execute(self, query, *args, **kw)
        if query == queries.RENEW_LEADERSHIP and threading.current_thread().name == "frozen":
            frozen.set()  # as SIGSTOP or a VM freeze would, before anything else is sent
            thaw.wait(30)
        return cursor

    monkeypatch.setattr(psycopg.Connection, "execute", freezing_execute)
    with JobStore(store_url, busy_timeout=1) as store:
        assert store.claim_leadership(A, short) == 1
        claimant = threading.Thread(  # A's next renewal
            target=lambda: store.claim_leadership(A, short), name="frozen"
        )
        claimant.start()
        try:
            assert frozen.wait(10)
            wait_until(
                lambda: (found := store.current_leader()) is not None and not found.current,
                what="A's lease running out",
            )
            assert store.claim_leadership(B, LEASE) == 2
        finally:
            thaw.set()
            claimant.join(10)


def test_the_election_thread_survives_a_crash_while_looking_at_the_leader(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug raised while a standby reads who leads is logged; the thread goes on looking."""
    assert store.claim_leadership(A, LEASE) == 1
    calls: list[int] = []
    asked_again = threading.Event()
    read_leader = store.current_leader

    def flaky_current_leader() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        asked_again.set()
        return read_leader()

    monkeypatch.setattr(store, "current_leader", flaky_current_leader)
    standby = Leadership(store, B, timedelta(seconds=0.3))
    standby.start()
    try:
        assert asked_again.wait(10), "the election thread died"
        assert standby.healthy()
    finally:
        standby.stop(5)


def test_the_leaders_renewal_does_not_wait_for_its_own_writes_in_flight(store_url: str) -> None:
    """A fenced transaction held open blocks neither the holder's renewal nor its next fenced write."""
    with JobStore(store_url, busy_timeout=1) as store:
        _renew_beside_an_open_write(store)


def _renew_beside_an_open_write(store: JobStore) -> None:
    fence = Fence(store.claim_leadership(A, LEASE) or 0, A.instance_id, LEASE)
    inside, release = threading.Event(), threading.Event()

    def long_write() -> None:
        with store.fenced(fence), store._pool.writing("a long maintenance write") as conn:
            conn.execute("SELECT 1")
            inside.set()
            release.wait(20)

    writer = threading.Thread(target=long_write)
    writer.start()
    try:
        assert inside.wait(10)
        # Had either waited for the open transaction, it failed on lock_timeout (1 s here).
        assert store.claim_leadership(A, LEASE) == 1
        with store.fenced(fence):
            store.state.record_task_failure("cleanup", store._clock(), "a second write")
    finally:
        release.set()
        writer.join(10)


def test_a_leader_whose_renewals_keep_failing_says_once_that_it_lost_the_lead(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renewals failing past the lease: one leadership_lost line and one on_lost call, not one per try."""
    clock = FakeMonotonic()
    lost: list[int] = []
    leadership = Leadership(store, A, LEASE, on_lost=lambda: lost.append(1), monotonic=clock)
    leadership._claim()
    assert leadership.leading()

    def unreachable(*_args: Any) -> int | None:
        raise StoreUnreachableError("the server went away")

    monkeypatch.setattr(store, "claim_leadership", unreachable)
    with capture_logs() as logs:
        leadership._claim()  # within the lease: still leading, nothing lost yet
        assert lost == []
        clock.now += LEASE.total_seconds() + 1
        leadership._claim()
        leadership._claim()
    assert not leadership.leading()
    assert lost == [1]
    assert [entry["reason"] for entry in logs if entry["event"] == "leadership_lost"] == [
        "the lease ran out: renewals kept failing"
    ]
