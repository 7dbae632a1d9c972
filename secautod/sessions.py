"""The engine's side of live supervision: a session that proves the engine lives.

```python
with store.engine_session(name="engine", lease=timedelta(seconds=30)) as session:
    store.update_job_status(job_id, JobStatus.RUNNING)   # claimed by the session
```

Opening records who runs the engine (host, boot, pid namespace, pid, start
time). One background thread renews the lease every third of it: one write
per renewal, however many jobs the session holds. While the session is
open, every job the store moves to `running` is claimed by it; once
secautod has declared the session gone, the store's next write to a job it
claimed raises `SessionLostError`, and the recovered outcome stands.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING

from secautod.errors import InvalidJobError, SecautodError
from secautod.log import get_logger
from secautod.processes import current_identity

if TYPE_CHECKING:
    from secautod.store.base import JobStore

log = get_logger("secautod.sessions")

DEFAULT_LEASE = timedelta(seconds=30)
# A lease shorter than this leaves no room for a busy disk between renewals.
SHORTEST_LEASE = timedelta(seconds=1)
RENEWALS_PER_LEASE = 3


class EngineSession:
    """An open engine session on one store; use it as a context manager."""

    def __init__(self, store: JobStore, name: str, lease: timedelta = DEFAULT_LEASE) -> None:
        if lease < SHORTEST_LEASE:
            raise InvalidJobError(f"lease must be at least {SHORTEST_LEASE}, got {lease}")
        if not name:
            raise InvalidJobError("an engine session needs a name")
        self.store = store
        self.name = name
        self.lease = lease
        self.session_id: str | None = None
        self.lost = threading.Event()
        self._closing = threading.Event()
        self._renewer: threading.Thread | None = None

    def open(self) -> EngineSession:
        """Record the session and start renewing its lease."""
        self.session_id = self.store.open_engine_session(current_identity(), self.name, self.lease)
        self.store.attach_session(self.session_id)
        self._renewer = threading.Thread(
            target=self._renew_until_closed,
            args=(self.session_id,),
            name=f"session-{self.name}",
            daemon=True,
        )
        self._renewer.start()
        return self

    def close(self) -> None:
        """Stop renewing and close the session; jobs it still runs count as stopped."""
        if self.session_id is None:
            return
        self._closing.set()
        if self._renewer is not None:
            self._renewer.join()
        self.store.attach_session(None)
        self.store.close_engine_session(self.session_id)
        self.session_id = None

    def __enter__(self) -> EngineSession:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _renew_until_closed(self, session_id: str) -> None:
        interval = self.lease.total_seconds() / RENEWALS_PER_LEASE
        while not self._closing.wait(interval):
            try:
                if not self.store.renew_engine_session(session_id):
                    self.lost.set()
                    log.error("engine_session_lost", session=session_id, name=self.name)
                    return
            except SecautodError as exc:  # a busy or full disk: try again next time
                log.warning("engine_session_renewal_failed", session=session_id, error=str(exc))
