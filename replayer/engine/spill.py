"""Disk-backed overflow for lanes: one temporary file holding a linked chain per user.

Each entry is `next offset (8 bytes) | length (4 bytes) | payload`; a lane costs two
offsets of memory however many of its items wait on disk. The file is unlinked at once,
so it disappears with the process whatever way the process ends.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import orjson

from replayer.engine.lanes import Work
from replayer.output.sinks import OutputError
from replayer.records import Session

_HEADER = struct.Struct("<qI")
_NO_NEXT = -1


class FileSpill:
    """A `SpillStore` in an anonymous temporary file under `folder`."""

    def __init__(self, folder: Path | None = None) -> None:
        try:
            fd, name = tempfile.mkstemp(prefix=".replayer-spill-", dir=folder)
            os.unlink(name)
        except OSError as exc:
            raise OutputError(f"cannot create a spill file in {folder}: {exc.strerror}") from None
        self._fd = fd
        self._end = 0
        self._chains: dict[str, tuple[int, int]] = {}  # lane -> (head offset, tail offset)
        self.bytes_written = 0

    def append(self, lane: str, work: Work) -> None:
        """Adds `work` at the end of `lane`'s chain."""
        s = work.session
        payload = orjson.dumps(
            [s.file, s.line_no, s.user_id, s.device_id, s.body.decode(), s.source.decode(), s.time_s,
             s.pass_no, work.attempts, work.free_attempts, work.ambiguous, work.resent,
             work.scheduled_s]
        )
        offset = self._end
        _pwrite_all(self._fd, _HEADER.pack(_NO_NEXT, len(payload)) + payload, offset)
        self._end += _HEADER.size + len(payload)
        self.bytes_written += _HEADER.size + len(payload)
        chain = self._chains.get(lane)
        if chain is None:
            self._chains[lane] = (offset, offset)
            return
        head, tail = chain
        _pwrite_all(self._fd, struct.pack("<q", offset), tail)
        self._chains[lane] = (head, offset)

    def pop(self, lane: str, n: int) -> list[Work]:
        """Removes and returns the first `n` items of `lane`'s chain (fewer if it is shorter)."""
        chain = self._chains.get(lane)
        if chain is None:
            return []
        head, tail = chain
        works: list[Work] = []
        while len(works) < n and head != _NO_NEXT:
            nxt, size = _HEADER.unpack(os.pread(self._fd, _HEADER.size, head))
            fields = orjson.loads(os.pread(self._fd, size, head + _HEADER.size))
            (file, line_no, user_id, device_id, body, source, time_s, pass_no,
             attempts, free, ambiguous, resent, scheduled_s) = fields
            session = Session(file, line_no, user_id, device_id, body.encode(), source.encode(),
                              time_s, pass_no)
            works.append(Work(session, attempts=attempts, free_attempts=free,
                              ambiguous=ambiguous, resent=resent, scheduled_s=scheduled_s))
            head = nxt
        if head == _NO_NEXT:
            del self._chains[lane]
        else:
            self._chains[lane] = (head, tail)
        if not self._chains:
            # Everything spilled has come back: start the file over instead of growing it.
            os.ftruncate(self._fd, 0)
            self._end = 0
        return works

    def close(self) -> None:
        """Releases the file (its space goes back to the disk)."""
        os.close(self._fd)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Writes all of `data` at `offset` (going on after a short write); OutputError on failure."""
    view = memoryview(data)
    try:
        while view:
            written = os.pwrite(fd, view, offset)
            if written <= 0:
                raise OutputError("cannot write the spill file: the write made no progress")
            view, offset = view[written:], offset + written
    except OSError as exc:
        raise OutputError(f"cannot write the spill file: {exc.strerror}") from None
