"""Webhook delivery from the outbox to a real local HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from harness import free_port, receiver, wait_until

from secautod.config import Secret, WebhookConfig, WebhookDeliveryConfig, redact_url
from secautod.recovery import recover, unclaimed_now
from secautod.webhooks import WebhookDispatcher, backoff, sign

FAST = WebhookDeliveryConfig(retry_initial=timedelta(seconds=0.1), retry_max=timedelta(seconds=0.4))


@pytest.fixture
def dispatchers() -> Iterator[list[WebhookDispatcher]]:
    started: list[WebhookDispatcher] = []
    yield started
    for dispatcher in started:
        dispatcher.stop(5)


def queue_recovered(store: Any, make_job: Any, urls: list[str], count: int = 1) -> None:
    for index in range(count):
        store.save_job(make_job(id=f"r{index}", status="running"))
    now = datetime.now(UTC)
    recover(store, unclaimed_now(now), now, urls, boot_id="boot-1")


def start(
    dispatchers: list[WebhookDispatcher],
    store: Any,
    endpoints: list[WebhookConfig],
    delivery: WebhookDeliveryConfig = FAST,
) -> WebhookDispatcher:
    dispatcher = WebhookDispatcher(store, endpoints, delivery)
    dispatchers.append(dispatcher)
    dispatcher.start()
    return dispatcher


def test_signature_is_hex_hmac_sha256_of_the_raw_body() -> None:
    """X-Secautod-Signature is sha256=<hex HMAC-SHA256 of the exact body bytes>."""
    body = b'{"event":"job_recovered"}'
    expected = hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert sign(body, "key") == f"sha256={expected}"


def test_backoff_doubles_to_the_cap() -> None:
    """Delivery retries wait initial, 2x, 4x ... up to retry_max."""
    delivery = WebhookDeliveryConfig(
        retry_initial=timedelta(seconds=5), retry_max=timedelta(seconds=30)
    )
    assert [backoff(n, delivery).total_seconds() for n in (1, 2, 3, 4, 50)] == [5, 10, 20, 30, 30]


def test_urls_are_logged_without_credentials_or_query() -> None:
    """Tokens in a webhook URL's user info or query never reach the logs."""
    assert (
        redact_url("https://user:pw@hooks.example:8443/path?token=abc")
        == "https://hooks.example:8443/path"
    )


def test_each_endpoint_gets_every_notification_and_rows_are_pruned(
    make_store: Any, make_job: Any, dispatchers: list[WebhookDispatcher]
) -> None:
    """Two endpoints both receive each recovered job (signed where configured); delivered rows are deleted."""
    store = make_store()
    with receiver() as first, receiver() as second:
        endpoints = [WebhookConfig(first.url, secret=Secret("k1")), WebhookConfig(second.url)]
        queue_recovered(store, make_job, [first.url, second.url], count=3)
        start(dispatchers, store, endpoints)
        wait_until(
            lambda: len(first.deliveries) == 3 and len(second.deliveries) == 3, what="deliveries"
        )
        wait_until(lambda: store.state.outbox_summary() == [], what="outbox emptied")
    assert all(delivery.signature_valid("k1") for delivery in first.deliveries)
    assert all("X-Secautod-Signature" not in delivery.headers for delivery in second.deliveries)
    assert {delivery.headers["Content-Type"] for delivery in first.deliveries} == {
        "application/json"
    }


def test_redirects_are_not_followed_but_retried(
    make_store: Any, make_job: Any, dispatchers: list[WebhookDispatcher]
) -> None:
    """A redirect (even a loop) counts as a failure with its status, retried with backoff."""
    store = make_store()
    with receiver(status=302) as hooks:
        queue_recovered(store, make_job, [hooks.url])
        start(dispatchers, store, [WebhookConfig(hooks.url)])
        wait_until(lambda: hooks.requests >= 3, what="three attempts")
        (summary,) = store.state.outbox_summary()
        assert summary.count == 1
        assert summary.max_attempts >= 2
        hooks.status = 204
        wait_until(lambda: hooks.deliveries, what="delivery once the redirect stops")


def test_refused_connections_back_off_per_endpoint(
    make_store: Any, make_job: Any, dispatchers: list[WebhookDispatcher]
) -> None:
    """With the endpoint down, attempts slow down (backoff), and nothing is lost."""
    store = make_store()
    url = f"http://127.0.0.1:{free_port()}/hook"
    queue_recovered(store, make_job, [url], count=5)
    slow = WebhookDeliveryConfig(
        retry_initial=timedelta(seconds=0.2), retry_max=timedelta(seconds=60)
    )
    start(dispatchers, store, [WebhookConfig(url, timeout=timedelta(seconds=1))], slow)
    time.sleep(1.0)  # observation window: how many attempts does a dead endpoint get?
    attempts = sum(summary.max_attempts for summary in store.state.outbox_summary())
    (summary,) = store.state.outbox_summary()
    assert summary.count == 5
    assert 1 <= attempts <= 4  # 0.2 s, 0.4 s, 0.8 s ... not one attempt per loop iteration


class SlowHandler(http.server.BaseHTTPRequestHandler):
    received = threading.Event()

    def do_POST(self) -> None:
        SlowHandler.received.set()
        time.sleep(3)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_slow_endpoint_times_out_and_never_blocks_stop(make_store: Any, make_job: Any) -> None:
    """A hanging endpoint hits the configured timeout; stop() returns by its deadline regardless."""
    store = make_store()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/slow"
    try:
        queue_recovered(store, make_job, [url])
        dispatcher = WebhookDispatcher(
            store, [WebhookConfig(url, timeout=timedelta(seconds=2))], FAST
        )
        dispatcher.start()
        assert SlowHandler.received.wait(10)  # stop() must land mid-request
        started = time.monotonic()
        finished = dispatcher.stop(0.5)
        assert time.monotonic() - started < 1.5
        assert finished is True  # stop cuts the POST in progress off
        (summary,) = store.state.outbox_summary()
        assert summary.count == 1  # still queued: delivered next time, at least once
    finally:
        server.shutdown()
        server.server_close()


def test_notification_scheduled_implausibly_late_counts_as_due(
    make_store: Any, make_job: Any, now: datetime
) -> None:
    """After the wall clock was set back, a retry time beyond retry_max is treated as due."""
    store = make_store()
    queue_recovered(store, make_job, ["http://x.invalid/"])
    (notification,) = store.state.due_notifications(
        "http://x.invalid/", now + timedelta(days=1), 10, now + timedelta(days=2)
    )
    store.state.reschedule(notification.id, now + timedelta(days=30), "down")
    assert store.state.due_notifications(
        "http://x.invalid/", now, 10, latest=now + timedelta(hours=1)
    )
    assert not store.state.due_notifications(
        "http://x.invalid/", now, 10, latest=now + timedelta(days=40)
    )


def test_an_instance_that_stops_leading_stops_delivering_at_once(
    make_store: Any, make_job: Any, dispatchers: list[WebhookDispatcher]
) -> None:
    """Leadership lost after the first delivery: the rest of the queued batch is left to the new leader."""
    store = make_store()
    with receiver() as hooks:
        queue_recovered(store, make_job, [hooks.url], count=5)
        asked_after_losing = threading.Event()

        def leading() -> bool:
            if hooks.deliveries:  # another instance took the lead meanwhile
                asked_after_losing.set()
                return False
            return True

        dispatcher = WebhookDispatcher(store, [WebhookConfig(hooks.url)], FAST, leading=leading)
        dispatchers.append(dispatcher)
        dispatcher.start()
        wait_until(asked_after_losing.is_set, what="the dispatcher asking again who leads")
        assert len(hooks.deliveries) == 1
        (summary,) = store.state.outbox_summary()
        assert summary.count == 4
