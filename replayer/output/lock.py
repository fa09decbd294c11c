"""One run per folder: an exclusive flock on OUT/.replayer.lock, held for the run's whole life.

The lock goes with the process (flock is released when its descriptor closes, at exit or
on a kill), so a stale lock file left by a killed run never blocks the next run or a resume.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson

from replayer.output.layout import LOCK, OutDirError
from replayer.output.sinks import OutputError

_MAX_HOLDER_BYTES = 4096


class FolderBusy(OutDirError):
    """Another live run holds the folder's lock; the message names its process."""

    def __init__(self, folder: Path, holder: dict[str, Any] | None) -> None:
        self.folder = folder
        self.holder = holder
        super().__init__(
            f"{folder} is in use by another run ({describe_holder(holder)}); wait for it to "
            "end or stop it, or use another --out"
        )


def describe_holder(holder: dict[str, Any] | None) -> str:
    """'pid 123 on host h, since 2024-...' from a lock file's contents (or what is known)."""
    if not holder or not isinstance(holder.get("pid"), int):
        return "pid unknown: it is just starting"
    text = f"pid {holder['pid']}"
    if holder.get("host"):
        text += f" on {holder['host']}"
    if holder.get("started_at"):
        text += f", since {holder['started_at']}"
    return text


class FolderLock:
    """An exclusive lock on a folder for this process: `acquire()`/`release()` or `with`.

    The descriptor is close-on-exec (a child never holds it); workers need no lock of
    their own since they die with the parent that holds it. The lock file is never
    deleted: deleting it would let two runs lock two different files.
    """

    def __init__(
        self, folder: Path, *, name: str = LOCK, host: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.folder = folder
        self.path = folder / name
        self._host = host if host is not None else socket.gethostname()
        self._wall = wall
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> None:
        """Takes the lock and writes this process into the file; FolderBusy if another holds it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already locked by this object")
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd) if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) else None
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise FolderBusy(self.folder, holder) from None
            raise OutputError(f"cannot lock {self.path}: {exc.strerror}") from None
        self._fd = fd
        try:
            self._write_holder(fd)
        except OSError as exc:
            self.release()
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None

    def release(self) -> None:
        """Gives the lock up (the file stays); a no-op when not held."""
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def holder(self) -> dict[str, Any] | None:
        """What the lock file says about the process holding it (None if unreadable)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            return _read_holder(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _open(self) -> int:
        # No O_TRUNC: the file is emptied only once the lock is ours (the holder's pid
        # stays readable for the run that is refused). O_NOFOLLOW: never write through
        # a symlink planted at the lock's name.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot open {self.path}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OutDirError(f"{self.path} is not a regular file; move it away")
        return fd

    def _write_holder(self, fd: int) -> None:
        started = datetime.fromtimestamp(self._wall(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        doc = {"pid": os.getpid(), "host": self._host, "started_at": started}
        os.ftruncate(fd, 0)
        os.pwrite(fd, orjson.dumps(doc) + b"\n", 0)


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        data = os.pread(fd, _MAX_HOLDER_BYTES, 0)
        doc = orjson.loads(data)
    except (OSError, orjson.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None
