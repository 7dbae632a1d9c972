import fcntl
import os
import threading
from pathlib import Path

import pytest

from secautod.errors import EX_TEMPFAIL, LockHeldError
from secautod.lock import LOCK_FILE_NAME, DirectoryLock, holder_pid


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


def test_a_brief_status_probe_does_not_block_a_starting_daemon(tmp_path: Path) -> None:
    """While a health check holds its shared probe lock for a moment, acquiring still succeeds."""
    (tmp_path / LOCK_FILE_NAME).touch()
    fd = os.open(tmp_path / LOCK_FILE_NAME, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    releaser = threading.Timer(0.05, lambda: os.close(fd))
    releaser.start()
    try:
        DirectoryLock(tmp_path).acquire().release()
    finally:
        releaser.join()
