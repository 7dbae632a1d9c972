import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from secautod.errors import EX_TEMPFAIL, LockHeldError
from secautod.lock import (
    LOCK_FILE_NAME,
    PROBE_RETRIES,
    PROBE_RETRY_SECONDS,
    DirectoryLock,
    holder_pid,
)


def test_lock_names_its_holder_and_is_released(tmp_path: Path) -> None:
    """A second lock attempt fails with 75 naming the pid; after release it succeeds."""
    first = DirectoryLock(tmp_path).acquire()
    assert holder_pid(tmp_path) == os.getpid()
    with pytest.raises(LockHeldError, match=f"pid {os.getpid()}") as caught:
        DirectoryLock(tmp_path).acquire("start the daemon")
    assert caught.value.exit_status == EX_TEMPFAIL
    first.release()
    assert holder_pid(tmp_path) is None
    DirectoryLock(tmp_path).acquire().release()


def hold_probe_lock(directory: Path) -> int:
    """Hold the shared lock `holder_pid` takes for its probe; return the descriptor."""
    (directory / LOCK_FILE_NAME).touch()
    fd = os.open(directory / LOCK_FILE_NAME, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def test_a_brief_status_probe_does_not_block_a_starting_daemon(tmp_path: Path) -> None:
    """acquire() waits out a shared probe lock held for 50 ms, then holds the lock with its pid."""
    fd = hold_probe_lock(tmp_path)
    other = os.open(tmp_path / LOCK_FILE_NAME, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):  # the probe really holds it: no exclusive lock now
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)
    released_at: list[float] = []

    def end_probe() -> None:
        released_at.append(time.monotonic())
        os.close(fd)

    releaser = threading.Timer(0.05, end_probe)
    releaser.start()
    try:
        lock = DirectoryLock(tmp_path).acquire()
    finally:
        releaser.join()
    acquired_at = time.monotonic()
    try:
        assert released_at, "acquire() returned before the probe ended"
        assert acquired_at >= released_at[0]
        assert holder_pid(tmp_path) == os.getpid()
        assert (tmp_path / LOCK_FILE_NAME).read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()


def test_a_lock_held_past_the_probe_patience_is_refused(tmp_path: Path) -> None:
    """A shared lock held longer than a probe lasts is not waited for: 75 after about 0.2 s."""
    fd = hold_probe_lock(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(LockHeldError) as caught:
            DirectoryLock(tmp_path).acquire()
        waited = time.monotonic() - started
    finally:
        os.close(fd)
    assert caught.value.exit_status == EX_TEMPFAIL
    assert PROBE_RETRIES * PROBE_RETRY_SECONDS <= waited < 5
