"""The sd_notify protocol: readiness, status, watchdog and timeout extension.

Everything here is a no-op when `NOTIFY_SOCKET` is unset, so the daemon runs
the same way under systemd, in a container and in a terminal.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import sdnotify

# While a long step runs, ask for this much more time, this often.
EXTEND_BY_SECONDS = 15.0
EXTEND_EVERY_SECONDS = 5.0
EXTEND_AFTER_SECONDS = 1.0


class Notifier:
    """Sends sd_notify messages to the service manager, if there is one."""

    def __init__(self) -> None:
        # sdnotify reads NOTIFY_SOCKET from the process environment itself.
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._sender = sdnotify.SystemdNotifier() if self.enabled else None
        self.watchdog_interval = _watchdog_interval(os.environ)

    def ready(self, status: str) -> None:
        """Report that start-up (or a reload) is complete."""
        self._send("READY=1", f"STATUS={_ascii(status)}")

    def status(self, status: str) -> None:
        """Update the one-line status shown by `systemctl status`."""
        self._send(f"STATUS={_ascii(status)}")

    def reloading(self) -> None:
        """Report that a configuration reload has begun."""
        self._send(
            "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )

    def stopping(self) -> None:
        """Report that shutdown has begun."""
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        """Tell the watchdog the service is healthy."""
        self._send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for `seconds` more before the current start/stop timeout fires."""
        self._send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    @contextmanager
    def extending_timeout(self) -> Iterator[None]:
        """Keep extending the service manager's timeout while the block runs long."""
        if not self.enabled:
            yield
            return
        done = threading.Event()

        def extend() -> None:
            if done.wait(EXTEND_AFTER_SECONDS):
                return
            while True:
                self.extend_timeout(EXTEND_BY_SECONDS)
                if done.wait(EXTEND_EVERY_SECONDS):
                    return

        thread = threading.Thread(target=extend, name="sd-notify-extend", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def close(self) -> None:
        """Close the notification socket."""
        sock = getattr(self._sender, "socket", None)
        if sock is not None:
            sock.close()
        self._sender = None

    def _send(self, *lines: str) -> None:
        if self._sender is not None:
            self._sender.notify("\n".join(lines))


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC, in seconds, if the watchdog is meant for this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


def _ascii(text: str) -> str:
    """Keep STATUS= to one ASCII line (sdnotify drops what Latin-1 cannot encode)."""
    return text.replace("\n", " ").encode("ascii", "replace").decode("ascii")
