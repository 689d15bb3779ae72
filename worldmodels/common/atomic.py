"""Atomic file writes, shared by checkpoints (agents) and datasets (worldmodels).

The content goes to a temporary file in the same folder, is flushed and fsynced, and is then renamed over the final
name (``os.replace`` is atomic on POSIX): a crash or Ctrl-C mid-write never leaves a truncated file where a good
one was, and nothing already saved is lost.

A full disk (or quota) raises :class:`DiskFullError`, one line naming the file, the free space and the size it
needs, with the temporary file removed: whatever the writer was (``torch.save`` turns the OS error into its own
``RuntimeError``), nothing partial is left and nothing older is touched.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space left where a file was being written; the message names the file, the free space and the size
    (``path``: the file)."""

    path: Path | None = None


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


class _Recording:
    """A binary file that remembers a full-disk error from its writes (``torch.save`` reraises it as its own
    ``RuntimeError``, losing the errno) and counts the bytes written."""

    def __init__(self, f: BinaryIO) -> None:
        self._f, self.written, self.full = f, 0, False

    def write(self, data: Any) -> int:
        try:
            n = self._f.write(data)
        except OSError as err:
            self.full = self.full or err.errno in _FULL
            raise
        self.written += n
        return n

    def __getattr__(self, name: str) -> Any:  # flush, fileno, tell, seek, ...
        return getattr(self._f, name)


class _Counter:
    """A binary sink that only counts what is written to it (the size a failed write needed)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        self.size += n
        return n

    def flush(self) -> None:
        pass


def _needed(content: bytes | Callable[[BinaryIO], object]) -> int | None:
    """The size ``content`` takes, written to nowhere (None if the writer needs a real file)."""
    if isinstance(content, bytes):
        return len(content)
    counter = _Counter()
    try:
        content(cast(BinaryIO, counter))
    except Exception:
        return None
    return counter.size


def disk_full_error(path: Path, content: bytes | Callable[[BinaryIO], object], written: int) -> DiskFullError:
    """The one-line error of a write of ``content`` to ``path`` that found the disk full after ``written`` bytes."""
    try:
        st = os.statvfs(path.parent)
        free = _megabytes(st.f_bavail * st.f_frsize)
    except OSError:
        free = "unknown"
    needed = _needed(content)
    size = _megabytes(needed) if needed is not None else f"more than {_megabytes(written)}"
    error = DiskFullError(f"no space left on the device of {path.parent}: writing {path.name} needs {size}, {free} "
                          f"free there; free some space (or write to a larger disk) and run the command "
                          f"again. Nothing partial was written; files saved before are intact.")
    error.path = path
    return error


def atomic_write(path: str | Path, content: bytes | Callable[[BinaryIO], object]) -> None:
    """Write ``content`` (bytes, or a function that writes to a binary file object) to ``path`` atomically.

    :raises DiskFullError: the disk (or quota) filled up; no temporary file is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        if err.errno in _FULL:  # not even an inode left
            raise disk_full_error(path, content, 0) from None
        raise
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs should be as readable as any other
    recording: _Recording | None = None
    try:
        with os.fdopen(fd, "wb") as f:
            recording = _Recording(f)
            if isinstance(content, bytes):
                recording.write(content)
            else:
                content(cast(BinaryIO, recording))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        full = isinstance(err, OSError) and err.errno in _FULL
        if full or (recording is not None and recording.full):
            raise disk_full_error(path, content, recording.written if recording else 0) from None
        raise
