"""Who runs maintenance: one leader per store, elected through the store (SPEC §11).

On a store several secautod instances share (PostgreSQL), the leader holds a
lease in the database, renewed every third of its length from one thread; a
standby claims it as soon as it runs out or is released, with the next term.
Every maintenance write of the leader carries the term's fence, so a leader
that was paused or cut off cannot write once another took over. This
instance counts itself leader only until its lease would have run out since
the last renewal it sent, on its own monotonic clock.

On SQLite the data directory's lock already makes the daemon the only one:
it always leads, and its writes need no fence.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta

from secautod.errors import LeadershipLostError, SecautodError
from secautod.log import get_logger
from secautod.store import JobStore
from secautod.store.records import Candidate, Fence, LeaderRecord

log = get_logger("secautod.leadership")

# A standby looks again this soon at the latest, and never sooner than this.
STANDBY_POLL_FRACTION = 1 / 3
MIN_WAIT_SECONDS = 0.05


class Leadership:
    """One instance's part in the election: leader or standby, and the fence of its term."""

    def __init__(
        self,
        store: JobStore,
        candidate: Candidate,
        lease: timedelta,
        *,
        on_acquired: Callable[[], None] | None = None,
        on_lost: Callable[[], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.candidate = candidate
        self.lease = lease
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._lapsed = False  # the lease ran out here while renewals failed (logged once)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._term: int | None = None
        self._valid_until = 0.0
        self._seen: tuple[int, str] | None = None  # the leader last logged
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="leadership", daemon=True)

    @property
    def elected(self) -> bool:
        """Tell whether the store elects a leader (False: this daemon is the only one)."""
        return self._store.elects_leader

    def leading(self) -> bool:
        """Tell whether this instance leads now."""
        if not self.elected:
            return True
        with self._lock:
            return self._held_term() is not None

    @property
    def term(self) -> int | None:
        """Return the term this instance holds (None while standing by, or without election)."""
        with self._lock:
            return self._term if self.elected else None

    def fence(self) -> Fence | None:
        """Return the fence this instance's maintenance writes carry (None: no election).

        Raises `LeadershipLostError` when this instance does not lead.
        """
        if not self.elected:
            return None
        with self._lock:
            term = self._held_term()
        if term is None:
            raise LeadershipLostError(
                "this instance does not lead: maintenance is left to the leader"
            )
        return Fence(term, self.candidate.instance_id, self.lease)

    def _held_term(self) -> int | None:
        """Return the term while its lease holds by this instance's clock (call under the lock)."""
        if self._term is not None and self._monotonic() < self._valid_until:
            return self._term
        return None

    def start(self) -> None:
        """Claim the lease once now (a sole instance leads from the start), then keep at it."""
        if not self.elected:
            return
        self._claim()
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Stop claiming and release a lease held, so a standby takes over at once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            term, self._term = self._term, None
        if term is not None:
            try:
                self._store.release_leadership(Fence(term, self.candidate.instance_id, self.lease))
            except SecautodError as exc:  # the lease then runs out by itself
                log.warning("leadership_release_failed", term=term, error=str(exc))
            else:
                log.info("leadership_released", term=term, instance=self.candidate.instance_id)
        return not self._thread.is_alive()

    def healthy(self) -> bool:
        """Tell whether the claiming thread is alive (or not needed, or not started)."""
        return self._thread.is_alive() or not self._thread.ident

    # -- internals -------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            try:  # never let a bug end the election for good
                wait = self._next_wait()
            except Exception:
                log.exception("leadership_claim_crashed")
                wait = self.lease.total_seconds() * STANDBY_POLL_FRACTION
            if self._stop.wait(wait):
                return
            try:
                self._claim()
            except Exception:
                log.exception("leadership_claim_crashed")

    def _next_wait(self) -> float:
        """Renew every third of the lease; as a standby, look again when the lease runs out."""
        third = self.lease.total_seconds() * STANDBY_POLL_FRACTION
        if self.leading():
            return third
        try:
            leader = self._observe_leader()
        except SecautodError as exc:
            log.warning("leader_unknown", error=str(exc))
            return third
        if leader is None or not leader.current:
            return MIN_WAIT_SECONDS
        return max(MIN_WAIT_SECONDS, min(third, leader.remaining.total_seconds()))

    def _claim(self) -> None:
        sent = self._monotonic()
        try:
            term = self._store.claim_leadership(self.candidate, self.lease)
        except SecautodError as exc:
            log.warning(
                "leadership_claim_failed",
                error=str(exc),
                leading=self.leading(),
                term=self.term,
            )
            self._note_lapse()
            return
        if term is not None and self._stop.is_set():
            # `stop` gave up waiting for this claim and released: undo the renewal.
            with suppress(SecautodError):  # else the lease runs out by itself
                self._store.release_leadership(Fence(term, self.candidate.instance_id, self.lease))
            return
        with self._lock:
            previous = self._term
            self._term = term
            if term is not None:
                self._valid_until = sent + self.lease.total_seconds()
                self._lapsed = False
        if term is not None and term != previous:
            log.info(
                "leadership_acquired",
                term=term,
                instance=self.candidate.instance_id,
                host=self.candidate.host,
                pid=self.candidate.pid,
                lease_seconds=self.lease.total_seconds(),
            )
            self._seen = (term, self.candidate.instance_id)
            if self._on_acquired is not None:
                self._on_acquired()
        elif term is None and previous is not None:
            log.warning("leadership_lost", term=previous, reason="another instance holds the lease")
            if self._on_lost is not None:
                self._on_lost()

    def _note_lapse(self) -> None:
        """Log once when this leader's lease ran out here because it could not renew."""
        with self._lock:
            lapsed = self._term is not None and self._held_term() is None
            first = lapsed and not self._lapsed
            self._lapsed = self._lapsed or lapsed
            term = self._term
        if first:
            log.warning(
                "leadership_lost", term=term, reason="the lease ran out: renewals kept failing"
            )
            if self._on_lost is not None:
                self._on_lost()

    def _observe_leader(self) -> LeaderRecord | None:
        """Read who leads; log it when another instance took the lead."""
        leader = self._store.current_leader()
        if leader is not None and leader.current:
            seen = (leader.term, leader.holder.instance_id)
            if seen != self._seen:
                self._seen = seen
                log.info(
                    "leader_observed",
                    term=leader.term,
                    leader=leader.holder.instance_id,
                    host=leader.holder.host,
                    pid=leader.holder.pid,
                )
        return leader
