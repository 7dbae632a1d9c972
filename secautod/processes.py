"""What a process can learn about itself and about another process on this host.

An engine session records who runs it (host, kernel boot id, pid namespace,
pid, process start time); the supervisor asks the kernel whether that
process still exists. The kernel's answers differ with what the asker may
see (docs/ENGINE-PROTOCOL.md has the table):

- `kill(pid, 0)` fails with ESRCH only when no process has the pid in the
  asker's pid namespace: a proof, even under systemd's `ProtectProc=` or
  `PrivateUsers=`, which turn a live process's answer into EPERM;
- `/proc/<pid>/stat` gives the start time that tells a reused pid apart,
  but is hidden for other users' processes under `ProtectProc=invisible`.

Where the answer is not a proof, `probe_process` says `UNKNOWN` and the
lease decides.
"""

from __future__ import annotations

import enum
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PROC = Path("/proc")


class ProcessState(enum.Enum):
    """What the kernel says about a recorded process."""

    GONE = "gone"  # no such pid, or the pid now belongs to a newer process
    ALIVE = "alive"  # the same process (start time matches)
    UNKNOWN = "unknown"  # a process has the pid, but we may not tell which


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Who a process is, as far as a supervisor on the same host can check."""

    host: str
    boot_id: str
    pid_namespace: str
    pid: int
    start_time: str  # clock ticks after boot (field 22 of /proc/<pid>/stat)


def current_identity() -> ProcessIdentity:
    """Return this process's identity."""
    pid = os.getpid()
    return ProcessIdentity(
        host=socket.gethostname(),
        boot_id=kernel_boot_id(),
        pid_namespace=pid_namespace(),
        pid=pid,
        start_time=process_start_time(pid) or "",
    )


def kernel_boot_id() -> str:
    """Return the kernel's random id of the current boot ('' if unreadable)."""
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    """Return this process's pid namespace, e.g. `pid:[4026531836]` ('' if unreadable)."""
    try:
        return os.readlink(PROC / "self/ns/pid")
    except OSError:
        return ""


def host_boot_time() -> datetime | None:
    """Return when this host last booted (`btime` of /proc/stat), or None if unreadable."""
    try:
        for line in (PROC / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return datetime.fromtimestamp(int(line.split()[1]), UTC)
    except (OSError, ValueError):
        pass
    return None


def process_start_time(pid: int) -> str | None:
    """Return a process's start time in clock ticks after boot, or None if hidden or gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def probe_process(pid: int, start_time: str) -> ProcessState:
    """Tell whether the process `pid`, started at `start_time`, still runs.

    Only meaningful in the pid namespace the pid was recorded in.
    """
    if pid <= 0:
        return ProcessState.UNKNOWN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ProcessState.GONE
    except PermissionError:
        pass  # a process has the pid; it is not ours to signal
    current = process_start_time(pid)
    if current is None or not start_time:
        return ProcessState.UNKNOWN
    return ProcessState.ALIVE if current == start_time else ProcessState.GONE
