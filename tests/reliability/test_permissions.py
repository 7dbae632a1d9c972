"""Permissions: unreadable configs, unwritable or foreign-owned data, as a real unprivileged user.

Root bypasses file permissions, so these tests fork the test process and
drop to `nobody` before calling the CLI's `main()` in the child (the
interpreter's files may not be readable by other users, so everything the
child needs is imported beforehand).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from pathlib import Path

import pytest
from harness import require, write_config

import secautod.commands
import secautod.daemon  # noqa: F401 - imported before the privilege drop
from secautod.cli import main

NOBODY = 65534


def run_as_nobody(*argv: str) -> tuple[int, str]:
    """Run `secautod ARGV` in a child process that runs as uid/gid 65534."""
    require(os.geteuid() == 0, "needs root to switch to an unprivileged user")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                status = main(list(argv))
            os.write(write_end, stderr.getvalue().encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode()
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status), output


@pytest.fixture
def open_tree(tmp_path: Path) -> Path:
    """tmp_path made traversable by other users (pytest creates it 0700)."""
    for directory in (tmp_path, *tmp_path.parents):
        if directory == Path("/") or directory.stat().st_mode & 0o001:
            break
        directory.chmod(directory.stat().st_mode | 0o005)
    return tmp_path


def test_unreadable_config_exits_78(open_tree: Path) -> None:
    """A config the user cannot read is a one-line config error (78), not a traceback."""
    config = write_config(open_tree)
    config.chmod(0o600)
    status, stderr = run_as_nobody("run", "--config", str(config))
    assert status == 78
    assert "cannot read config file" in stderr
    assert "Permission denied" in stderr
    assert "Traceback" not in stderr


def test_data_directory_owned_by_someone_else_exits_78(open_tree: Path) -> None:
    """A data directory the user cannot write is refused up front with 78, naming the uid."""
    (open_tree / "data").mkdir(mode=0o700)
    config = write_config(open_tree)
    config.chmod(0o644)
    status, stderr = run_as_nobody("run", "--config", str(config))
    assert status == 78
    assert "data_directory" in stderr
    assert f"uid {NOBODY}" in stderr


def test_database_owned_by_someone_else_exits_74(open_tree: Path) -> None:
    """A store file the user may not open gives 74 with what to check; nothing is created."""
    from secautod import JobStore

    data = open_tree / "data"
    JobStore(data / "jobs.db").close()
    data.chmod(0o777)  # the directory is writable, the 0600 root-owned file is not readable
    config = write_config(open_tree)
    config.chmod(0o644)
    before = sorted(path.name for path in data.iterdir())
    status, stderr = run_as_nobody("jobs", "list", "--config", str(config))
    assert status == 74
    assert "cannot open or write" in stderr
    assert sorted(path.name for path in data.iterdir()) == before
    assert stat.S_IMODE((data / "jobs.db").stat().st_mode) == 0o600


def test_directory_behind_an_unsearchable_parent_exits_78(open_tree: Path) -> None:
    """A backup directory whose parent the user may not even look into is a config error (78)."""
    locked = open_tree / "locked"
    locked.mkdir(mode=0o700)
    config = write_config(open_tree, jobs={"backup_directory": str(locked / "inner" / "backups")})
    config.chmod(0o644)
    (open_tree / "data").mkdir()
    (open_tree / "data").chmod(0o777)  # mkdir applies the umask
    status, stderr = run_as_nobody("check", "--config", str(config))
    assert status == 78
    assert "jobs.backup_directory" in stderr
    assert "Traceback" not in stderr
