"""Webhook delivery from the durable outbox, at least once.

Notifications are written to the `webhook_outbox` table in the same
transaction as what they report; this module's background threads, one per
endpoint, POST them, delete each one its endpoint accepts (any 2xx), and
reschedule the rest with exponential backoff. Redirects are not followed. The body is
signed with HMAC-SHA256 when the endpoint has a secret. A down or slow
endpoint never blocks start-up or shutdown; undelivered rows simply wait
for the next attempt, in this process or the next.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from secautod import __version__
from secautod.backoff import doubling_delay
from secautod.config import WebhookConfig, WebhookDeliveryConfig, redact_url
from secautod.errors import SecautodError
from secautod.log import get_logger
from secautod.metrics import record_delivery
from secautod.store import JobStore
from secautod.store.records import Notification
from secautod.timestamps import isoformat_utc, utc_now

log = get_logger("secautod.webhooks")

SIGNATURE_HEADER = "X-Secautod-Signature"
BATCH_SIZE = 50
# The outbox is looked at this often even when nothing is due: another process
# (`secautod recover`, a CLI import) may have queued notifications meanwhile.
IDLE_WAIT_SECONDS = 5.0
MAX_RESPONSE_BYTES = 64 * 1024
# On shutdown, a POST in progress is cut off this long before the deadline
# (at most half of it), leaving time for its thread to end.
CUT_MARGIN_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The outcome of one POST."""

    ok: bool
    detail: str


def sign(body: bytes, secret: str) -> str:
    """Return the `X-Secautod-Signature` value for `body`: `sha256=<hex HMAC>`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def post(
    endpoint: WebhookConfig,
    notification: Notification,
    in_flight: InFlight | None = None,
) -> DeliveryResult:
    """POST one notification; ok only for a 2xx answer within the endpoint's timeout.

    `timeout_seconds` bounds the whole request (connecting, sending, the
    answer), not each read: an endpoint trickling a byte a second is cut
    off at the deadline. `in_flight` lets another thread cut it sooner.
    """
    parts = urlsplit(endpoint.url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    timeout = endpoint.timeout.total_seconds()
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"secautod/{__version__}",
        "X-Secautod-Event": notification.event,
    }
    if endpoint.secret is not None:
        headers[SIGNATURE_HEADER] = sign(notification.body, endpoint.secret.reveal())
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    cut = InFlight() if in_flight is None else in_flight
    deadline = threading.Timer(timeout, cut.cut, kwargs={"reason": "deadline"})
    deadline.daemon = True
    deadline.start()
    try:
        connection.connect()
        cut.begin(connection)
        connection.request("POST", target, body=notification.body, headers=headers)
        response = connection.getresponse()
        response.read(MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if cut.reason == "deadline":
            return DeliveryResult(False, f"no complete answer within {timeout:g}s")
        if cut.reason is not None:
            return DeliveryResult(False, f"cut off: {cut.reason}")
        return DeliveryResult(False, f"{type(exc).__name__}: {exc}")
    finally:
        deadline.cancel()
        cut.end()
        connection.close()
    if 200 <= response.status < 300:
        return DeliveryResult(True, f"HTTP {response.status}")
    if 300 <= response.status < 400:
        return DeliveryResult(False, f"HTTP {response.status} (redirects are not followed)")
    return DeliveryResult(False, f"HTTP {response.status}")


class InFlight:
    """The connection of the POST in progress, so a deadline or a stop can cut it off.

    Shutting the socket down wakes a read blocked in another thread at once
    (closing it would not); the POST then fails and its notification stays
    queued, to be delivered later (at least once).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self.reason: str | None = None

    def begin(self, connection: http.client.HTTPConnection) -> None:
        """Remember the connection now sending; cut it at once if a cut already came."""
        with self._lock:
            self._connection = connection
            if self.reason is not None:
                _shut_down(connection)

    def end(self) -> None:
        """Forget the connection (the POST is over)."""
        with self._lock:
            self._connection = None

    def cut(self, reason: str = "stopping") -> None:
        """Cut the POST in progress (and any that begins after this)."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            if self._connection is not None:
                _shut_down(self._connection)


def _shut_down(connection: http.client.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def backoff(attempt: int, delivery: WebhookDeliveryConfig) -> timedelta:
    """Wait before attempt `attempt + 1`: doubling from the initial delay up to the cap."""
    return doubling_delay(attempt, delivery.retry_initial, delivery.retry_max)


class WebhookDispatcher:
    """Background delivery from the outbox: one thread per endpoint.

    An endpoint that is slow, hung or down never delays another: each has
    its own thread, backoff and in-flight request.
    """

    def __init__(
        self,
        store: JobStore,
        endpoints: Sequence[WebhookConfig],
        delivery: WebhookDeliveryConfig,
        clock: Callable[[], datetime] = utc_now,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self._store = store
        self._leading = leading
        self._endpoints = tuple(endpoints)
        self._delivery = delivery
        self._clock = clock
        self._workers: list[_EndpointWorker] = []
        self._retired: list[_EndpointWorker] = []
        self._started = False

    def start(self) -> None:
        """Start delivering (and say if notifications wait for endpoints no longer configured)."""
        self._report_orphans()
        self._started = True
        self._start_workers()

    def update(self, endpoints: Sequence[WebhookConfig], delivery: WebhookDeliveryConfig) -> None:
        """Adopt reloaded endpoint settings and look at the outbox again."""
        self._endpoints = tuple(endpoints)
        self._delivery = delivery
        self._report_orphans()
        for worker in self._workers:
            worker.request_stop()
        self._retired = [worker for worker in [*self._retired, *self._workers] if worker.alive]
        self._workers = []
        if self._started:
            self._start_workers()

    def wake(self) -> None:
        """Look at the outbox now (new notifications were queued)."""
        for worker in self._workers:
            worker.wake()

    def stop(self, timeout: float) -> bool:
        """Stop every thread within `timeout`; True if all ended.

        A POST in progress may finish until shortly before the deadline
        (`CUT_MARGIN_SECONDS`); then it is cut off and its notification stays
        queued, so a hung endpoint never holds shutdown past its deadline.
        """
        workers = [*self._workers, *self._retired]
        for worker in workers:
            worker.request_stop(cut=False)
        started = time.monotonic()
        cut_at = started + max(0.0, timeout - min(CUT_MARGIN_SECONDS, timeout / 2))
        for worker in workers:
            worker.join(max(0.0, cut_at - time.monotonic()))
        for worker in workers:
            if worker.alive:
                worker.request_stop(cut=True)
        for worker in workers:
            worker.join(max(0.0, started + timeout - time.monotonic()))
        return not any(worker.alive for worker in workers)

    def healthy(self) -> bool:
        """Tell whether every delivery thread is alive (or none was needed)."""
        return all(worker.alive for worker in self._workers)

    def _start_workers(self) -> None:
        self._workers = [
            _EndpointWorker(self._store, endpoint, self._delivery, self._clock, self._leading)
            for endpoint in self._endpoints
        ]
        for worker in self._workers:
            worker.start()

    def _report_orphans(self) -> None:
        configured = {endpoint.url for endpoint in self._endpoints}
        for summary in self._store.state.outbox_summary():
            if summary.endpoint not in configured:
                log.warning(
                    "webhook_endpoint_not_configured",
                    endpoint=redact_url(summary.endpoint),
                    waiting=summary.count,
                    hint="add the endpoint back to deliver them",
                )


class _EndpointWorker:
    """The thread that drains one endpoint's share of the outbox."""

    def __init__(
        self,
        store: JobStore,
        endpoint: WebhookConfig,
        delivery: WebhookDeliveryConfig,
        clock: Callable[[], datetime],
        leading: Callable[[], bool],
    ) -> None:
        self._store = store
        self._leading = leading
        self._endpoint = endpoint
        self._delivery = delivery
        self._clock = clock
        self._paused_until: datetime | None = None
        self._failures = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._current: InFlight | None = None
        self._thread = threading.Thread(
            target=self._loop, name=f"webhooks-{redact_url(endpoint.url)}", daemon=True
        )

    @property
    def alive(self) -> bool:
        """Tell whether the thread runs."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def request_stop(self, *, cut: bool = True) -> None:
        """Ask the thread to end; `cut` also cuts the POST in progress off (it stays queued)."""
        with self._lock:
            self._stop.set()
            current = self._current
        if cut and current is not None:
            log.warning("webhook_request_cut", endpoint=redact_url(self._endpoint.url))
            current.cut()
        self._wake.set()

    def wake(self) -> None:
        """Look at the outbox now."""
        self._wake.set()

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the thread to end."""
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self._deliver_due()
            except SecautodError as exc:
                log.error("webhook_outbox_unavailable", error=str(exc))
                wait = self._delivery.retry_initial.total_seconds()
            except Exception:  # never let a bug end delivery for good
                log.exception("webhook_dispatcher_crashed")
                wait = self._delivery.retry_initial.total_seconds()
            self._wake.wait(wait)
            self._wake.clear()

    def _deliver_due(self) -> float:
        """Deliver everything due; return the seconds until something is due next.

        Only the leader delivers (several instances share one outbox); a
        standby is woken when it takes the lead.
        """
        if not self._leading():
            return IDLE_WAIT_SECONDS
        url = self._endpoint.url
        while not self._stop.is_set():
            now = self._clock()
            if self._paused_until is not None and self._paused_until > now:
                break
            due = self._store.state.due_notifications(
                url, now, BATCH_SIZE, latest=now + self._delivery.retry_max
            )
            if not due or not self._deliver_batch(due):
                break
        waits = [IDLE_WAIT_SECONDS]
        for moment in (self._store.state.next_notification_due(url), self._paused_until):
            if moment is not None:
                waits.append((moment - self._clock()).total_seconds())
        return max(0.05, min(waits))

    def _post(self, notification: Notification) -> DeliveryResult | None:
        """POST one notification, or return None if a stop came first."""
        with self._lock:
            if self._stop.is_set():
                return None
            self._current = InFlight()
            current = self._current
        try:
            return post(self._endpoint, notification, current)
        finally:
            with self._lock:
                self._current = None

    def _deliver_batch(self, batch: Sequence[Notification]) -> bool:
        """Deliver a batch in order; False at the first failure (endpoint paused) or lost lead."""
        endpoint = self._endpoint
        for notification in batch:
            # Asked before each POST: an instance that lost the lead meanwhile leaves the
            # rest to the new leader, which delivers the same outbox (no duplicate flood).
            if not self._leading():
                return False
            result = self._post(notification)
            if result is None:
                return False
            attempt = notification.attempts + 1
            record_delivery(result.ok)
            if result.ok:
                self._failures = 0
                self._store.state.mark_delivered(notification.id)
                log.info(
                    "webhook_delivered",
                    endpoint=redact_url(endpoint.url),
                    notification_event=notification.event,
                    job_id=notification.job_id,
                    attempt=attempt,
                )
                continue
            # Back off per endpoint, not only per message, so an endpoint that is
            # down is tried ever less often whichever message comes next.
            self._failures += 1
            delay = backoff(max(attempt, self._failures), self._delivery)
            retry_at = self._clock() + delay
            self._store.state.reschedule(notification.id, retry_at, result.detail)
            self._paused_until = retry_at
            log.warning(
                "webhook_failed",
                endpoint=redact_url(endpoint.url),
                notification_event=notification.event,
                job_id=notification.job_id,
                attempt=attempt,
                retry_in=delay.total_seconds(),
                retry_at=isoformat_utc(retry_at),
                error=result.detail,
            )
            return False
        return True
