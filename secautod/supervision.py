"""Live supervision: a check every `supervision.check_interval` seconds, and one at start-up.

Each check reads the engine sessions (a few rows, no count of the jobs
table), asks the kernel about engines on this host and the lease about the
rest, and recovers the running jobs of every engine proven gone. Jobs no
session claims are recovered by `jobs.stale_after` on every check and by
`supervision.unclaimed` at start-up. A check that writes nothing takes no
lock: the engine never waits for it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from secautod.config import Config
from secautod.errors import LeadershipLostError, SecautodError
from secautod.leadership import Leadership
from secautod.log import get_logger
from secautod.processes import host_boot_time, kernel_boot_id, pid_namespace, probe_process
from secautod.reasons import ENGINE_EXITED, HOST_REBOOTED
from secautod.recovery import (
    Host,
    LeaseWatch,
    Probe,
    recover,
    session_recovery,
    session_verdict,
    stale_jobs,
    unclaimed_at_start,
)
from secautod.store import JobStore
from secautod.store.records import Fence
from secautod.timestamps import utc_now

log = get_logger("secautod.supervision")

# What an instance that does not lead may still act on: proofs only this host can see.
PROVEN_ON_THIS_HOST = frozenset({ENGINE_EXITED, HOST_REBOOTED})


def this_host() -> Host:
    """Return the facts about the host secautod runs on."""
    return Host(socket.gethostname(), kernel_boot_id(), pid_namespace(), host_boot_time())


class Supervisor:
    """Runs supervision checks against one store, at start-up and in a background thread."""

    def __init__(
        self,
        store: JobStore,
        config: Config,
        *,
        boot_id: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        probe: Probe = probe_process,
        here: Host | None = None,
        on_recovered: Callable[[], None] | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self._store = store
        self._leadership = leadership
        self.config = config
        self._boot_id = boot_id
        self._clock = clock
        self._probe = probe
        self._here = here or this_host()
        self._leases = LeaseWatch(monotonic)
        self._on_recovered = on_recovered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervision", daemon=True)

    @property
    def _endpoints(self) -> Sequence[str]:
        return [webhook.url for webhook in self.config.webhooks]

    def check_at_start(self) -> int:
        """Recover what start-up may prove gone; return how many jobs were recovered.

        Jobs no session claims are the leader's: on a store several hosts
        share, `after_reboot` is not applied (this host's boot says nothing
        about another host's engine).
        """
        now = self._clock()
        recovered = 0
        start_rule = unclaimed_at_start(self.config.supervision.unclaimed, self._here, now)
        shared = self._leadership is not None and self._leadership.elected
        if shared and start_rule is not None and start_rule.reason == HOST_REBOOTED:
            start_rule = None
        try:
            if start_rule is not None and self._leading():
                with self._store.fenced(self._fence()):
                    found = recover(
                        self._store, start_rule, now, self._endpoints, boot_id=self._boot_id
                    )
                recovered += len(found)
            return recovered + self.check()
        except LeadershipLostError as exc:  # lost at once: the new leader's checks cover it
            log.warning("supervision_check_stopped", reason=str(exc))
            return recovered

    def check(self) -> int:
        """Run one check; return how many jobs it recovered.

        A standby recovers only what it proves on its own host (the engine
        process exited, the host rebooted); the leader also judges leases
        and stale jobs, its writes fenced by its term.
        """
        now = self._clock()
        leading = self._leading()
        recovered = 0
        sessions = self._store.engine_sessions()
        self._leases.keep_only({session.session_id for session in sessions})
        for session in sessions:
            reason = session_verdict(
                session, self._here, self._leases.silent_for(session), self._probe
            )
            if reason is None or not (leading or reason in PROVEN_ON_THIS_HOST):
                continue
            log.warning(
                "engine_session_gone",
                session_id=session.session_id,
                session=session.describe(),
                reason=reason,
            )
            recovery = session_recovery(session, reason, now)
            with self._store.fenced(self._fence() if leading else None):
                found = recover(
                    self._store,
                    recovery,
                    now,
                    self._endpoints,
                    boot_id=self._boot_id,
                    session=session,
                )
            recovered += len(found)
        stale_after = self.config.jobs.stale_after
        if stale_after is not None and leading:
            stale = stale_jobs(stale_after, now)
            with self._store.fenced(self._fence()):
                found = recover(self._store, stale, now, self._endpoints, boot_id=self._boot_id)
            recovered += len(found)
        log.debug(
            "supervision_check_completed",
            sessions=len(sessions),
            recovered=recovered,
            leading=leading,
        )
        return recovered

    def _leading(self) -> bool:
        return self._leadership is None or self._leadership.leading()

    def _fence(self) -> Fence | None:
        return self._leadership.fence() if self._leadership is not None else None

    # -- the background thread ---------------------------------------------------------
    def start(self) -> None:
        """Check every `supervision.check_interval` seconds until `stop`."""
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Stop checking; True if the thread ended within `timeout`."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def healthy(self) -> bool:
        """Tell whether the checking thread is alive (or was never started)."""
        return self._thread.is_alive() or not self._thread.ident

    def _loop(self) -> None:
        while not self._stop.wait(self.config.supervision.check_interval.total_seconds()):
            try:
                if self.check() and self._on_recovered is not None:
                    self._on_recovered()
            except LeadershipLostError as exc:  # the new leader's checks take over
                log.warning("supervision_check_stopped", reason=str(exc))
            except SecautodError as exc:  # a busy or damaged store: try again next time
                log.error("supervision_check_failed", error=str(exc))
            except Exception:  # never let a bug end supervision for good
                log.exception("supervision_check_crashed")
