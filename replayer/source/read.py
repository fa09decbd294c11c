"""NDJSON sources (files, .gz files, stdin, object URLs) read as numbered lines, off the event loop.

Local files take the direct path; URLs (s3://, gs://, az://, https://) go through
source/objects.py, which counts stored bytes for progress and refuses a short read.
Reading happens in one daemon thread so that a slow pipe never blocks the event loop
and a blocked stdin never keeps the process alive at exit.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import stat
import sys
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from replayer.records import RawLine
from replayer.source import objects
from replayer.source.objects import is_url
from replayer.source.redact import shown_url

STDIN = "-"
CHUNK_LINES = 2000


def display_name(path: str) -> str:
    """The name a path is reported under in every output row, file and message (an https
    URL without its query: see shown_url)."""
    return "<stdin>" if path == STDIN else shown_url(path)


@dataclass(slots=True)
class ReadCounts:
    """Running totals of what the reader has seen, shared with progress and summary."""

    lines: int = 0
    blank_lines: int = 0
    skipped_done: int = 0
    bytes_read: int = 0
    files_done: list[str] = field(default_factory=list)

    def add_bytes(self, n: int) -> None:
        """Counts `n` more bytes of input read (an object's stored bytes, as they arrive)."""
        self.bytes_read += n


def is_stream(path: str) -> bool:
    """True for stdin, pipes and other inputs that can be read only once (no resume, one worker)."""
    if path == STDIN:
        return True
    if is_url(path):
        return False
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def total_size(paths: Sequence[str]) -> int | None:
    """Bytes of input when every path is a plain file or an object of known size (stored
    bytes, compressed or not: the reader counts those for objects); None otherwise."""
    total = 0
    for path in paths:
        if is_url(path):
            try:
                size = objects.stat(path).size
            except (objects.ObjectError, objects.ObjectsUnavailable):
                return None  # the reader will say what is wrong with it
            if size is None:
                return None
            total += size
            continue
        if path.endswith(".gz") or is_stream(path):
            return None
        try:
            total += os.path.getsize(path)
        except OSError:
            return None
    return total


def open_source(path: str, *, on_bytes: Callable[[int], None] | None = None) -> BinaryIO:
    """A binary stream for a path: stdin for '-', an object for a URL, transparently
    decompressed for '.gz'. `on_bytes` (URLs only) is told the stored bytes as they arrive.

    A URL's problems (missing, denied, extra not installed) are raised as OSError.
    """
    if path == STDIN:
        return sys.stdin.buffer
    if is_url(path):
        return _open_url(path, on_bytes)
    if path.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=1 << 20)


class InputUnreadable(OSError):
    """An input that cannot be opened or read to its end; the message names it."""


def _open_url(url: str, on_bytes: Callable[[int], None] | None) -> BinaryIO:
    try:
        stream = objects.open_object(url, on_bytes=on_bytes or (lambda _n: None))
    except (objects.ObjectError, objects.ObjectsUnavailable) as exc:
        raise InputUnreadable(str(exc)) from None
    if shown_url(url).endswith(".gz"):
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    return stream


def iter_lines(
    paths: Sequence[str],
    *,
    max_line_bytes: int,
    counts: ReadCounts,
    skip: Callable[[str, int], bool] | None = None,
) -> Iterator[RawLine]:
    """Every non-blank line of every path in order, numbered from 1 per file.

    Lines longer than `max_line_bytes` are yielded truncated (and flagged) without ever
    holding more than the limit in memory. `skip(file, line_no)` drops lines already done.
    """
    for path in paths:
        name = display_name(path)
        if is_url(path):  # stored bytes are counted as they arrive, not per line
            stream = open_source(path, on_bytes=counts.add_bytes)
            lines = _lines_of(stream, name, max_line_bytes, counts, skip, count_bytes=False)
        else:
            stream = open_source(path)
            lines = _lines_of(stream, name, max_line_bytes, counts, skip)
        try:
            yield from lines
        except InputUnreadable:
            raise
        except (OSError, EOFError, zlib.error) as exc:  # a truncated .gz, a read error
            raise InputUnreadable(f"{name}: cannot read: {exc}") from None
        finally:
            if path != STDIN:
                stream.close()
        counts.files_done.append(name)


def _lines_of(
    stream: BinaryIO,
    name: str,
    max_line_bytes: int,
    counts: ReadCounts,
    skip: Callable[[str, int], bool] | None,
    *,
    count_bytes: bool = True,
) -> Iterator[RawLine]:
    line_no = 0
    limit = max_line_bytes + 1  # one extra byte tells a full-length line from a longer one
    while True:
        data = stream.readline(limit)
        if not data:
            return
        line_no += 1
        counts.lines += 1
        if count_bytes:
            counts.bytes_read += len(data)
        truncated = False
        if not data.endswith(b"\n") and len(data) >= limit:
            truncated = True
            skipped = _discard_rest(stream)
            if count_bytes:
                counts.bytes_read += skipped
        if not data.strip():
            counts.blank_lines += 1
            continue
        if skip is not None and skip(name, line_no):
            counts.skipped_done += 1
            continue
        if data.endswith(b"\n"):
            data = data[:-1]
        yield RawLine(name, line_no, data[:max_line_bytes] if truncated else data, truncated)


def _discard_rest(stream: BinaryIO) -> int:
    """Skips the remainder of an over-long line; returns the bytes skipped."""
    skipped = 0
    while True:
        chunk = stream.readline(1 << 20)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


class ChunkReader:
    """Runs `iter_lines` in a daemon thread and hands lists of lines to the event loop.

    At most `max_chunks` chunks wait in memory, so a fast file never outruns the pipeline.
    """

    def __init__(self, lines: Iterator[RawLine], *, max_chunks: int = 4) -> None:
        self._lines = lines
        self._queue: asyncio.Queue[list[RawLine] | Exception | None] = asyncio.Queue()
        self._room = threading.Semaphore(max_chunks)
        self._stop = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="replayer-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        chunk: list[RawLine] = []
        try:
            for line in self._lines:
                chunk.append(line)
                if len(chunk) >= CHUNK_LINES:
                    if not self._hand_over(chunk):
                        return
                    chunk = []
            if chunk and not self._hand_over(chunk):
                return
            self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
        except Exception as exc:  # noqa: BLE001 - a thread boundary: the loop side decides
            self._loop.call_soon_threadsafe(self._queue.put_nowait, exc)

    def _hand_over(self, chunk: list[RawLine]) -> bool:
        while not self._room.acquire(timeout=0.2):
            if self._stop.is_set():
                return False
        if self._stop.is_set():
            return False
        self._loop.call_soon_threadsafe(self._queue.put_nowait, chunk)
        return True

    async def next_chunk(self) -> list[RawLine] | None:
        """The next lines in input order; None at the end of the input."""
        item = await self._queue.get()
        if isinstance(item, Exception):
            raise item
        if item is not None:
            self._room.release()
        return item

    def stop(self) -> None:
        """Asks the thread to stop at its next hand-over (it may be blocked on stdin)."""
        self._stop.set()
