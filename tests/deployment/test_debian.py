"""The Debian package: built offline with Debian's own libraries, installed, run.

The slowest deployment test: it installs the build dependencies with
apt-get, builds with packaging/build-deb.sh (dpkg-buildpackage -us -uc -b in
a copy of the source tree, without network), installs the .deb with apt-get
and runs the installed daemon as its service user. The package is purged
afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import (
    CLEAN_PATH,
    REPO,
    SYSTEM_CONFIG,
    NotifySocket,
    can_unshare,
    describe,
    json_events,
    run,
    started,
    stop,
)

import secautod

pytestmark = [
    pytest.mark.debian,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("apt-get") is None or shutil.which("dpkg") is None,
        reason="building and installing the Debian package needs root, apt-get and dpkg",
    ),
]


def already_installed() -> bool:
    """Whether a secautod package is installed on this machine already."""
    result = run(["dpkg-query", "--show", "--showformat=${Status}", "secautod"])
    return result.stdout.endswith(" installed")


# No pyenv shims or virtualenvs: the system's own python3 only.
CLEAN_ENV = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
DATA_DIRECTORY = Path("/var/lib/secautod")
DIST_PACKAGES = "usr/lib/python3/dist-packages/secautod"


def tail(result_text: str, lines: int = 80) -> str:
    """The end of a long build log."""
    return "\n".join(result_text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the package once for this module; return the .deb."""
    output = tmp_path_factory.mktemp("deb")
    result = run([str(REPO / "packaging" / "build-deb.sh"), str(output)], timeout=1800)
    assert result.returncode == 0, f"{tail(result.stdout)}\n{tail(result.stderr)}"
    (output / "build.log").write_text(result.stdout)
    (package,) = output.glob(f"secautod_{secautod.__version__}_all.deb")
    return package


@pytest.fixture(scope="module")
def installed(deb: Path) -> Iterator[Path]:
    """Install the built package with apt-get; purge it afterwards."""
    if already_installed():
        pytest.skip("secautod is installed on this machine; `apt-get purge secautod` to test")
    data_existed = DATA_DIRECTORY.exists()
    result = run(
        ["apt-get", "install", "-y", "--no-install-recommends", f"./{deb.name}"],
        cwd=deb.parent,
        env=CLEAN_ENV,
        timeout=900,
    )
    assert result.returncode == 0, describe(result)
    yield deb
    purged = run(["apt-get", "purge", "-y", "secautod"], env=CLEAN_ENV, timeout=900)
    assert purged.returncode == 0, describe(purged)
    if not data_existed:
        shutil.rmtree(DATA_DIRECTORY, ignore_errors=True)


@pytest.fixture
def service_notify_socket() -> Iterator[NotifySocket]:
    """A notify socket the secautod user can send to (pytest's tmp_path is root-only)."""
    directory = Path(tempfile.mkdtemp(prefix="secautod-notify-"))
    directory.chmod(0o711)
    notify = NotifySocket(directory)
    user = pwd.getpwnam("secautod")
    os.chown(notify.path, user.pw_uid, user.pw_gid)
    yield notify
    notify.close()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.skipif(not can_unshare("--net"), reason="no network namespaces here to build in")
def test_package_builds_offline(deb: Path) -> None:
    """dpkg-buildpackage ran in a network namespace without interfaces, so the build needs no network."""
    build_log = (deb.parent / "build.log").read_text().splitlines()
    assert "build-deb: building without network access" in build_log
    assert f"dpkg-deb: building package 'secautod' in '../{deb.name}'." in build_log


def test_package_holds_program_unit_user_config_and_migrations(deb: Path) -> None:
    """The .deb ships /usr/bin/secautod, the unit, sysusers/tmpfiles files, the config and the SQL migrations."""
    listing = run(["dpkg-deb", "--contents", str(deb)], env=CLEAN_ENV)
    paths = {line.split()[-1].removeprefix("./") for line in listing.stdout.splitlines()}
    migrations = sorted((REPO / "secautod" / "migrations").glob("*.sql"))
    assert migrations
    expected = {
        "usr/bin/secautod",
        "lib/systemd/system/secautod.service",
        "usr/lib/sysusers.d/secautod.conf",
        "usr/lib/tmpfiles.d/secautod.conf",
        "etc/secautod/config.yaml",
        f"{DIST_PACKAGES}/py.typed",
        *(f"{DIST_PACKAGES}/migrations/{path.name}" for path in migrations),
    }
    assert expected <= paths, describe(listing)


def test_config_is_a_conffile(deb: Path) -> None:
    """/etc/secautod/config.yaml is a conffile, so upgrades keep the operator's changes."""
    result = run(["dpkg-deb", "--info", str(deb), "conffiles"], env=CLEAN_ENV)
    assert SYSTEM_CONFIG in result.stdout.split(), describe(result)


def test_depends_on_debians_python_libraries(deb: Path) -> None:
    """The package depends on the distribution's python3 libraries, not on vendored copies."""
    result = run(["dpkg-deb", "--field", str(deb), "Depends"], env=CLEAN_ENV)
    depends = {item.split()[0] for item in result.stdout.replace("|", ",").split(",")}
    assert {
        "python3-apscheduler",
        "python3-structlog",
        "python3-yaml",
        "python3-sdnotify",
    } <= depends


def test_installed_command_runs_on_the_system_python(installed: Path) -> None:
    """/usr/bin/secautod starts with #!/usr/bin/python3 and prints the package's version."""
    assert Path("/usr/bin/secautod").read_text().splitlines()[0] == "#!/usr/bin/python3"
    result = run(["/usr/bin/secautod", "--version"], env=CLEAN_ENV)
    assert result.returncode == 0, describe(result)
    assert result.stdout.strip() == f"secautod {secautod.__version__}"


def test_installed_service_user_and_data_directory(installed: Path) -> None:
    """Installing creates the system user secautod and its owner-only /var/lib/secautod."""
    user = pwd.getpwnam("secautod")
    assert user.pw_uid < 1000
    assert (user.pw_dir, user.pw_shell) == (str(DATA_DIRECTORY), "/usr/sbin/nologin")
    info = DATA_DIRECTORY.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o700, user.pw_uid)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_installed_unit_passes_systemd_analyze_verify(installed: Path, tmp_path: Path) -> None:
    """The installed unit verifies cleanly against the installed executable and user."""
    result = run(
        ["systemd-analyze", "verify", "/lib/systemd/system/secautod.service"],
        cwd=tmp_path,
        env=CLEAN_ENV,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), describe(result)


def test_installed_daemon_runs_as_the_service_user_until_sigterm(
    installed: Path, service_notify_socket: NotifySocket, tmp_path: Path
) -> None:
    """The installed daemon, as user secautod on the packaged config, reaches READY=1 and exits 0 on SIGTERM."""
    argv = [
        "setpriv",
        "--reuid=secautod",
        "--regid=secautod",
        "--init-groups",
        "/usr/bin/secautod",
        "run",
        "--config",
        SYSTEM_CONFIG,
    ]
    environment = {**CLEAN_ENV, "NOTIFY_SOCKET": str(service_notify_socket.path)}
    log = tmp_path / "daemon.log"
    with started(argv, environment, log) as daemon:
        service_notify_socket.wait_for("READY=1")
        interpreter = Path(f"/proc/{daemon.pid}/exe").resolve()
        assert interpreter == Path("/usr/bin/python3").resolve()
        assert stop(daemon.pid, daemon) == 0, log.read_text()
    events = json_events(log.read_text())
    assert events[-1]["event"] == "shutdown_completed"
    store = DATA_DIRECTORY / "jobs.db"
    info = store.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, pwd.getpwnam("secautod").pw_uid)
