"""The Debian package: built offline in a Debian 12 root, installed with apt, booted under systemd.

Nothing is installed on the host. packaging/build-deb.sh runs inside a cached
debootstrap root that has the build dependencies (systemd-nspawn, not
booted); the .deb is installed with apt-get into a fresh copy of a cached
`debootstrap --variant=minbase` root with systemd, systemd-sysv and dbus (and
the package's dependencies, so the install needs no network), which then
boots under `systemd-nspawn -b`. The tests drive it with `nsenter` into its
namespaces and `systemctl`, as an operator would. A drop-in shortens the
watchdog to a few seconds, so its tests take seconds, not minutes. The copy
is removed afterwards; the cached roots stay under /var/cache/secautod-tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import debian_roots
import pytest
from deploy_support import (
    CLEAN_PATH,
    REPO,
    SYSTEM_CONFIG,
    describe,
    json_events,
    require,
    run,
    wait_until,
)

import secautod

pytestmark = pytest.mark.debian

CLEAN_ENV = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
DIST_PACKAGES = "usr/lib/python3/dist-packages/secautod"
MAX_EXPOSURE = 1.1
# Short enough for a test, long enough for a busy 2-core machine: the daemon
# pings at half of it.
WATCHDOG_SECONDS = 6
WATCHDOG_DROP_IN = f"""\
# Added by the test: a short watchdog, so a hang is noticed within seconds.
[Service]
WatchdogSec={WATCHDOG_SECONDS}s
TimeoutAbortSec=10s
"""
BOOT_DEADLINE = 120.0
SERVICE_DEADLINE = 60.0


def tail(result_text: str, lines: int = 80) -> str:
    """The end of a long build log."""
    return "\n".join(result_text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def nspawn_tools() -> None:
    """Require root, debootstrap, systemd-nspawn (systemd-container), nsenter and dpkg-deb."""
    tools = ("debootstrap", "systemd-nspawn", "nsenter", "dpkg-deb")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    require(os.geteuid() == 0, "building and booting a Debian root needs root")
    require(not missing, f"not installed: {', '.join(missing)} (see .ci/run)")


@pytest.fixture(scope="module")
def deb(nspawn_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the package once for this module, inside the cached build root; return the .deb."""
    control = (REPO / "packaging" / "debian" / "control").read_bytes()
    root = debian_roots.build_root(control)
    output = tmp_path_factory.mktemp("deb")
    try:
        log = debian_roots.nspawn(
            root,
            ["/bin/sh", "/src/packaging/build-deb.sh", "/out"],
            binds={output: "/out"},
            read_only_binds={REPO: "/src"},
            timeout=1800,
        )
    except debian_roots.RootBuildError as error:
        pytest.fail(str(error), pytrace=False)
    (output / "build.log").write_text(log)
    (package,) = output.glob(f"secautod_{secautod.__version__}_all.deb")
    return package


def depends_of(deb: Path) -> list[str]:
    """The package names the .deb depends on (first of each alternative, no versions)."""
    result = run(["dpkg-deb", "--field", str(deb), "Depends"], env=CLEAN_ENV)
    assert result.returncode == 0, describe(result)
    names = []
    for item in result.stdout.split(","):
        name = item.split("|")[0].split()[0].removesuffix(":any")
        names.append(name)
    return sorted(set(names))


@dataclass
class Machine:
    """A booted Debian 12 system (systemd-nspawn -b) and the pid of its systemd."""

    root: Path
    process: subprocess.Popen[bytes]
    console: Path
    leader: int = 0

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the machine's namespaces, as root."""
        enter = ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-p", "-n", "--"]
        return run([*enter, *argv], env=CLEAN_ENV, timeout=timeout)

    def check(self, *argv: str, timeout: float = 60) -> str:
        """Run `argv` inside, fail the test unless it exits 0, and return its output."""
        result = self.run(*argv, timeout=timeout)
        assert result.returncode == 0, describe(result)
        return result.stdout

    def show(self, *properties: str) -> dict[str, str]:
        """`systemctl show secautod` for `properties`, as a dict."""
        output = self.check("systemctl", "show", "secautod", *(f"-p{p}" for p in properties))
        return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)

    def journal_events(self) -> list[dict[str, Any]]:
        """What the daemon logged to the journal, each line parsed as a JSON object."""
        output = self.check(
            "journalctl", "--no-pager", "-o", "cat", "_SYSTEMD_UNIT=secautod.service"
        )
        return json_events(output)

    def events_named(self, name: str) -> list[dict[str, Any]]:
        """The daemon's journal events called `name`."""
        return [event for event in self.journal_events() if event["event"] == name]


def machine_leader(nspawn_pid: int) -> int | None:
    """The host pid of the systemd that nspawn started as PID 1 of its container."""
    parents: dict[int, int] = {}
    first_in_namespace: set[int] = set()
    for entry in Path("/proc").glob("[0-9]*/status"):
        try:
            status = entry.read_text()
        except OSError:  # gone meanwhile
            continue
        pid = int(entry.parent.name)
        if match := re.search(r"^PPid:\s+(\d+)$", status, re.MULTILINE):
            parents[pid] = int(match[1])
        if re.search(r"^NSpid:\s+\d+\s+1$", status, re.MULTILINE):
            first_in_namespace.add(pid)
    for pid in first_in_namespace:
        ancestor = parents.get(pid, 0)
        while ancestor > 1 and ancestor != nspawn_pid:
            ancestor = parents.get(ancestor, 0)
        if ancestor == nspawn_pid:
            return pid
    return None


def manager_answers(machine: Machine) -> bool:
    """Whether the container's systemd answers systemctl (it may still be starting units)."""
    state = machine.run("systemctl", "is-system-running").stdout.strip()
    return state in {"starting", "running", "degraded"}


@pytest.fixture(scope="module")
def machine(deb: Path) -> Iterator[Machine]:
    """A fresh copy of the cached systemd root, the .deb installed with apt, booted."""
    runtime = debian_roots.runtime_root(depends_of(deb))
    workdir = Path(tempfile.mkdtemp(prefix="secautod-machine-", dir="/var/tmp"))
    root = workdir / "root"
    try:
        debian_roots.run_logged(["cp", "-a", "--reflink=auto", str(runtime), str(root)], 900)
        debian_roots.nspawn(
            root,
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", f"/mnt/{deb.name}"],
            read_only_binds={deb.parent: "/mnt"},
        )
        drop_in = root / "etc/systemd/system/secautod.service.d/watchdog.conf"
        drop_in.parent.mkdir(parents=True)
        drop_in.write_text(WATCHDOG_DROP_IN)
        console = workdir / "console.log"
        with console.open("wb") as log:
            process = subprocess.Popen(
                [
                    "systemd-nspawn",
                    "-D",
                    str(root),
                    "--register=no",
                    "--keep-unit",
                    "--console=passive",
                    "--quiet",
                    "-b",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=CLEAN_ENV,
            )
        booted = Machine(root, process, console)
        try:
            booted.leader = wait_until(
                lambda: process.poll() is None and machine_leader(process.pid),
                timeout=BOOT_DEADLINE,
                what="the container's systemd",
            )
            try:
                wait_until(
                    lambda: manager_answers(booted),
                    timeout=BOOT_DEADLINE,
                    what="the container's systemd to answer systemctl",
                )
            except AssertionError as error:
                console_text = console.read_text(errors="replace")
                raise AssertionError(f"{error}; console:\n{console_text}") from None
            yield booted
        finally:
            # nspawn turns SIGTERM into an orderly shutdown of the container.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=SERVICE_DEADLINE + 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def service(machine: Machine) -> Machine:
    """The machine once secautod.service is active and its first backup is taken."""
    wait_until(
        lambda: machine.show("ActiveState")["ActiveState"] == "active",
        timeout=SERVICE_DEADLINE,
        what="secautod.service to be active",
    )
    wait_until(
        lambda: machine.events_named("backup_completed"),
        timeout=SERVICE_DEADLINE,
        what="the first backup",
    )
    return machine


# -- the .deb itself ---------------------------------------------------------------
def test_package_builds_offline(deb: Path) -> None:
    """dpkg-buildpackage ran in a network namespace without interfaces, so the build needs no network."""
    build_log = (deb.parent / "build.log").read_text().splitlines()
    assert "build-deb: building without network access" in build_log
    assert f"dpkg-deb: building package 'secautod' in '../{deb.name}'." in build_log


def test_package_holds_program_unit_user_config_and_migrations(deb: Path) -> None:
    """The .deb ships /usr/bin/secautod, the unit, sysusers/tmpfiles files, the config and the SQL migrations."""
    listing = run(["dpkg-deb", "--contents", str(deb)], env=CLEAN_ENV)
    paths = {line.split()[-1].removeprefix("./") for line in listing.stdout.splitlines()}
    migrations = sorted((REPO / "secautod" / "store" / "sqlite" / "migrations").glob("*.sql"))
    assert migrations
    expected = {
        "usr/bin/secautod",
        "lib/systemd/system/secautod.service",
        "usr/lib/sysusers.d/secautod.conf",
        "usr/lib/tmpfiles.d/secautod.conf",
        "etc/secautod/config.yaml",
        f"{DIST_PACKAGES}/py.typed",
        *(f"{DIST_PACKAGES}/store/sqlite/migrations/{path.name}" for path in migrations),
    }
    assert expected <= paths, describe(listing)


def test_config_is_a_conffile(deb: Path) -> None:
    """/etc/secautod/config.yaml is a conffile, so upgrades keep the operator's changes."""
    result = run(["dpkg-deb", "--info", str(deb), "conffiles"], env=CLEAN_ENV)
    assert SYSTEM_CONFIG in result.stdout.split(), describe(result)


def test_depends_on_debians_python_libraries(deb: Path) -> None:
    """The package depends on the distribution's python3 libraries, not on vendored copies."""
    assert {
        "python3-apscheduler",
        "python3-structlog",
        "python3-yaml",
        "python3-sdnotify",
    } <= set(depends_of(deb))


# -- installed and booted ------------------------------------------------------------
def test_installed_command_runs_on_the_system_python(machine: Machine) -> None:
    """/usr/bin/secautod starts with #!/usr/bin/python3 and prints the package's version."""
    assert (machine.root / "usr/bin/secautod").read_text().splitlines()[0] == "#!/usr/bin/python3"
    output = machine.check("/usr/bin/secautod", "--version")
    assert output.strip() == f"secautod {secautod.__version__}"


def test_installed_service_user_and_data_directory(service: Machine) -> None:
    """Installing creates the system user secautod and its owner-only /var/lib/secautod."""
    fields = service.check("getent", "passwd", "secautod").strip().split(":")
    assert 0 < int(fields[2]) < 1000
    assert fields[5:] == ["/var/lib/secautod", "/usr/sbin/nologin"]
    for path, mode in (("var/lib/secautod", 0o700), ("var/lib/secautod/jobs.db", 0o600)):
        info = (service.root / path).stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (mode, int(fields[2])), path


def test_installed_unit_passes_systemd_analyze_verify(service: Machine) -> None:
    """Inside the booted system, the installed unit verifies cleanly."""
    result = service.run("systemd-analyze", "verify", "/lib/systemd/system/secautod.service")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), describe(result)


def test_unit_is_active_without_restarts_and_logs_json(service: Machine) -> None:
    """After boot the service is active, running, never restarted, and its journal is JSON lines."""
    properties = service.show("ActiveState", "SubState", "NRestarts", "Type")
    assert properties == {
        "ActiveState": "active",
        "SubState": "running",
        "NRestarts": "0",
        "Type": "notify",
    }
    events = service.journal_events()
    assert {"store_opened", "backup_completed"} <= {event["event"] for event in events}
    assert all({"timestamp", "level", "event"} <= event.keys() for event in events)


def test_security_exposure_is_at_most_1_1(service: Machine) -> None:
    """`systemd-analyze security secautod` on the running system rates its exposure 1.1 or lower."""
    output = service.check("systemd-analyze", "security", "--no-pager", "secautod")
    match = re.search(r"Overall exposure level for secautod\.service: (\d+\.\d+)", output)
    assert match, output
    assert float(match[1]) <= MAX_EXPOSURE, output


def test_cli_works_as_the_service_user(service: Machine) -> None:
    """`runuser -u secautod -- secautod status`/`jobs stats --json` exit 0 beside the daemon."""
    as_user = ["runuser", "-u", "secautod", "--", "secautod"]
    status = service.run(*as_user, "status", "--config", SYSTEM_CONFIG)
    assert status.returncode == 0, describe(status)
    stats = service.check(*as_user, "jobs", "stats", "--json", "--config", SYSTEM_CONFIG)
    assert json.loads(stats)["total"] == 0


def test_reload_keeps_the_main_process(service: Machine) -> None:
    """`systemctl reload` on minimal Debian 12 (no procps) logs reload_completed, same main PID."""
    assert not (service.root / "bin/kill").exists(), "this root should have no /bin/kill"
    before = service.show("MainPID")["MainPID"]
    reloads = len(service.events_named("reload_completed"))
    service.check("systemctl", "reload", "secautod")
    wait_until(
        lambda: len(service.events_named("reload_completed")) > reloads,
        what="reload_completed in the journal",
    )
    after = service.show("MainPID", "ActiveState", "NRestarts")
    assert after == {"MainPID": before, "ActiveState": "active", "NRestarts": "0"}


def test_watchdog_pings_keep_it_alive(service: Machine) -> None:
    """WatchdogTimestamp advances twice (WATCHDOG=1 arrives) and the service is not restarted."""
    key = "WatchdogTimestampMonotonic"
    seen = [service.show(key)[key]]

    def advanced() -> bool:
        value = service.show(key)[key]
        if value != seen[-1]:
            seen.append(value)
        return len(seen) >= 3

    wait_until(advanced, timeout=4 * WATCHDOG_SECONDS, what="two watchdog pings")
    assert service.show("NRestarts", "ActiveState") == {"NRestarts": "0", "ActiveState": "active"}


def test_watchdog_restarts_a_stopped_daemon(service: Machine) -> None:
    """A SIGSTOP'd daemon misses its pings; systemd kills it (result watchdog) and restarts it."""
    before = service.show("MainPID")["MainPID"]
    service.check("systemctl", "kill", "--kill-who=main", "--signal=SIGSTOP", "secautod")

    def restarted() -> dict[str, str] | None:
        now = service.show("MainPID", "NRestarts", "ActiveState", "SubState")
        done = now["NRestarts"] == "1" and now["MainPID"] not in {"0", before}
        return now if done and now["SubState"] == "running" else None

    wait_until(restarted, timeout=SERVICE_DEADLINE, what="a restart by the watchdog")
    journal = service.check("journalctl", "--no-pager", "-u", "secautod", "-o", "cat")
    assert "Watchdog timeout" in journal, journal


def test_stop_is_a_success(service: Machine) -> None:
    """`systemctl stop` exits 0, the unit ends inactive with Result=success after shutdown_completed."""
    wait_until(
        lambda: service.show("SubState")["SubState"] == "running",
        timeout=SERVICE_DEADLINE,
        what="the service to run",
    )
    service.check("systemctl", "stop", "secautod", timeout=SERVICE_DEADLINE + 30)
    properties = service.show("ActiveState", "Result")
    assert properties == {"ActiveState": "inactive", "Result": "success"}
    assert service.journal_events()[-1]["event"] == "shutdown_completed"
