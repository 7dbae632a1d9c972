"""The systemd unit, its sysusers.d and tmpfiles.d files (SPEC section 8)."""

from __future__ import annotations

import re
import shutil
import stat
from pathlib import Path

import pytest
import yaml
from deploy_support import (
    PACKAGED_CONFIG,
    SECAUTOD,
    SYSTEM_CONFIG,
    SYSUSERS,
    TMPFILES,
    UNIT,
    describe,
    read_directives,
    require,
    run,
    timespan_seconds,
)

MAX_EXPOSURE = 1.5
EXEC_START = f"/usr/bin/secautod run --config {SYSTEM_CONFIG}"

SYSTEMD_TOOLS = ("systemd-analyze", "systemd-sysusers", "systemd-tmpfiles")


@pytest.fixture
def systemd_tools() -> None:
    """Require systemd's offline tools (Debian's package systemd, which .ci/run installs)."""
    missing = [tool for tool in SYSTEMD_TOOLS if shutil.which(tool) is None]
    require(not missing, f"{', '.join(missing)} not installed (apt-get install systemd)")


needs_systemd_tools = pytest.mark.usefixtures("systemd_tools")


def service(key: str) -> list[str]:
    """Every value of `key` in the unit's [Service] section, in order."""
    return [
        value
        for section, name, value in read_directives(UNIT)
        if (section, name) == ("Service", key)
    ]


def only(key: str) -> str:
    """The single value of `key` in [Service]."""
    values = service(key)
    assert len(values) == 1, f"{key}= is set {len(values)} times: {values}"
    return values[0]


def runnable_copy(directory: Path) -> Path:
    """Copy the unit into `directory`, its ExecStart= pointing at the installed secautod."""
    text = UNIT.read_text()
    assert f"ExecStart={EXEC_START}\n" in text
    copy = directory / UNIT.name
    copy.write_text(text.replace("ExecStart=/usr/bin/secautod ", f"ExecStart={SECAUTOD} "))
    return copy


@needs_systemd_tools
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing to say about the unit (no unknown or invalid keys)."""
    result = run(["systemd-analyze", "verify", str(runnable_copy(tmp_path))], cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), describe(result)


@needs_systemd_tools
def test_verify_reports_a_misspelled_key(tmp_path: Path) -> None:
    """The verify check above would notice a typo: systemd-analyze reports it on stderr."""
    copy = runnable_copy(tmp_path)
    copy.write_text(copy.read_text().replace("KillMode=mixed", "KilMode=mixed"))
    result = run(["systemd-analyze", "verify", str(copy)], cwd=tmp_path)
    assert "Unknown key 'KilMode'" in result.stderr, describe(result)


@needs_systemd_tools
def test_security_exposure_is_at_most_1_5(tmp_path: Path) -> None:
    """systemd-analyze security --offline=true rates the unit's exposure 1.5 or lower."""
    result = run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)], cwd=tmp_path
    )
    match = re.search(r"Overall exposure level for secautod\.service: (\d+\.\d+)", result.stdout)
    assert result.returncode == 0, describe(result)
    assert match, describe(result)
    assert float(match[1]) <= MAX_EXPOSURE, describe(result)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecStart", EXEC_START),
        ("Restart", "on-failure"),
        ("KillMode", "mixed"),
        ("StateDirectory", "secautod"),
        ("ConfigurationDirectory", "secautod"),
        ("UMask", "0077"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("CapabilityBoundingSet", ""),
    ],
)
def test_service_directive(key: str, expected: str) -> None:
    """The unit sets each directive the deployment depends on, exactly once."""
    assert only(key) == expected


def test_reload_sends_sighup_to_the_daemon_without_procps() -> None:
    """ExecReload= sends SIGHUP to the main process with the shell's built-in kill, not /bin/kill."""
    assert only("ExecReload") == """/bin/sh -c 'kill -HUP "$MAINPID"'"""


def test_config_errors_are_not_restarted() -> None:
    """Exit status 78 (invalid config) is exempt from Restart=on-failure."""
    assert "78" in " ".join(service("RestartPreventExitStatus")).split()


def test_watchdog_is_enabled() -> None:
    """WatchdogSec= is set, so a hung daemon (no WATCHDOG=1) is restarted."""
    assert timespan_seconds(only("WatchdogSec")) > 0


def test_stop_timeout_outlasts_the_daemons_shutdown_deadline() -> None:
    """TimeoutStopSec= exceeds the packaged shutdown_timeout_seconds, so a clean stop is never killed."""
    deadline = yaml.safe_load(PACKAGED_CONFIG.read_text())["shutdown_timeout_seconds"]
    assert timespan_seconds(only("TimeoutStopSec")) > deadline


def test_packaged_config_keeps_its_data_in_the_state_directory() -> None:
    """The packaged config's data_directory is the unit's StateDirectory= under /var/lib."""
    document = yaml.safe_load(PACKAGED_CONFIG.read_text())
    assert document["data_directory"] == f"/var/lib/{only('StateDirectory')}"


def test_service_user_is_declared_in_sysusers() -> None:
    """User= and Group= name the unprivileged user and group the sysusers.d file creates."""
    entries = [line.split() for line in SYSUSERS.read_text().splitlines()]
    users = [fields[1] for fields in entries if fields and fields[0] == "u"]
    assert only("User") in users
    assert only("Group") == only("User") != "root"


@needs_systemd_tools
def test_sysusers_file_creates_a_system_user_that_cannot_log_in(tmp_path: Path) -> None:
    """systemd-sysusers creates the service user: a system uid, home in /var/lib, no login shell."""
    (tmp_path / "etc").mkdir()
    result = run(["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)])
    assert result.returncode == 0, describe(result)
    fields = next(
        line.split(":")
        for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
        if line.startswith(only("User") + ":")
    )
    assert 0 < int(fields[2]) < 1000
    assert fields[5:] == ["/var/lib/secautod", "/usr/sbin/nologin"]


@needs_systemd_tools
def test_tmpfiles_file_creates_an_owner_only_data_directory(tmp_path: Path) -> None:
    """systemd-tmpfiles creates /var/lib/secautod as 0700, owned by the service user."""
    (tmp_path / "etc").mkdir()
    assert run(["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)]).returncode == 0
    result = run(["systemd-tmpfiles", f"--root={tmp_path}", "--create", str(TMPFILES)])
    assert result.returncode == 0, describe(result)
    uid = next(
        int(line.split(":")[2])
        for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
        if line.startswith("secautod:")
    )
    info = (tmp_path / "var" / "lib" / "secautod").stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o700, uid)
