"""The CPU work of a conversion, batch by batch, in this process or in worker processes:
map a batch of lines (spooling the events it accepts), write a batch of sessions.

Each step returns a value that the caller folds into the summary in batch order, so the
output is the same bytes whichever process did which batch. `Workers` runs the steps in
a pool with a bounded number of batches in flight (memory stays a few batches).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Self, TypeVar
from zoneinfo import ZoneInfo

import orjson

from replayer.source.convert.clock import LagTally
from replayer.source.convert.events import FieldTally, Refusal, read_event, start_record
from replayer.source.convert.mapping import Mapping
from replayer.source.convert.sessions import OpenSession, open_session
from replayer.source.convert.spool import Payloads, Spool
from replayer.source.convert.table import RawSession, session_row
from replayer.source.convert.verdict import refusal

# A line to map: (its file's number, its line number, its bytes).
Line = tuple[int, int, bytes]
_T = TypeVar("_T")
_R = TypeVar("_R")


class WorkerDied(Exception):
    """A worker process ended before its batch was done (killed, out of memory): one line."""


@dataclass(frozen=True, slots=True)
class Job:
    """What every process of one conversion maps and writes with."""

    mapping: Mapping
    folder: str  # the spools' folder
    now_s: float
    max_line_bytes: int
    zone: ZoneInfo | None = None
    anonymous_as_user: bool = False


@dataclass(slots=True)
class Mapped:
    """A batch of lines mapped: the refused ones (index in the batch, why) and the lags of
    the accepted ones that carry a processing time."""

    refused: list[tuple[int, Refusal]] = field(default_factory=list)
    lags: LagTally = field(default_factory=LagTally)


@dataclass(slots=True)
class Written:
    """A batch of sessions written: their records' lines, per file the sessions and events
    written, the sessions `run` would refuse (with why) and the fields not mapped."""

    records: bytes = b""
    per_file: dict[int, tuple[int, int]] = field(default_factory=dict)
    refused: list[tuple[OpenSession, Refusal]] = field(default_factory=list)
    tally: FieldTally = field(default_factory=FieldTally)


class Steps:
    """The two steps of one process: its spool and its reader of spooled lines."""

    def __init__(self, job: Job, spool: Spool) -> None:
        self.job = job
        self.spool = spool
        self._payloads = Payloads(job.folder)

    def map_lines(self, lines: list[Line]) -> Mapped:
        """Maps each line; spools the accepted ones, returns the refused ones."""
        job, spool = self.job, self.spool
        mapped = Mapped()
        for index, (file_no, line_no, data) in enumerate(lines):
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                mapped.refused.append((index, Refusal(
                    "invalid_json", f"not JSON: {exc.msg} at column {exc.colno}")))
                continue
            event = read_event(job.mapping, obj, now_s=job.now_s, zone=job.zone,
                               anonymous_as_user=job.anonymous_as_user)
            if isinstance(event, Refusal):
                mapped.refused.append((index, event))
                continue
            if event.processed_s is not None:
                mapped.lags.add(event.time_s, event.processed_s)
            spool.add(user=event.user, key=event.key, time_s=event.time_s,
                      marker=event.marker, duplicate_key=event.duplicate_key,
                      file_no=file_no, line_no=line_no, user_id=event.user_id,
                      device_id=event.device_id, attributes=event.attributes, data=data,
                      key_start_s=event.key_start_s)
        spool.flush()
        return mapped

    def write_sessions(self, rows: list[RawSession]) -> Written:
        """Each session's start record, checked as `run` will check it."""
        job, payloads = self.job, self._payloads
        written = Written()
        records: list[bytes] = []
        per_file = written.per_file
        for raw in rows:
            row = session_row(raw)
            session = open_session(row, payloads.read(row.pid, row.offset, row.length))
            data = orjson.dumps(start_record(job.mapping, session, written.tally))
            refused = refusal(data, max_line_bytes=job.max_line_bytes, now_s=job.now_s)
            if refused is not None:
                written.refused.append((session, refused))
                continue
            records.append(data)
            sessions, events = per_file.get(row.file_no, (0, 0))
            per_file[row.file_no] = (sessions + 1, events + row.events)
        records.append(b"")
        written.records = b"\n".join(records) if len(records) > 1 else b""
        return written

    def close(self) -> None:
        """Closes the spool and the payload files."""
        self.spool.close()
        self._payloads.close()


_steps: Steps | None = None  # a worker process's own


def _start_worker(job: Job) -> None:
    global _steps  # one per worker process, made by the pool's initializer
    # Ctrl-C reaches the whole process group: the main process stops the pool, and a worker
    # prints no traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _steps = Steps(job, Spool(job.folder))


def _map_lines(lines: list[Line]) -> Mapped:
    assert _steps is not None, "a worker maps after its initializer"
    return _steps.map_lines(lines)


def _write_sessions(rows: list[RawSession]) -> Written:
    assert _steps is not None, "a worker writes after its initializer"
    return _steps.write_sessions(rows)


def worker_count() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


class Workers:
    """A pool of `count` worker processes for one conversion's steps; a context manager
    that stops them."""

    def __init__(self, job: Job, *, count: int) -> None:
        self._count = count
        self._pool = ProcessPoolExecutor(
            count, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker, initargs=(job,))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def map_lines(self, batches: Iterable[list[Line]]) -> Iterator[tuple[list[Line], Mapped]]:
        """(batch, mapped) for each batch of lines, in order."""
        return self._ordered(batches, _map_lines)

    def write_sessions(self, batches: Iterable[list[RawSession]]
                       ) -> Iterator[tuple[list[RawSession], Written]]:
        """(batch, written) for each batch of sessions, in order."""
        return self._ordered(batches, _write_sessions)

    def _ordered(self, batches: Iterable[_T], step: Callable[[_T], _R]
                 ) -> Iterator[tuple[_T, _R]]:
        """Each batch with its result, in order, at most two batches per worker in flight."""
        pending: deque[tuple[_T, Future[_R]]] = deque()
        try:
            for batch in batches:
                pending.append((batch, self._pool.submit(step, batch)))
                if len(pending) >= 2 * self._count:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        except BrokenProcessPool:
            raise WorkerDied("a worker process died (killed, or out of memory): nothing was "
                             "written; run the conversion again") from None
