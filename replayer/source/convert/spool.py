"""The spool files of one process of a conversion: its accepted events as narrow JSON lines
for DuckDB (who, when, which session), and their lines' bytes in a payload file beside them.

The table sorts and cuts the narrow rows only; a session's first line is read back from
the payload by place (`Payloads`), so the bytes of an event are neither loaded, sorted nor
fetched. Each process writes its own pair, named after its process ID.
"""

from __future__ import annotations

import glob
import hashlib
import os
from types import TracebackType
from typing import IO, Any, Self

import orjson

_ROWS = "events-{pid}.ndjson"
_PAYLOAD = "lines-{pid}.bin"


def spool_rows(folder: str) -> list[str]:
    """The narrow row files of every process that spooled to `folder`."""
    return sorted(glob.glob(os.path.join(folder, _ROWS.format(pid="*"))))


class Spool:
    """Appends accepted events to this process's pair of files in `folder`."""

    def __init__(self, folder: str) -> None:
        self.pid = os.getpid()
        self._rows: IO[bytes] = open(  # noqa: SIM115
            os.path.join(folder, _ROWS.format(pid=self.pid)), "ab")
        self._payload: IO[bytes] = open(  # noqa: SIM115
            os.path.join(folder, _PAYLOAD.format(pid=self.pid)), "ab")
        self._offset = self._payload.tell()
        self.events = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, _type: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self.close()

    def add(self, *, user: str, key: str | None, time_s: float, marker: bool,
            duplicate_key: str | None, file_no: int, line_no: int, user_id: str | None,
            device_id: str | None, attributes: dict[str, Any] | None, data: bytes,
            key_start_s: float | None = None) -> None:
        """Spools one accepted event; its line's MD5 breaks ties on time whatever the order
        the lines were read in (as DuckDB's md5() of the line would)."""
        self._payload.write(data)
        self._rows.write(orjson.dumps({
            "usr": user, "k": key, "t": time_s, "mark": marker, "dup": duplicate_key,
            "f": file_no, "n": line_no, "uid": user_id, "did": device_id,
            "attrs": None if attributes is None else orjson.dumps(attributes).decode(),
            "ks": key_start_s, "h": hashlib.md5(data).hexdigest(), "w": self.pid,
            "o": self._offset, "len": len(data)}, option=orjson.OPT_APPEND_NEWLINE))
        self._offset += len(data)
        self.events += 1

    def flush(self) -> None:
        """Hands what is spooled to the files (another process loads them next)."""
        self._payload.flush()
        self._rows.flush()

    def close(self) -> None:
        """Flushes and closes both files (idempotent)."""
        for stream in (self._payload, self._rows):
            if not stream.closed:
                stream.close()


class Payloads:
    """Reads spooled lines back by place: (process ID, offset, length) -> the line's bytes."""

    def __init__(self, folder: str) -> None:
        self._folder = folder
        self._files: dict[int, int] = {}

    def read(self, pid: int, offset: int, length: int) -> bytes:
        """The bytes of one spooled line."""
        fd = self._files.get(pid)
        if fd is None:
            fd = self._files[pid] = os.open(
                os.path.join(self._folder, _PAYLOAD.format(pid=pid)), os.O_RDONLY)
        return os.pread(fd, length, offset)

    def close(self) -> None:
        """Closes every payload file opened."""
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()
