"""Helpers for the deployment tests: the repository's files, processes, notify sockets."""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from harness import require, wait_until  # noqa: F401 - re-exported for the deployment tests

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "secautod.service"
SYSUSERS = REPO / "systemd" / "sysusers.d" / "secautod.conf"
TMPFILES = REPO / "systemd" / "tmpfiles.d" / "secautod.conf"
PACKAGED_CONFIG = REPO / "packaging" / "config.yaml"
CONTAINERFILE = REPO / "packaging" / "Containerfile"
SECAUTOD = Path(sys.executable).parent / "secautod"
# Where a service or image would find secautod and its config.
SYSTEM_CONFIG = "/etc/secautod/config.yaml"
DEADLINE = 30.0
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@functools.cache
def can_unshare(*namespaces: str) -> bool:
    """Whether `unshare` may create these namespaces here (root outside a locked-down container)."""
    try:
        result = subprocess.run(["unshare", *namespaces, "true"], capture_output=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def write_packaged_config(directory: Path, data_directory: Path) -> Path:
    """Write packaging/config.yaml into `directory` with its data in `data_directory`."""
    document = yaml.safe_load(PACKAGED_CONFIG.read_text())
    document["data_directory"] = str(data_directory)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def json_events(text: str) -> list[dict[str, Any]]:
    """Parse log lines, failing on any line that is not a JSON object."""
    events = []
    for line in text.splitlines():
        event = json.loads(line)
        assert isinstance(event, dict), line
        events.append(event)
    return events


def read_directives(path: Path) -> list[tuple[str, str, str]]:
    """Read a systemd unit as (section, key, value) triples, in order, repeats kept."""
    directives = []
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        directives.append((section, key.strip(), value.strip()))
    return directives


def timespan_seconds(text: str) -> float:
    """Convert a systemd time span (`90`, `60s`, `1min 30s`, `2m`) to seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    total = 0.0
    for part in text.replace(" ", "\n").split():
        digits = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        total += float(digits) * units[part[len(digits) :] or "s"]
    return total


def short_socket_path(directory: Path) -> tuple[Path, Path | None]:
    """Return a notify socket path in `directory`, or in a short temporary folder.

    AF_UNIX paths are limited to 107 bytes and pytest's tmp_path can be longer;
    the second value is the temporary folder to remove afterwards, if any.
    """
    candidate = directory / "notify"
    if len(os.fsencode(candidate)) < 100:
        return candidate, None
    fallback = Path(tempfile.mkdtemp(prefix="sd-notify-"))
    return fallback / "notify", fallback


class NotifySocket:
    """A real sd_notify datagram socket, bound where systemd would put its own."""

    def __init__(self, directory: Path) -> None:
        self.path, self._extra_directory = short_socket_path(directory)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(self.path))
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float = DEADLINE) -> str:
        """Read datagrams until one holds the line `line`; return that datagram."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {line} within {timeout}s; received {self.messages}")
            self.socket.settimeout(remaining)
            try:
                message = self.socket.recv(65536).decode("latin-1")
            except TimeoutError:
                continue
            self.messages.append(message)
            if line in message.split("\n"):
                return message

    def close(self) -> None:
        """Close the socket and remove any temporary folder it needed."""
        self.socket.close()
        if self._extra_directory is not None:
            shutil.rmtree(self._extra_directory, ignore_errors=True)


@contextmanager
def started(
    argv: list[str], env: Mapping[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `argv` with stderr in `log_path`; kill it at the end if it still runs."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=DEADLINE)


def stop(pid: int, process: subprocess.Popen[bytes], timeout: float = DEADLINE) -> int:
    """Send SIGTERM to `pid` and return `process`'s exit status."""
    os.kill(pid, signal.SIGTERM)
    return process.wait(timeout=timeout)


def run(argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing its output as text."""
    options.setdefault("timeout", 120)
    return subprocess.run(argv, capture_output=True, text=True, check=False, **options)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """Say what a finished command printed, for assertion messages."""
    command = shlex.join(str(arg) for arg in result.args)
    return (
        f"{command} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
