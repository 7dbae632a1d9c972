"""The container image, built with podman from packaging/Containerfile and run for real.

The base image is Debian 12 made with debootstrap (python3, python3-venv,
python3-pip, python-is-python3, ca-certificates), imported into a private
podman storage under /var/cache/secautod-tests and kept between runs, keyed
by a hash of what goes into it. The Containerfile is built on it with
`--build-arg PYTHON_IMAGE=...`; `--format docker` keeps its HEALTHCHECK.
Podman runs with a private containers.conf (CONTAINERS_CONF) and its own
storage, so the host's podman setup is neither read nor changed; every
container, volume and image made here is removed afterwards, except the
cached base image.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import debian_roots
import pytest
from deploy_support import REPO, describe, json_events, require, run, wait_until

pytestmark = pytest.mark.container

UID = 10001
DATA_DIRECTORY = "/var/lib/secautod"
STOP_TIMEOUT = 60
# Slow steps on a 2-core machine: the first backup, a full podman command.
STARTUP_DEADLINE = 90.0
PODMAN_STORAGE = debian_roots.CACHE / "podman"
# Fixed: podman records both in its storage's database and refuses others.
PODMAN_RUNROOT = Path("/run/secautod-tests/podman")
PODMAN_TMPDIR = Path("/run/secautod-tests/libpod")
BASE_IMAGE = "localhost/secautod-test-base"
# What this machine's podman needs (crun: "cgroups in hybrid mode not supported";
# the default rlimits: "error setting rlimit ... operation not permitted"); no
# journald, no systemd timers here.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{events}"
"""
PIP_INDEX_KEYS = ("index-url", "extra-index-url", "trusted-host")


@dataclass(frozen=True)
class Podman:
    """The podman command with this test's private configuration and storage."""

    environment: dict[str, str]

    def __call__(self, *args: str, timeout: float = 120) -> Any:
        """Run `podman ARGS` and return the completed process."""
        argv = [
            "podman",
            f"--root={PODMAN_STORAGE}",
            f"--runroot={PODMAN_RUNROOT}",
            f"--tmpdir={PODMAN_TMPDIR}",
            "--storage-driver=overlay",
            *args,
        ]
        return run(argv, env=self.environment, timeout=timeout)

    def check(self, *args: str, timeout: float = 120) -> str:
        """Run `podman ARGS`, fail the test unless it exits 0, and return its output."""
        result = self(*args, timeout=timeout)
        assert result.returncode == 0, describe(result)
        return str(result.stdout)


def host_pip_settings() -> dict[str, str]:
    """The host's pip index settings that a build can use too (no file:// indexes)."""
    result = run([sys.executable, "-m", "pip", "config", "list"])
    settings: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.rpartition(".")[2]
        if name in PIP_INDEX_KEYS:
            settings[name] = value.strip("'\"")
    for name in PIP_INDEX_KEYS:
        variable = "PIP_" + name.upper().replace("-", "_")
        if os.environ.get(variable):
            settings[name] = os.environ[variable]
    for name, value in list(settings.items()):
        kept = [item for item in value.split() if not item.startswith("file:")]
        if kept:
            settings[name] = " ".join(kept)
        else:
            del settings[name]
    return settings


def base_image_files() -> dict[str, bytes]:
    """The host's extra CA certificates and pip index settings, for the base image.

    pip inside the build reaches the package index only through what the host
    trusts and uses; ca-certificates' postinst adds the certificates to the
    system bundle, which Debian's pip reads.
    """
    files = {
        f"/usr/local/share/ca-certificates/{path.name}": path.read_bytes()
        for path in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    }
    pip_conf = ["[global]", "cert = /etc/ssl/certs/ca-certificates.crt"]
    pip_conf += [f"{key} = {value}" for key, value in sorted(host_pip_settings().items())]
    files["/etc/pip.conf"] = ("\n".join(pip_conf) + "\n").encode()
    return files


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """Podman with a private containers.conf and storage (root, runc, debootstrap needed)."""
    tools = ("podman", "runc", "debootstrap", "systemd-nspawn")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    require(os.geteuid() == 0, "building and running images with podman here needs root")
    require(not missing, f"not installed: {', '.join(missing)} (see .ci/run)")
    directory = tmp_path_factory.mktemp("podman")
    conf = directory / "containers.conf"
    conf.write_text(CONTAINERS_CONF.format(events=directory / "events.log"))
    environment = {**debian_roots.CLEAN_ENV, "CONTAINERS_CONF": str(conf), "HOME": str(directory)}
    yield Podman(environment)
    # Whatever the tests left running, so the storage can be reused.
    Podman(environment)("rm", "--all", "--force")


@pytest.fixture(scope="module")
def base_image(podman: Podman) -> str:
    """The cached Debian 12 base image; older ones (other recipes) are removed."""
    root = debian_roots.container_base_root(base_image_files())
    tag = f"{BASE_IMAGE}:{root.name.rpartition('-')[2]}"
    if podman("image", "exists", tag).returncode != 0:
        for stale in podman.check("images", "--format={{.Repository}}:{{.Tag}}").split():
            if stale.startswith(f"{BASE_IMAGE}:"):
                podman.check("rmi", "--force", stale)
        archive = root.parent / f".{root.name}.tar"
        try:
            run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(archive), "."], timeout=600)
            podman.check(
                "import",
                "--change=ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                str(archive),
                tag,
                timeout=600,
            )
        finally:
            archive.unlink(missing_ok=True)
    return tag


@pytest.fixture(scope="module")
def image(podman: Podman, base_image: str) -> Iterator[str]:
    """packaging/Containerfile built on the base image; removed afterwards with its leftovers."""
    before = set(podman.check("images", "--all", "--quiet", "--no-trunc").split())
    tag = f"localhost/secautod-test:{uuid.uuid4().hex[:12]}"
    try:
        podman.check(
            "build",
            "--format=docker",
            "--layers=false",
            "--network=host",
            "--pull=never",
            f"--build-arg=PYTHON_IMAGE={base_image}",
            f"--file={REPO / 'packaging' / 'Containerfile'}",
            f"--tag={tag}",
            str(REPO),
            timeout=900,
        )
        yield tag
    finally:
        podman("rmi", "--force", tag)
        after = set(podman.check("images", "--all", "--quiet", "--no-trunc").split())
        for leftover in after - before:
            podman("rmi", "--force", leftover)


@dataclass
class Container:
    """One running container of the image, on a named volume."""

    podman: Podman
    name: str
    volume: str

    def exec(self, *argv: str) -> Any:
        """Run `argv` inside the container as the image's user."""
        return self.podman("exec", self.name, *argv)

    def logs(self) -> str:
        """Everything the container wrote to stdout and stderr."""
        result = self.podman("logs", self.name)
        return str(result.stdout) + str(result.stderr)

    def events(self) -> list[dict[str, Any]]:
        """The container's log, each line parsed as a JSON object (fails on any other line)."""
        return json_events(self.logs())

    def inspect(self, template: str) -> str:
        """`podman inspect --format TEMPLATE` of the container."""
        return self.podman.check("inspect", f"--format={template}", self.name).strip()


def start(podman: Podman, image: str, volume: str) -> Container:
    """Start the image detached on `volume`, without network, and wait for its first backup."""
    name = f"secautod-test-{uuid.uuid4().hex[:12]}"
    podman.check(
        "run",
        "--detach",
        f"--name={name}",
        "--network=none",
        f"--volume={volume}:{DATA_DIRECTORY}",
        image,
    )
    container = Container(podman, name, volume)
    try:
        wait_until(
            lambda: container.exec("secautod", "status").returncode == 0,
            timeout=STARTUP_DEADLINE,
            what=f"`secautod status` exiting 0 in {name}",
        )
    except AssertionError as error:
        raise AssertionError(f"{error}; its log:\n{container.logs()}") from None
    return container


@pytest.fixture(scope="module")
def volume(podman: Podman) -> Iterator[str]:
    """A named volume for the data directory, removed with any container using it."""
    name = f"secautod-test-{uuid.uuid4().hex[:12]}"
    podman.check("volume", "create", name)
    yield name
    podman("volume", "rm", "--force", name)


@pytest.fixture(scope="module")
def container(podman: Podman, image: str, volume: str) -> Iterator[Container]:
    """The image running on the volume, healthy (its first backup taken)."""
    running = start(podman, image, volume)
    yield running
    podman("rm", "--force", "--time=0", running.name)


def test_image_keeps_its_healthcheck(podman: Podman, image: str) -> None:
    """Built with --format docker, the image carries the Containerfile's HEALTHCHECK."""
    config = json.loads(podman.check("image", "inspect", image))[0]
    healthcheck = config.get("Healthcheck")
    assert healthcheck, config
    assert healthcheck["Test"][1:] == [
        "/opt/secautod/bin/secautod",
        "status",
        "--config",
        "/etc/secautod/config.yaml",
    ], healthcheck


def test_pid1_and_exec_run_as_uid_10001(container: Container) -> None:
    """PID 1 (the daemon, seen inside and from the host) and an exec'd command run as uid/gid 10001."""
    status = container.exec("cat", "/proc/1/status")
    assert status.returncode == 0, describe(status)
    fields = dict(line.split(":", 1) for line in status.stdout.splitlines() if ":" in line)
    assert fields["Uid"].split() == [str(UID)] * 4, fields["Uid"]
    assert fields["Gid"].split() == [str(UID)] * 4, fields["Gid"]
    assert "secautod" in fields["Name"] or "python" in fields["Name"], fields["Name"]
    host_pid = int(container.inspect("{{.State.Pid}}"))
    assert Path(f"/proc/{host_pid}").stat().st_uid == UID
    assert container.exec("id", "-u").stdout.strip() == str(UID)


def test_status_and_podman_healthcheck_pass(container: Container) -> None:
    """`secautod status` inside exits 0, and so does `podman healthcheck run`."""
    status = container.exec("secautod", "status")
    assert status.returncode == 0, describe(status)
    health = container.podman("healthcheck", "run", container.name)
    assert health.returncode == 0, describe(health)


def test_volume_is_owned_by_10001_and_owner_only(container: Container) -> None:
    """The named volume's directory is owned by uid/gid 10001 with mode 0700."""
    mountpoint = container.podman.check(
        "volume", "inspect", "--format={{.Mountpoint}}", container.volume
    ).strip()
    info = Path(mountpoint).stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (UID, UID, 0o700)
    database = Path(mountpoint) / "jobs.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


def test_sighup_reloads_the_config(container: Container) -> None:
    """`podman kill --signal HUP` makes the daemon log reload_completed."""
    container.podman.check("kill", "--signal=HUP", container.name)
    wait_until(
        lambda: any(event["event"] == "reload_completed" for event in container.events()),
        what="reload_completed in the container log",
    )


def test_stops_cleanly_logs_json_and_a_second_container_reuses_the_volume(
    container: Container, image: str
) -> None:
    """`podman stop -t 60` exits 0 in time (exit status 0, every log line JSON); the volume starts again."""
    started = time.monotonic()
    stopped = container.podman("stop", f"--time={STOP_TIMEOUT}", container.name)
    elapsed = time.monotonic() - started
    assert stopped.returncode == 0, describe(stopped)
    assert elapsed < STOP_TIMEOUT, f"podman stop took {elapsed:.1f}s"
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
    events = container.events()
    assert events[-1]["event"] == "shutdown_completed", events[-3:]
    assert all({"timestamp", "level", "event"} <= event.keys() for event in events)

    second = start(container.podman, image, container.volume)
    try:
        assert any(event["event"] == "store_opened" for event in second.events())
    finally:
        container.podman("rm", "--force", "--time=0", second.name)
