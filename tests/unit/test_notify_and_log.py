"""sd_notify messages on a real socket, and the shape of log lines."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from secautod.log import configure_logging, get_logger
from secautod.systemd import Notifier


@pytest.fixture
def notifier_factory() -> Iterator[Callable[[], Notifier]]:
    made: list[Notifier] = []

    def make() -> Notifier:
        made.append(Notifier())
        return made[-1]

    yield make
    for notifier in made:
        notifier.close()


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[socket.socket, str]]:
    directory = tempfile.mkdtemp(prefix="sn-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(directory)


def test_messages_reach_the_socket(
    notify_socket: tuple[socket.socket, str], notifier_factory: Callable[[], Notifier]
) -> None:
    """READY/STATUS, RELOADING/MONOTONIC_USEC, STOPPING and WATCHDOG arrive as sd_notify datagrams."""
    sock, _ = notify_socket
    notifier = notifier_factory()
    notifier.ready("3 jobs")
    assert sock.recv(4096) == b"READY=1\nSTATUS=3 jobs"
    notifier.reloading()
    lines = sock.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=")
    assert abs(int(lines[1].split("=")[1]) - time.monotonic_ns() // 1000) < 5_000_000
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_status_is_kept_to_one_ascii_line(
    notify_socket: tuple[socket.socket, str], notifier_factory: Callable[[], Notifier]
) -> None:
    """Non-ASCII and newlines in STATUS are replaced, so sdnotify never drops the message."""
    sock, _ = notify_socket
    notifier_factory().status("Jobs: 5 — fine\nsecond line ✓")
    assert sock.recv(4096) == b"STATUS=Jobs: 5 ? fine second line ?"


def test_timeout_is_extended_only_while_a_long_step_runs(
    notify_socket: tuple[socket.socket, str], notifier_factory: Callable[[], Notifier]
) -> None:
    """extending_timeout sends EXTEND_TIMEOUT_USEC once the block runs past a second, never for short ones."""
    sock, _ = notify_socket
    notifier = notifier_factory()
    with notifier.extending_timeout():
        pass
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)
    sock.settimeout(5)
    with notifier.extending_timeout():
        message = sock.recv(4096)  # blocks the step until the extension arrives
    assert message == b"EXTEND_TIMEOUT_USEC=15000000"


def test_everything_is_a_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NOTIFY_SOCKET nothing is sent and nothing fails."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("x")
    notifier.watchdog()
    with notifier.extending_timeout():
        pass


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "bogus"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], interval: float | None
) -> None:
    """The watchdog pings every WATCHDOG_USEC/2, and only if WATCHDOG_PID is unset or ours."""
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    assert Notifier().watchdog_interval == interval


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    yield stream
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def read_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_structlog_and_stdlib_lines_share_one_json_shape(json_log: io.StringIO) -> None:
    """Our events and a third-party stdlib logger both render as JSON with the standard keys first."""
    get_logger("secautod.test").info("backup_completed", path="/x", size_bytes=3)
    logging.getLogger("apscheduler.scheduler").warning("Run time of job %s was missed", "cleanup")
    first, second = read_lines(json_log)
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["event"] == "backup_completed"
    assert first["size_bytes"] == 3
    assert str(first["timestamp"]).endswith("Z")
    assert second["logger"] == "apscheduler.scheduler"
    assert second["event"] == "scheduler_message"  # a snake_case name; the prose is the detail
    assert second["detail"] == "Run time of job cleanup was missed"
    assert second["level"] == "warning"


def test_levels_filter_and_chatty_libraries_are_held_back(json_log: io.StringIO) -> None:
    """At info, debug lines and APScheduler's info chatter are dropped."""
    get_logger("secautod.test").debug("noise")
    logging.getLogger("apscheduler.scheduler").info("Added job")
    assert json_log.getvalue() == ""


def test_exceptions_are_logged_without_local_variables(json_log: io.StringIO) -> None:
    """A logged exception carries its traceback, never the values of local variables."""
    secret_value = "hunter2-in-a-local"

    def fail() -> None:
        token = secret_value  # noqa: F841 - a local that must not leak
        raise RuntimeError("boom")

    try:
        fail()
    except RuntimeError:
        get_logger("secautod.test").exception("maintenance_crashed", task="backup")
    (line,) = read_lines(json_log)
    assert "RuntimeError: boom" in str(line["exception"])
    assert secret_value not in json_log.getvalue()


def test_console_format_is_readable_text(tmp_path: Path) -> None:
    """format console gives plain text lines, not JSON."""
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    try:
        get_logger("secautod.test").info("store_opened", path="/data/jobs.db")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    text = stream.getvalue()
    assert "store_opened" in text
    assert "path=/data/jobs.db" in text
    assert not text.lstrip().startswith("{")


def test_apscheduler_lines_get_snake_case_event_names() -> None:
    """APScheduler's prose warnings come out with a snake_case `event` and the sentence as `detail`."""
    import io
    import json
    import logging
    import re

    from secautod.log import configure_logging

    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    logging.getLogger("apscheduler.scheduler").warning(
        'Removed job %s from job store "%s"', "x", "y"
    )
    logging.getLogger("apscheduler.executors.default").info("Something APScheduler never said")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["scheduler_job_removed", "scheduler_message"]
    assert lines[0]["detail"] == 'Removed job x from job store "y"'
    assert all(re.fullmatch(r"[a-z_]+", line["event"]) for line in lines)
