"""What the kernel tells a supervisor about an engine process, in each deployment (SPEC §9).

A real `sleep` owned by root plays the engine; the probe runs as another
user, as the packaged unit runs secautod, plain, with `/proc` mounted
`hidepid=invisible` (systemd's `ProtectProc=invisible`) and in a user
namespace (`PrivateUsers=`). docs/ENGINE-PROTOCOL.md has the same table.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import require

import secautod.processes

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by an unprivileged user, unlike a venv under /root
PROBE = """
import os, sys
sys.path.insert(0, sys.argv[3])
from secautod.processes import probe_process
pid, start = int(sys.argv[1]), sys.argv[2]
try:
    os.kill(pid, 0)
    answer = "ok"
except ProcessLookupError:
    answer = "ESRCH"
except PermissionError:
    answer = "EPERM"
print(answer, probe_process(pid, start).value)
"""
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
IN_USER_NAMESPACE = ["unshare", "--user", "--map-root-user"]
HIDDEN_PROC = 'mount -t proc -o hidepid=invisible proc /proc && exec "$@"'


@pytest.fixture
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A world-readable copy of the probe code, outside /root."""
    require(os.geteuid() == 0, "switching users and mounting /proc needs root")
    for tool in ("setpriv", "unshare", "mount"):
        require(shutil.which(tool), f"{tool} (util-linux) is not installed")
    require(Path(SYSTEM_PYTHON).exists(), f"{SYSTEM_PYTHON} is not installed")
    directory = Path("/tmp") / f"secautod-probe-{os.getpid()}"
    package = directory / "secautod"
    package.mkdir(parents=True)
    shutil.copy(secautod.processes.__file__, package / "processes.py")
    (package / "__init__.py").write_text("")
    (directory / "probe.py").write_text(PROBE)
    for path in [directory, package, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield directory
    shutil.rmtree(directory)


@pytest.fixture
def engine() -> Iterator[tuple[int, str]]:
    """A live root-owned process and its start time."""
    process = subprocess.Popen(["sleep", "600"])
    start = secautod.processes.process_start_time(process.pid)
    assert start is not None
    yield process.pid, start
    process.kill()
    process.wait()


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def probe(probe_dir: Path, pid: int, start: str, *prefix: str, hide_proc: bool = False) -> str:
    command = [*prefix, SYSTEM_PYTHON, str(probe_dir / "probe.py"), str(pid), start, str(probe_dir)]
    if hide_proc:
        command = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            HIDDEN_PROC,
            "sh",
            *command,
        ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_another_user_sees_live_and_dead_engines(probe_dir: Path, engine: tuple[int, str]) -> None:
    """As another user: EPERM for a live engine (start time still readable: alive), ESRCH for a dead one."""
    assert probe(probe_dir, *engine, *AS_NOBODY) == "EPERM alive"
    assert probe(probe_dir, dead_pid(), "1", *AS_NOBODY) == "ESRCH gone"


def test_hidden_proc_gives_no_proof_of_life_but_proof_of_death(
    probe_dir: Path, engine: tuple[int, str]
) -> None:
    """Under hidepid=invisible (ProtectProc=invisible) a live engine is 'unknown', never gone; a dead one is gone."""
    assert probe(probe_dir, *engine, *AS_NOBODY, hide_proc=True) == "EPERM unknown"
    assert probe(probe_dir, dead_pid(), "1", *AS_NOBODY, hide_proc=True) == "ESRCH gone"


def test_a_user_namespace_still_gets_esrch_for_a_dead_engine(
    probe_dir: Path, engine: tuple[int, str]
) -> None:
    """In a user namespace (PrivateUsers=) signalling is refused (EPERM) but ESRCH still proves death."""
    assert probe(probe_dir, *engine, *AS_NOBODY, *IN_USER_NAMESPACE) == "EPERM alive"
    assert probe(probe_dir, dead_pid(), "1", *AS_NOBODY, *IN_USER_NAMESPACE) == "ESRCH gone"
    hidden = probe(probe_dir, *engine, *AS_NOBODY, *IN_USER_NAMESPACE, hide_proc=True)
    assert hidden == "EPERM unknown"


def test_a_reused_pid_is_gone_when_the_start_time_is_readable(engine: tuple[int, str]) -> None:
    """A pid that now belongs to a process with another start time counts as gone."""
    pid, start = engine
    assert secautod.processes.probe_process(pid, start) is secautod.processes.ProcessState.ALIVE
    assert secautod.processes.probe_process(pid, str(int(start) - 1)) is (
        secautod.processes.ProcessState.GONE
    )


def test_another_pid_namespace_has_its_own_id(probe_dir: Path) -> None:
    """A process in another pid namespace records another namespace id, so its pid is never probed here."""
    require(shutil.which("unshare"), "unshare (util-linux) is not installed")
    inside = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "readlink", "/proc/self/ns/pid"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.strip() != secautod.processes.pid_namespace()
