"""Drive the real `secautod` executable: processes, notify socket, webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

SECAUTOD = str(Path(sys.executable).parent / "secautod")
DEADLINE = 20.0


def in_ci() -> bool:
    """Whether this run is CI's (CI set, as `.ci/run` runs), where every test must really run."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require(condition: object, reason: str) -> None:
    """Skip the calling test with `reason` unless `condition` holds; in CI, fail it instead.

    A skip passes silently, so in CI a test that cannot run its real component
    (a missing tool, privilege or kernel feature) is a failure: `.ci/run`
    installs everything the suite needs.
    """
    if condition:
        return
    if in_ci():
        pytest.fail(f"cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def wait_until(
    predicate: Callable[[], Any], timeout: float = DEADLINE, what: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `secautod ARGS` to completion and capture its output."""
    return subprocess.run(
        [SECAUTOD, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def write_config(directory: Path, **sections: Any) -> Path:
    """Write a config.yaml in `directory` with data in ./data and JSON logs, plus overrides."""
    document: dict[str, Any] = {
        "data_directory": "data",
        "logging": {"level": "info", "format": "json"},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


class NotifySocket:
    """A real sd_notify datagram socket, as systemd provides."""

    def __init__(self) -> None:
        # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
        self.directory = Path(tempfile.mkdtemp(prefix="sn-"))
        self.path = str(self.directory / "notify")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.messages: list[str] = []

    def receive(self, timeout: float) -> str | None:
        """Return the next datagram, or None after `timeout` seconds."""
        self.socket.settimeout(timeout)
        try:
            data = self.socket.recv(65536)
        except TimeoutError:
            return None
        message = data.decode("latin-1")
        self.messages.append(message)
        return message

    def wait_for(self, needle: str, timeout: float = DEADLINE) -> str:
        """Read datagrams until one contains the line `needle`; return it."""
        deadline = time.monotonic() + timeout
        for message in self.messages:
            if needle in message.split("\n"):
                self.messages.remove(message)
                return message
        while time.monotonic() < deadline:
            message = self.receive(max(0.01, deadline - time.monotonic()))
            if message is not None and needle in message.split("\n"):
                self.messages.remove(message)
                return message
        raise AssertionError(f"no {needle} notification within {timeout}s; got {self.messages}")

    def drain(self, seconds: float) -> list[str]:
        """Collect every datagram that arrives within `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.receive(max(0.01, deadline - time.monotonic()))
        drained, self.messages = self.messages, []
        return drained

    def close(self) -> None:
        self.socket.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Daemon:
    """A running `secautod run` process with its stderr in a file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    notify: NotifySocket | None

    def events(self) -> list[dict[str, Any]]:
        """Every log line so far, parsed (each must be one JSON object)."""
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def named(self, event: str) -> list[dict[str, Any]]:
        """The log events called `event`."""
        return [entry for entry in self.events() if entry.get("event") == event]

    def wait_for_event(
        self, event: str, timeout: float = DEADLINE, count: int = 1
    ) -> list[dict[str, Any]]:
        """Wait until `event` has been logged `count` times; return those entries."""
        return wait_until(
            lambda: (found := self.named(event)) and len(found) >= count and found, timeout, event
        )

    def wait_ready(self) -> str:
        """Wait for READY=1 on the notify socket (or the daemon_ready log event)."""
        if self.notify is not None:
            return self.notify.wait_for("READY=1")
        self.wait_for_event("daemon_ready")
        return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = DEADLINE) -> int:
        """Send `sig` and wait for the exit status."""
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(DEADLINE)


@dataclass
class DaemonFactory:
    """Starts daemons for one test and cleans them up."""

    tmp_path: Path
    started: list[Daemon] = field(default_factory=list)
    sockets: list[NotifySocket] = field(default_factory=list)

    def start(
        self,
        config: Path,
        *,
        notify: bool = True,
        env: Mapping[str, str] | None = None,
        wait_ready: bool = True,
    ) -> Daemon:
        """Start `secautod run --config config` with a fresh notify socket."""
        socket_ = NotifySocket() if notify else None
        if socket_ is not None:
            self.sockets.append(socket_)
        log_path = self.tmp_path / f"daemon-{len(self.started)}.log"
        environment = {key: value for key, value in os.environ.items() if key != "NOTIFY_SOCKET"}
        if socket_ is not None:
            environment["NOTIFY_SOCKET"] = socket_.path
        environment.update(env or {})
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [SECAUTOD, "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                env=environment,
            )
        daemon = Daemon(process, log_path, socket_)
        self.started.append(daemon)
        if wait_ready:
            daemon.wait_ready()
        return daemon

    def cleanup(self) -> None:
        for daemon in self.started:
            if daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait(DEADLINE)
        for socket_ in self.sockets:
            socket_.close()


@dataclass
class Delivery:
    """One request the webhook receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def signature_valid(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("X-Secautod-Signature", ""), expected)


class WebhookReceiver:
    """A real local HTTP server recording POSTs and answering a chosen status."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        self.status = status
        self.deliveries: list[Delivery] = []
        self.requests = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                receiver.requests += 1
                status = receiver.status
                if 200 <= status < 300:
                    receiver.deliveries.append(Delivery(self.path, dict(self.headers), body))
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/secautod"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def receiver(port: int = 0, status: int = 200) -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(port, status)
    try:
        yield server
    finally:
        server.close()


def bulk_jobs(
    database: Path,
    count: int,
    *,
    status: str = "completed",
    age_days: float = 60,
    payload_bytes: int = 300,
    prefix: str = "bulk",
) -> None:
    """Insert `count` jobs quickly with plain sqlite3 (the store must have created the file)."""
    import datetime as dt

    stamp = (dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)).strftime(
        "%Y-%m-%d %H:%M:%S.000"
    )
    context = json.dumps({"blob": "x" * payload_bytes})
    conn = sqlite3.connect(database)
    conn.execute("PRAGMA synchronous = OFF")
    rows = (
        (f"{prefix}-{index}", status, '{"name":"bulk"}', context, stamp, stamp)
        for index in range(count)
    )
    conn.executemany(
        "INSERT INTO jobs (id, status, playbook, context, created_at, completed_at) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.commit()
    conn.close()


ENGINE_SCRIPT = str(Path(__file__).parent / "engine_process.py")


@dataclass
class Engine:
    """A real engine process holding a session (tests/engine_process.py)."""

    process: subprocess.Popen[str]
    session_id: str

    @classmethod
    def start(cls, database: Path, *job_ids: str, lease: float = 30.0) -> Engine:
        """Start an engine that claims `job_ids` as running; return once it is ready."""
        process = subprocess.Popen(
            [sys.executable, ENGINE_SCRIPT, str(database), str(lease), *job_ids],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline().split()
        assert line[:1] == ["ready"], f"engine did not start: {line}"
        return cls(process, line[1])

    def command(self, text: str) -> str:
        """Send one command; return the engine's one-line answer."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (SIGKILL by default: a crash)."""
        self.process.send_signal(sig)
        if sig == signal.SIGKILL:
            self.process.wait(DEADLINE)

    def close(self) -> None:
        """Stop the process whatever state it is in, and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(DEADLINE)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


def boot_time() -> Any:
    """This host's last boot, for jobs that must have been running since before it."""
    from secautod.processes import host_boot_time

    booted = host_boot_time()
    assert booted is not None, "this host's boot time (/proc/stat btime) is unreadable"
    return booted


def protocol_sql_blocks() -> dict[str, str]:
    """docs/ENGINE-PROTOCOL.md's ```sql blocks, each named by its first comment (`-- name: open`)."""
    protocol = Path(__file__).parents[1] / "docs" / "ENGINE-PROTOCOL.md"
    blocks: dict[str, str] = {}
    for chunk in protocol.read_text().split("```sql\n")[1:]:
        body = chunk.split("```", 1)[0]
        first = body.splitlines()[0]
        if first.startswith("-- name: "):
            blocks[first.removeprefix("-- name: ").strip()] = body
    return blocks
