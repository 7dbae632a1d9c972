"""A webhook request has a total deadline, and one endpoint never delays another."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from harness import receiver, wait_until

from secautod.config import WebhookConfig, WebhookDeliveryConfig
from secautod.recovery import recover, unclaimed_now
from secautod.store.records import Notification
from secautod.webhooks import WebhookDispatcher, post

FAST = WebhookDeliveryConfig(retry_initial=timedelta(seconds=0.1), retry_max=timedelta(seconds=0.4))


@contextmanager
def trickling_endpoint(seconds: float = 30.0) -> Iterator[str]:
    """A server that answers one byte every 0.2 s, so no single read ever times out."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            ends = time.monotonic() + seconds
            for byte in b"HTTP/1.1 200 OK\r\n" * 1000:
                if stop.is_set() or time.monotonic() > ends:
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                stop.wait(0.2)

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/trickle"
    finally:
        stop.set()
        acceptor.join(5)
        server.close()


def notification() -> Notification:
    return Notification(1, "x", "job_recovered", "j", b"{}", 0)


def test_a_trickling_endpoint_is_cut_off_at_the_total_deadline() -> None:
    """timeout_seconds bounds the whole request: a byte every 0.2 s is cut off after 1 s."""
    with trickling_endpoint() as url:
        started = time.monotonic()
        result = post(WebhookConfig(url, timeout=timedelta(seconds=1)), notification())
        elapsed = time.monotonic() - started
    assert not result.ok
    assert "within 1s" in result.detail
    assert elapsed < 3, elapsed


def test_a_stuck_endpoint_never_delays_a_healthy_one(make_store: Any, make_job: Any) -> None:
    """While one endpoint trickles its answer, the other receives every notification."""
    store = make_store()
    with trickling_endpoint() as stuck, receiver() as healthy:
        for index in range(3):
            store.save_job(make_job(id=f"r{index}", status="running"))
        now = datetime.now(UTC)
        recover(store, unclaimed_now(now), now, [stuck, healthy.url], boot_id="boot-1")
        endpoints = [
            WebhookConfig(stuck, timeout=timedelta(seconds=60)),
            WebhookConfig(healthy.url),
        ]
        dispatcher = WebhookDispatcher(store, endpoints, FAST)
        dispatcher.start()
        try:
            wait_until(lambda: len(healthy.deliveries) == 3, timeout=10, what="3 deliveries")
        finally:
            started = time.monotonic()
            assert dispatcher.stop(1)  # the stuck POST is cut off before the deadline
            assert time.monotonic() - started < 1.5
