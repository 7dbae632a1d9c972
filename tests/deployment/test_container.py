"""The container image definition, and its entrypoint run as PID 1 of a new PID namespace.

No container engine is needed: the Containerfile is checked statically, and
its ENTRYPOINT + CMD run under `unshare --pid --fork --mount-proc`, which
gives the daemon what an engine gives it (PID 1, no init, a signal from
outside the namespace on stop). It runs as the user running the suite, not
the image's USER: the suite's interpreter need not be reachable by uid
10001 (under /root it is not). That PID 1 runs as uid and gid 10001, in all
four fields, is checked on the built image by
`test_container_image.py::test_pid1_and_exec_run_as_uid_10001`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from deploy_support import (
    CONTAINERFILE,
    PACKAGED_CONFIG,
    REPO,
    SECAUTOD,
    SYSTEM_CONFIG,
    NotifySocket,
    can_unshare,
    describe,
    json_events,
    require,
    run,
    started,
    stop,
    timespan_seconds,
    wait_until,
    write_packaged_config,
)

DATA_DIRECTORY = "/var/lib/secautod"
EX_NEEDS_ATTENTION = 3


@dataclass(frozen=True)
class Instruction:
    """One Containerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The arguments as an exec-form JSON array (fails for the shell form)."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.arguments}"
        assert all(isinstance(item, str) for item in value)
        return value


def read_instructions(path: Path) -> list[Instruction]:
    """Parse a Containerfile into instructions (comments dropped, continuations joined)."""
    instructions = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return instructions


INSTRUCTIONS = read_instructions(CONTAINERFILE)
_STAGE_STARTS = [i for i, instruction in enumerate(INSTRUCTIONS) if instruction.keyword == "FROM"]
PREAMBLE = INSTRUCTIONS[: _STAGE_STARTS[0]]  # ARGs usable in FROM lines
BUILD_STAGE = INSTRUCTIONS[_STAGE_STARTS[0] : _STAGE_STARTS[-1]]
FINAL_STAGE = INSTRUCTIONS[_STAGE_STARTS[-1] :]


def final(keyword: str) -> Instruction:
    """The final stage's last `keyword` instruction (the one that takes effect)."""
    found = [instruction for instruction in FINAL_STAGE if instruction.keyword == keyword]
    assert found, f"the final stage has no {keyword}"
    return found[-1]


def image_environment() -> dict[str, str]:
    """The final stage's ENV settings."""
    settings: dict[str, str] = {}
    for instruction in FINAL_STAGE:
        if instruction.keyword == "ENV":
            for item in shlex.split(instruction.arguments):
                key, _, value = item.partition("=")
                settings[key] = value
    return settings


def image_command() -> list[str]:
    """What the image runs by default: ENTRYPOINT followed by CMD."""
    return final("ENTRYPOINT").exec_form() + final("CMD").exec_form()


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's command, in exec form."""
    options, _, command = final("HEALTHCHECK").arguments.partition(" CMD ")
    assert options.startswith("--") or not options, options
    return Instruction("CMD", command).exec_form()


def on_this_machine(argv: list[str], config: Path) -> list[str]:
    """Map an image command to this machine: the installed secautod and a test config."""
    assert Path(argv[0]).name == "secautod", argv
    mapped = [str(SECAUTOD), *argv[1:]]
    position = mapped.index("--config") + 1
    assert mapped[position] == SYSTEM_CONFIG, argv
    mapped[position] = str(config)
    return mapped


def copied_config_destination() -> str:
    """Where the final stage puts packaging/config.yaml."""
    for instruction in FINAL_STAGE:
        parts = instruction.arguments.split()
        if instruction.keyword == "COPY" and parts[:1] == ["packaging/config.yaml"]:
            return parts[-1]
    raise AssertionError("the image does not copy packaging/config.yaml")


# -- static checks ------------------------------------------------------------------
def test_final_image_is_a_slim_python() -> None:
    """The runtime stage starts from a slim Python 3.11+ base image."""
    defaults = dict(
        instruction.arguments.split("=", 1)
        for instruction in PREAMBLE
        if instruction.keyword == "ARG"
    )
    base = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], final("FROM").arguments.split()[0])
    assert re.fullmatch(r"(docker\.io/library/)?python:3\.(1[1-9])-slim(-\w+)?", base), base


def test_package_is_installed_from_the_source_tree() -> None:
    """The build stage installs the copied source tree; the runtime stage takes the result."""
    assert Instruction("COPY", ". /src") in BUILD_STAGE
    assert any(
        instruction.keyword == "RUN"
        and re.search(r"pip .*install [^&]*/src\b", instruction.arguments)
        for instruction in BUILD_STAGE
    )
    entry = Path(final("ENTRYPOINT").exec_form()[0])
    assert any(
        instruction.keyword == "COPY"
        and instruction.arguments.startswith("--from=build ")
        and entry.is_relative_to(instruction.arguments.split()[-1])
        for instruction in FINAL_STAGE
    )


def test_runs_as_a_numeric_non_root_user() -> None:
    """USER is a numeric uid (and gid) other than 0, so no /etc/passwd lookup is needed."""
    user = final("USER").arguments
    assert re.fullmatch(r"\d+(:\d+)?", user), user
    assert all(int(part) != 0 for part in user.split(":"))


def test_data_directory_is_created_and_owned_before_the_volume() -> None:
    """/var/lib/secautod is created owner-only and owned by USER before VOLUME declares it."""
    uid, _, gid = final("USER").arguments.partition(":")
    volume_at = FINAL_STAGE.index(final("VOLUME"))
    assert DATA_DIRECTORY in final("VOLUME").exec_form()
    pattern = rf"install -d -o {uid} -g {gid or uid} -m 0?700 {DATA_DIRECTORY}\b"
    assert any(
        instruction.keyword == "RUN" and re.search(pattern, instruction.arguments)
        for instruction in FINAL_STAGE[:volume_at]
    )


def test_entrypoint_runs_the_daemon_in_the_foreground() -> None:
    """ENTRYPOINT and CMD are exec form and run `secautod run` with the image's config."""
    argv = image_command()
    assert Path(argv[0]).name == "secautod"
    assert argv[1:] == ["run", "--config", copied_config_destination()]
    assert copied_config_destination() == SYSTEM_CONFIG


def test_stops_with_sigterm() -> None:
    """STOPSIGNAL is SIGTERM, the signal the daemon stops cleanly on."""
    assert final("STOPSIGNAL").arguments == "SIGTERM"


def test_healthcheck_runs_secautod_status() -> None:
    """HEALTHCHECK runs `secautod status` on the image's config, in exec form."""
    argv = healthcheck_command()
    assert Path(argv[0]).name == "secautod"
    assert argv[1:] == ["status", "--config", SYSTEM_CONFIG]


def test_python_output_is_unbuffered() -> None:
    """PYTHONUNBUFFERED=1, so log lines reach the container log at once."""
    assert image_environment()["PYTHONUNBUFFERED"] == "1"


def test_image_config_logs_json_into_the_volume() -> None:
    """The image's config keeps its data in the volume and logs JSON lines."""
    document = yaml.safe_load(PACKAGED_CONFIG.read_text())
    assert document["data_directory"] == DATA_DIRECTORY
    assert document["logging"]["format"] == "json"


def excluded_by_dockerignore(path: str, patterns: list[str]) -> bool:
    """Apply .dockerignore rules to `path` (last match wins; a parent's match counts)."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        globs = {glob, glob.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(candidate, g) for candidate in candidates for g in globs):
            excluded = not negated
    return excluded


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("pyproject.toml", False),
        ("README.md", False),
        ("secautod/cli.py", False),
        ("secautod/store/sqlite/migrations/0001_jobs_table.sql", False),
        ("secautod/py.typed", False),
        ("packaging/config.yaml", False),
        ("secautod/__pycache__/cli.cpython-311.pyc", True),
        (".venv/bin/python", True),
        (".git/HEAD", True),
        ("data/jobs.db", True),
        ("tests/conftest.py", True),
    ],
)
def test_build_context_holds_what_the_build_needs(path: str, excluded: bool) -> None:
    """.dockerignore sends the package sources and the image config, never .venv, .git or data."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert excluded_by_dockerignore(path, patterns) is excluded


def test_compose_example_outlasts_the_shutdown_deadline() -> None:
    """The compose example's stop_grace_period exceeds shutdown_timeout_seconds."""
    compose = yaml.safe_load((REPO / "packaging" / "compose.yaml").read_text())
    service = compose["services"]["secautod"]
    deadline = yaml.safe_load(PACKAGED_CONFIG.read_text())["shutdown_timeout_seconds"]
    assert timespan_seconds(service["stop_grace_period"]) > deadline
    assert any(volume.endswith(f":{DATA_DIRECTORY}") for volume in service["volumes"])


# -- the entrypoint as PID 1 ------------------------------------------------------------
@pytest.fixture
def pid_namespaces() -> None:
    """Require what creating and entering PID namespaces takes: root, unshare and nsenter."""
    require(
        os.geteuid() == 0
        and shutil.which("nsenter") is not None
        and can_unshare("--pid", "--fork", "--mount-proc"),
        "creating and entering PID namespaces needs root (CAP_SYS_ADMIN), unshare and nsenter",
    )


needs_pid_namespaces = pytest.mark.usefixtures("pid_namespaces")


def start_as_pid1(tmp_path: Path, notify: NotifySocket) -> tuple[list[str], dict[str, str]]:
    """The image command for this machine under unshare, and the environment to run it in."""
    (tmp_path / "etc").mkdir()
    config = write_packaged_config(tmp_path / "etc", tmp_path / "volume")
    environment = {
        **image_environment(),
        "PATH": os.environ["PATH"],
        "SECAUTOD_CONFIG": str(config),
        "NOTIFY_SOCKET": str(notify.path),
    }
    # --kill-child only makes sure the daemon dies with unshare if the test fails.
    unshare = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    argv = [*unshare, *on_this_machine(image_command(), config)]
    return argv, environment


def namespace_child(unshare_pid: int) -> int | None:
    """The host pid of the process `unshare --fork` started, once it exists."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:  # the process is gone
            continue
        if re.search(rf"^PPid:\s+{unshare_pid}$", text, re.MULTILINE):
            return int(status.parent.name)
    return None


def pid_in_namespace(host_pid: int) -> int:
    """The pid `host_pid` has inside its own (innermost) PID namespace."""
    status = Path(f"/proc/{host_pid}/status").read_text()
    match = re.search(r"^NSpid:\s+(.*)$", status, re.MULTILINE)
    assert match, status
    return int(match[1].split()[-1])


@needs_pid_namespaces
def test_entrypoint_as_pid1_reaches_ready_and_exits_0_on_sigterm(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """As PID 1 of a new PID namespace the image command reports READY=1 and exits 0 on SIGTERM."""
    argv, environment = start_as_pid1(tmp_path, notify_socket)
    log = tmp_path / "container.log"
    with started(argv, environment, log) as unshare:
        notify_socket.wait_for("READY=1")
        daemon = wait_until(lambda: namespace_child(unshare.pid), what="the namespace's PID 1")
        assert pid_in_namespace(daemon) == 1
        assert stop(daemon, unshare) == 0, log.read_text()
    events = json_events(log.read_text())
    starting = next(event for event in events if event["event"] == "daemon_starting")
    assert starting["pid"] == 1
    assert events[-1]["event"] == "shutdown_completed"
    assert events[-1]["signal"] == "SIGTERM"


@needs_pid_namespaces
def test_healthcheck_passes_while_the_daemon_runs_and_fails_after(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """The HEALTHCHECK command, run inside the namespace, exits 0 once healthy and 3 once stopped."""
    argv, environment = start_as_pid1(tmp_path, notify_socket)
    health = on_this_machine(healthcheck_command(), Path(environment["SECAUTOD_CONFIG"]))
    # What `docker exec` gives the command: the image's environment, no notify socket.
    exec_environment = {key: value for key, value in environment.items() if key != "NOTIFY_SOCKET"}
    log = tmp_path / "container.log"
    with started(argv, environment, log) as unshare:
        notify_socket.wait_for("READY=1")
        daemon = wait_until(lambda: namespace_child(unshare.pid), what="the namespace's PID 1")
        inside = ["nsenter", f"--target={daemon}", "--pid", "--mount", "--", *health]
        # Healthy once the first backup, taken right after start-up, exists.
        wait_until(
            lambda: run(inside, env=exec_environment, timeout=30).returncode == 0,
            what="a passing health check",
        )
        assert stop(daemon, unshare) == 0, log.read_text()
    result = run(health, env=exec_environment, timeout=30)
    assert result.returncode == EX_NEEDS_ATTENTION, describe(result)
