"""One writer per run directory (and per dataset folder): an exclusive lock that dies with its process.

The lock is ``fcntl.flock`` on a file inside the folder (:data:`LOCK_NAME`). The kernel releases it when the
process ends, however it ends (kill -9 included), so a lock is never stale: the file may stay behind, but only a
live process holds the lock on it. The holder writes its pid, host and command line into the file, so a second
writer is refused with a message that names the process using the folder.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from pathlib import Path

from worldmodels.common.scaffold import RunExistsError

#: The lock file inside a run directory or dataset folder.
LOCK_NAME = ".reverie.lock"


class RunLockedError(RunExistsError):
    """Another live process writes this folder."""


def _holder(lock_file: Path) -> str:
    """Who holds ``lock_file``, as its holder recorded it ("pid N on HOST: COMMAND")."""
    try:
        text = lock_file.read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


def _refusal(folder: Path, lock_file: Path) -> RunLockedError:
    return RunLockedError(f"{folder} is in use by {_holder(lock_file)}; one process at a time writes a run "
                          f"directory: wait for that process to end (or stop it), or choose another folder.")


class DirectoryLock:
    """An exclusive, non-blocking lock on ``folder`` (created if absent) for the life of this object or process.

    :raises RunLockedError: (from :meth:`acquire`) another process holds it, naming that process.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.file = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> DirectoryLock:
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _refusal(self.folder, self.file) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv)}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (the file stays: removing it would let a third process lock a new inode while a
        second one holds the old one)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_unlocked(folder: str | Path) -> None:
    """Refuse early, without taking the lock, if a live process holds ``folder``'s lock.

    :raises RunLockedError: naming that process.
    """
    lock_file = Path(folder) / LOCK_NAME
    if not lock_file.is_file():
        return
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refusal(Path(folder), lock_file) from None
    finally:
        os.close(fd)
