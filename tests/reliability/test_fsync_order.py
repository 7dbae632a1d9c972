"""The order of writes, syncs and renames of a real `secautod backup` and `restore`, seen by strace.

A file that gets its final name before its data is on disk can be found
empty or torn after a power cut, under a name that promises a verified
copy. These tests run the real CLI under `strace -f -y` and check that a
backup's copy is synced before it gets its final name and its directory is
synced after, so the name itself survives; and that a restore's copy of the
replaced database is synced, with its directory, before the restore commits.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import SECAUTOD, require, write_config

from secautod import JobStore

SYSCALLS = "fsync,fdatasync,write,pwrite64,pwritev,pwritev2,link,linkat,rename,renameat,renameat2"
_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<result>-?\d+)")
_FD_PATH = re.compile(r"^\d+<(?P<path>[^>]*)>")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_DIRFD = re.compile(r"(?:AT_FDCWD|\d+)<(?P<dir>[^>]*)>")


@dataclass(frozen=True)
class Call:
    """One successful system call: its name and the paths it touched (the source first)."""

    index: int
    name: str
    paths: tuple[str, ...]

    @property
    def syncs(self) -> bool:
        return self.name in ("fsync", "fdatasync")

    @property
    def writes(self) -> bool:
        return self.name.startswith(("write", "pwrite"))

    @property
    def names(self) -> bool:
        return self.name.startswith(("link", "rename"))


def parse_trace(text: str) -> list[Call]:
    """The successful calls of an `strace -f -y` log, in order."""
    calls: list[Call] = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None or int(match["result"]) < 0:
            continue
        name, args = match["name"], match["args"]
        if name.startswith(("link", "rename")):
            paths = tuple(_absolute(args, quoted) for quoted in _QUOTED.findall(args))
        else:
            fd = _FD_PATH.match(args)
            if fd is None:
                continue
            paths = (fd["path"],)
        calls.append(Call(len(calls), name, paths))
    return calls


def _absolute(args: str, path: str) -> str:
    """A path of a *at() call made absolute with the directory strace printed for its fd."""
    if path.startswith("/"):
        return path
    directories = _DIRFD.findall(args[: args.index(f'"{path}"')])
    assert directories, args
    return f"{directories[-1]}/{path}"


def traced(tmp_path: Path, *args: str) -> list[Call]:
    """Run `secautod ARGS` under strace and return its calls; the command must succeed."""
    log = tmp_path / f"strace-{args[0]}.txt"
    result = subprocess.run(
        ["strace", "-f", "-y", "-qq", "-o", str(log), "-e", f"trace={SYSCALLS}", SECAUTOD, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return parse_trace(log.read_text())


def naming(calls: list[Call], source: str, target: str) -> Call:
    """The one call that gave `source`'s file the name `target`."""
    found = [call for call in calls if call.names and call.paths == (source, target)]
    assert len(found) == 1, [call for call in calls if call.names]
    return found[0]


def last_before(calls: list[Call], before: Call, path: str, *, syncs: bool) -> Call | None:
    """The last write (or sync) of `path` before `before`."""
    matching = [
        call
        for call in calls[: before.index]
        if call.paths == (path,) and (call.syncs if syncs else call.writes)
    ]
    return matching[-1] if matching else None


def assert_synced_then_named_then_directory_synced(
    calls: list[Call], staged: str, final: str
) -> None:
    """`staged` was written, synced, then named `final`; then its directory was synced.

    Later writes are not looked at here: a restored store is then opened (and
    switched back to WAL) through SQLite's own journal.
    """
    named = naming(calls, staged, final)
    last_write = last_before(calls, named, staged, syncs=False)
    last_sync = last_before(calls, named, staged, syncs=True)
    assert last_write is not None, "the copy was never written"
    assert last_sync is not None, "the copy was never synced before it got its final name"
    assert last_write.index < last_sync.index < named.index
    # The very next write or sync: SQLite's own later directory syncs do not count.
    following = [call for call in calls[named.index + 1 :] if call.writes or call.syncs]
    directory = str(Path(final).parent)
    assert following, "nothing was synced after the naming"
    what = f"the directory was not synced right after the naming: {following[0]}"
    assert following[0].syncs, what
    assert following[0].paths == (directory,), what


@pytest.fixture
def strace() -> None:
    """Require strace, which CI installs (`.ci/run`)."""
    require(shutil.which("strace"), "strace is not installed (apt-get install strace)")


@pytest.fixture
def installation(tmp_path: Path, make_job: Any) -> Path:
    """A config and a store holding a few jobs."""
    config = write_config(tmp_path)
    (tmp_path / "data").mkdir(mode=0o700)
    with JobStore(tmp_path / "data" / "jobs.db") as store:
        for _ in range(50):
            store.save_job(make_job(context={"blob": "x" * 2000}))
    return config


@pytest.mark.usefixtures("strace")
def test_backup_syncs_the_copy_before_naming_it_then_the_directory(
    tmp_path: Path, installation: Path
) -> None:
    """`secautod backup`: the .partial copy's last write, its sync, its link to the final name, a directory sync."""
    calls = traced(tmp_path, "backup", "--config", str(installation))
    data = tmp_path / "data"
    (final,) = data.glob("jobs.db.backup.*")
    links = [call for call in calls if call.names and call.paths[-1] == str(final)]
    assert len(links) == 1, links
    staged = links[0].paths[0]
    assert staged.endswith(".partial"), staged
    assert_synced_then_named_then_directory_synced(calls, staged, str(final))
    after = calls[links[0].index + 1 :]
    assert not [call for call in after if call.writes and call.paths[0] in (staged, str(final))]


@pytest.mark.usefixtures("strace")
def test_restore_syncs_the_copy_aside_before_the_restore_commits(
    tmp_path: Path, installation: Path
) -> None:
    """`secautod restore`: the pre-restore copy is written and synced, then its directory, before the restore's first sync of jobs.db."""
    backup = subprocess.run(
        [SECAUTOD, "backup", "--config", str(installation)], capture_output=True, check=True
    )
    assert backup.returncode == 0
    calls = traced(tmp_path, "restore", "--config", str(installation))
    data = tmp_path / "data"
    (aside,) = (
        str(path)
        for path in data.glob("jobs.db.pre-restore-*")
        if not path.name.endswith(("-journal", "-wal", "-shm"))
    )
    database = str(data / "jobs.db")
    aside_syncs = [call for call in calls if call.syncs and call.paths == (aside,)]
    aside_writes = [call for call in calls if call.writes and call.paths == (aside,)]
    assert aside_writes, "the copy aside was never written"
    assert aside_syncs, "the copy aside was never synced"
    last_sync = aside_syncs[-1]
    assert aside_writes[-1].index < last_sync.index
    directory_sync = next(
        (
            call
            for call in calls[last_sync.index + 1 :]
            if call.syncs and call.paths == (str(data),)
        ),
        None,
    )
    assert directory_sync is not None, "the directory was not synced after the copy aside"
    restore_syncs = [
        call for call in calls if call.syncs and call.paths[0] in (database, database + "-wal")
    ]
    assert restore_syncs, "the restore never synced jobs.db"
    commit = next(call for call in restore_syncs if call.index > last_sync.index)
    assert directory_sync.index < commit.index, (directory_sync, commit)
