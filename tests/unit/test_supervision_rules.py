"""The proofs that an engine is gone (SPEC §9), each reason with its inputs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from secautod.processes import ProcessState
from secautod.recovery import (
    ENGINE_EXITED,
    ENGINE_STOPPED,
    HOST_REBOOTED,
    LEASE_EXPIRED,
    STALE,
    Host,
    LeaseWatch,
    session_recovery,
    session_verdict,
    stale_jobs,
    unclaimed_at_start,
)
from secautod.store.records import SessionRecord

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
BOOTED = NOW - timedelta(days=2)
HERE = Host("soar-1", "boot-b", "pid:[1]", BOOTED)
SESSION = SessionRecord(
    session_id="s1",
    name="engine",
    host="soar-1",
    boot_id="boot-b",
    pid_namespace="pid:[1]",
    pid=4242,
    process_start="1000",
    lease=timedelta(seconds=30),
    opened_at=NOW,
    renewed_at=NOW,
    renewals=0,
)


class Kernel:
    """Answers probes with a fixed state and records what it was asked."""

    def __init__(self, state: ProcessState) -> None:
        self.state = state
        self.asked: list[tuple[int, str]] = []

    def __call__(self, pid: int, start: str) -> ProcessState:
        self.asked.append((pid, start))
        return self.state


def verdict(session: SessionRecord, kernel: Kernel, silent: float = 0.0) -> str | None:
    return session_verdict(session, HERE, timedelta(seconds=silent), kernel)


def test_a_live_engine_on_this_host_is_left_alone() -> None:
    """A process the kernel says is the same one, with a fresh lease, is not gone."""
    kernel = Kernel(ProcessState.ALIVE)
    assert verdict(SESSION, kernel) is None
    assert kernel.asked == [(4242, "1000")]


def test_a_gone_pid_is_engine_exited_without_waiting_for_the_lease() -> None:
    """ESRCH or a newer process on the pid proves the engine exited at once."""
    assert verdict(SESSION, Kernel(ProcessState.GONE), silent=0) == ENGINE_EXITED


def test_an_unknown_answer_is_no_proof_and_the_lease_decides() -> None:
    """Where the process cannot be seen (ProtectProc=, PrivateUsers=), nothing is guessed."""
    assert verdict(SESSION, Kernel(ProcessState.UNKNOWN), silent=29) is None
    assert verdict(SESSION, Kernel(ProcessState.UNKNOWN), silent=31) == LEASE_EXPIRED


def test_another_pid_namespace_is_judged_by_the_lease_only() -> None:
    """A pid from another namespace means nothing here: the kernel is not asked."""
    other = replace(SESSION, pid_namespace="pid:[2]")
    kernel = Kernel(ProcessState.GONE)
    assert verdict(other, kernel, silent=10) is None
    assert kernel.asked == []
    assert verdict(other, Kernel(ProcessState.GONE), silent=31) == LEASE_EXPIRED


def test_another_host_is_judged_by_the_lease_only() -> None:
    """A session from another host (different boot id and name) waits for its lease."""
    remote = replace(SESSION, host="soar-2", boot_id="boot-x")
    assert verdict(remote, Kernel(ProcessState.GONE), silent=10) is None
    assert verdict(remote, Kernel(ProcessState.GONE), silent=31) == LEASE_EXPIRED


def test_a_session_from_an_earlier_boot_of_this_host_is_host_rebooted() -> None:
    """Same host name, other kernel boot id: the engine died with the old boot."""
    old = replace(SESSION, boot_id="boot-a")
    kernel = Kernel(ProcessState.ALIVE)
    assert verdict(old, kernel) == HOST_REBOOTED
    assert kernel.asked == []


def test_a_closed_session_with_running_jobs_is_engine_stopped() -> None:
    """A session closed while it still claims running jobs: engine_stopped."""
    closed = replace(SESSION, closed_at=NOW)
    assert verdict(closed, Kernel(ProcessState.ALIVE)) == ENGINE_STOPPED


def test_lease_watch_counts_silence_on_its_own_clock() -> None:
    """Silence starts when a renewal count is first seen or changes; a new watcher gives a full lease."""
    clock = [100.0]
    watch = LeaseWatch(lambda: clock[0])
    assert watch.silent_for(SESSION) == timedelta(0)
    clock[0] = 125.0
    assert watch.silent_for(SESSION) == timedelta(seconds=25)
    clock[0] = 126.0
    assert watch.silent_for(replace(SESSION, renewals=1)) == timedelta(0)
    clock[0] = 200.0
    assert watch.silent_for(replace(SESSION, renewals=1)) == timedelta(seconds=74)
    watch.keep_only(set())
    assert watch.silent_for(replace(SESSION, renewals=1)) == timedelta(0)


def test_unclaimed_rules_at_start() -> None:
    """after_reboot fails only jobs running since before the boot; at_start fails all; no boot time, no guess."""
    after_reboot = unclaimed_at_start("after_reboot", HERE, NOW)
    assert after_reboot is not None
    assert (after_reboot.reason, after_reboot.started_before) == (HOST_REBOOTED, BOOTED)
    assert after_reboot.session_id is None
    at_start = unclaimed_at_start("at_start", HERE, NOW)
    assert at_start is not None
    assert (at_start.reason, at_start.started_before) == (ENGINE_STOPPED, None)
    assert unclaimed_at_start("after_reboot", replace(HERE, boot_time=None), NOW) is None


def test_stale_rule_and_error_texts_name_the_reason_and_session() -> None:
    """Errors name the reason and, for sessions, host and pid; stale cuts at now - stale_after."""
    stale = stale_jobs(timedelta(hours=6), NOW)
    assert (stale.reason, stale.updated_before) == (STALE, NOW - timedelta(hours=6))
    assert "interrupted (stale)" in stale.error
    recovery = session_recovery(SESSION, ENGINE_EXITED, NOW)
    assert recovery.session_id == "s1"
    assert "interrupted (engine_exited)" in recovery.error
    assert "host soar-1, pid 4242" in recovery.error
