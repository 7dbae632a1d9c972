"""Debian 12 root file systems made with debootstrap, cached between runs.

Each root is a directory under the cache, named after a hash of everything
that goes into it (suite, mirror, packages, extra files, its parent root), so
a change to any of them builds a new one and the stale one is removed. A root
is built in a temporary directory and renamed into place when complete, so an
interrupted build leaves nothing that looks usable. Commands run inside a root
with `systemd-nspawn` (no chroot mounts to clean up on the host).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

CACHE = Path(os.environ.get("SECAUTOD_TEST_CACHE", "/var/cache/secautod-tests"))
SUITE = "bookworm"
MIRROR = os.environ.get("SECAUTOD_TEST_MIRROR", "http://deb.debian.org/debian")
# Bump to rebuild every cached root after a change to how they are made.
RECIPE_VERSION = "2"
CLEAN_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}


class RootBuildError(RuntimeError):
    """A command that builds a cached root failed."""


def run_logged(argv: Sequence[str], timeout: float) -> str:
    """Run a build step and return its output (stdout and stderr, interleaved).

    Raise RootBuildError with the end of that output if it fails.
    """
    result = subprocess.run(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        check=False,
        timeout=timeout,
        env=CLEAN_ENV,
    )
    if result.returncode != 0:
        output = "\n".join(result.stdout.splitlines()[-60:])
        raise RootBuildError(f"{' '.join(argv)} exited {result.returncode}:\n{output}")
    return result.stdout


def nspawn(
    root: Path,
    argv: Sequence[str],
    binds: Mapping[Path, str] | None = None,
    read_only_binds: Mapping[Path, str] | None = None,
    timeout: float = 900,
) -> str:
    """Run `argv` inside `root` (not booted) with systemd-nspawn, sharing the host's network."""
    options = ["--quiet", "--register=no", "--keep-unit", "--resolv-conf=replace-host"]
    # No pseudo-terminal: plain output, no colours, nothing waiting for input.
    options += ["--console=pipe"]
    options += [f"--bind={host}:{inside}" for host, inside in (binds or {}).items()]
    options += [f"--bind-ro={host}:{inside}" for host, inside in (read_only_binds or {}).items()]
    options += [f"--setenv={key}={value}" for key, value in CLEAN_ENV.items()]
    return run_logged(["systemd-nspawn", *options, "-D", str(root), "--", *argv], timeout)


def recipe_key(recipe: Mapping[str, object]) -> str:
    """A short hash naming a root built from `recipe`."""
    text = json.dumps({"version": RECIPE_VERSION, **recipe}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_root(
    name: str,
    packages: Sequence[str],
    parent: Path | None = None,
    files: Mapping[str, bytes] | None = None,
    commands: Sequence[Sequence[str]] = (),
) -> Path:
    """A cached root: `parent` (or a new minbase) plus `packages`, `files` (path -> content), then `commands`."""
    recipe = {
        "suite": SUITE,
        "mirror": MIRROR,
        "parent": parent.name if parent else None,
        "packages": sorted(packages),
        "files": {path: hashlib.sha256(data).hexdigest() for path, data in (files or {}).items()},
        "commands": [list(command) for command in commands],
    }
    root = CACHE / f"{name}-{recipe_key(recipe)}"
    if root.is_dir():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    CACHE.chmod(0o700)
    # One builder at a time (two checkouts' test runs may share this cache).
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not root.is_dir():
            make_root(root, parent, packages, files or {}, commands)
    return root


def make_root(
    root: Path,
    parent: Path | None,
    packages: Sequence[str],
    files: Mapping[str, bytes],
    commands: Sequence[Sequence[str]],
) -> None:
    """Build `root` in a temporary directory, then rename it into place (see cached_root)."""
    name = root.name.rpartition("-")[0]
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE))
    try:
        if parent is None:
            run_logged(["debootstrap", "--variant=minbase", SUITE, str(work), MIRROR], timeout=1800)
        else:
            work.rmdir()
            run_logged(["cp", "-a", "--reflink=auto", str(parent), str(work)], timeout=900)
        for path, data in files.items():
            target = work / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if parent is None or packages or commands:
            nspawn(work, ["apt-get", "update", "-q"])
        if packages:
            nspawn(
                work,
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            )
        for command in commands:
            nspawn(work, command)
        nspawn(work, ["apt-get", "clean"])
        # Stale roots of the same name (an older recipe) go; this one takes their place.
        for stale in CACHE.glob(f"{name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        # A file system's root is 0755 (mkdtemp made it 0700): a service user must reach /.
        work.chmod(0o755)
        work.rename(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def minbase() -> Path:
    """A `debootstrap --variant=minbase` Debian 12 root, package lists refreshed."""
    return cached_root("minbase", [])


def systemd_root() -> Path:
    """Debian 12 minbase with systemd, systemd-sysv and dbus: a system that boots."""
    return cached_root("systemd", ["systemd", "systemd-sysv", "dbus"], parent=minbase())


def container_base_root(files: Mapping[str, bytes]) -> Path:
    """Debian 12 minbase with Python and pip (what python:3.11-slim gives), plus `files`."""
    packages = ["python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates"]
    return cached_root("container-base", packages, parent=minbase(), files=files)


def build_root(control: bytes) -> Path:
    """A root to build the .deb in: systemd_root() plus the Build-Depends of `control`."""
    return cached_root(
        "deb-build",
        [],
        parent=systemd_root(),
        files={"/var/tmp/secautod-build-depends/debian/control": control},
        commands=[
            [
                "apt-get",
                "build-dep",
                "-y",
                "-q",
                "--no-install-recommends",
                "/var/tmp/secautod-build-depends",
            ]
        ],
    )


def runtime_root(depends: Sequence[str]) -> Path:
    """systemd_root() plus the .deb's dependencies, so installing it needs no network."""
    return cached_root("deb-runtime", depends, parent=systemd_root())
