"""Webhook delivery from the durable outbox, at least once.

Notifications are written to the `webhook_outbox` table in the same
transaction as what they report; this module's background thread POSTs
them, deletes each one its endpoint accepts (any 2xx), and reschedules the
rest with exponential backoff. Redirects are not followed. The body is
signed with HMAC-SHA256 when the endpoint has a secret. A down or slow
endpoint never blocks start-up or shutdown; undelivered rows simply wait
for the next attempt, in this process or the next.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import threading
from collections.abc import Callable, Sequence
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


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The outcome of one POST."""

    ok: bool
    detail: str


def sign(body: bytes, secret: str) -> str:
    """Return the `X-Secautod-Signature` value for `body`: `sha256=<hex HMAC>`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def post(endpoint: WebhookConfig, notification: Notification) -> DeliveryResult:
    """POST one notification; ok only for a 2xx answer."""
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
    try:
        connection.request("POST", target, body=notification.body, headers=headers)
        response = connection.getresponse()
        response.read(MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return DeliveryResult(False, f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()
    if 200 <= response.status < 300:
        return DeliveryResult(True, f"HTTP {response.status}")
    if 300 <= response.status < 400:
        return DeliveryResult(False, f"HTTP {response.status} (redirects are not followed)")
    return DeliveryResult(False, f"HTTP {response.status}")


def backoff(attempt: int, delivery: WebhookDeliveryConfig) -> timedelta:
    """Wait before attempt `attempt + 1`: doubling from the initial delay up to the cap."""
    return doubling_delay(attempt, delivery.retry_initial, delivery.retry_max)


class WebhookDispatcher:
    """A background thread that drains the outbox to the configured endpoints."""

    def __init__(
        self,
        store: JobStore,
        endpoints: Sequence[WebhookConfig],
        delivery: WebhookDeliveryConfig,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._endpoints = tuple(endpoints)
        self._delivery = delivery
        self._clock = clock
        self._paused_until: dict[str, datetime] = {}
        self._endpoint_failures: dict[str, int] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)

    def start(self) -> None:
        """Start delivering (and say if notifications wait for endpoints no longer configured)."""
        self._report_orphans()
        self._thread.start()

    def update(self, endpoints: Sequence[WebhookConfig], delivery: WebhookDeliveryConfig) -> None:
        """Adopt reloaded endpoint settings and look at the outbox again."""
        self._endpoints = tuple(endpoints)
        self._delivery = delivery
        self._paused_until.clear()
        self._endpoint_failures.clear()
        self._report_orphans()
        self._wake.set()

    def wake(self) -> None:
        """Look at the outbox now (new notifications were queued)."""
        self._wake.set()

    def stop(self, timeout: float) -> bool:
        """Stop after the current POST; True if the thread ended within `timeout`."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def healthy(self) -> bool:
        """Tell whether the delivery thread is alive (or was never needed)."""
        return self._thread.is_alive() or not self._thread.ident

    # -- internals ---------------------------------------------------------------
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
        """Deliver everything due; return the seconds until something is due next."""
        waits = [IDLE_WAIT_SECONDS]
        for endpoint in self._endpoints:
            while not self._stop.is_set():
                now = self._clock()
                paused = self._paused_until.get(endpoint.url)
                if paused is not None and paused > now:
                    break
                due = self._store.state.due_notifications(
                    endpoint.url, now, BATCH_SIZE, latest=now + self._delivery.retry_max
                )
                if not due or not self._deliver_batch(endpoint, due):
                    break
            next_due = self._store.state.next_notification_due(endpoint.url)
            paused = self._paused_until.get(endpoint.url)
            for moment in (next_due, paused):
                if moment is not None:
                    waits.append((moment - self._clock()).total_seconds())
        return max(0.05, min(waits))

    def _deliver_batch(self, endpoint: WebhookConfig, batch: Sequence[Notification]) -> bool:
        """Deliver a batch in order; False (and pause the endpoint) at the first failure."""
        for notification in batch:
            if self._stop.is_set():
                return False
            result = post(endpoint, notification)
            attempt = notification.attempts + 1
            record_delivery(result.ok)
            if result.ok:
                self._endpoint_failures.pop(endpoint.url, None)
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
            failures = self._endpoint_failures.get(endpoint.url, 0) + 1
            self._endpoint_failures[endpoint.url] = failures
            delay = backoff(max(attempt, failures), self._delivery)
            retry_at = self._clock() + delay
            self._store.state.reschedule(notification.id, retry_at, result.detail)
            self._paused_until[endpoint.url] = retry_at
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
