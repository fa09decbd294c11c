"""Intake: input lines -> validated sessions in their lanes, invalid lines -> failure rows."""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from replayer.config import Settings
from replayer.engine.control import Abort
from replayer.engine.finish import Finisher
from replayer.engine.flow import Flow
from replayer.engine.lanes import Work
from replayer.engine.outage import Outage
from replayer.engine.pacing import Clock
from replayer.engine.schedule import OriginalPace
from replayer.engine.stats import RunStats
from replayer.output.journal import ResumeState
from replayer.records import ExitCode, FailureKind, RawLine, RecordFailure
from replayer.source.read import ChunkReader, InputUnreadable, ReadCounts, iter_lines
from replayer.source.shard import Shard
from replayer.source.validate import parse_lines

MEMORY_CAP = 20_000  # sessions held in memory across all lanes
PACED_MEMORY_CAP = 2_000  # a paced run needs little read-ahead
SPILL_CAP = 500_000  # sessions waiting on disk before intake pauses
SINGLE_LANE_CAP = (16, 256)  # --no-batch: the least and most of one lane kept in memory
LANES_PER_SLOT = 4  # --no-batch: users the read-ahead holds per --concurrency slot, at least


def memory_cap(settings: Settings, *, paced: bool) -> int:
    """How many sessions the read-ahead holds in memory across all lanes."""
    return PACED_MEMORY_CAP if paced or settings.pace == "original" else MEMORY_CAP


def lane_cap(settings: Settings, *, paced: bool) -> int:
    """How many of one user's sessions stay in memory before the rest wait on disk.

    Batched, a whole call's worth. With --no-batch, as many as leave room in the read-ahead
    for LANES_PER_SLOT users per slot even when every user has that many waiting (so heavy
    users never starve the slots), within SINGLE_LANE_CAP: each session past the cap costs
    a write and a read of the spill file.
    """
    if settings.batch:
        return settings.batch_actions
    low, high = SINGLE_LANE_CAP
    per_lane = memory_cap(settings, paced=paced) // (LANES_PER_SLOT * settings.concurrency)
    return max(low, min(high, per_lane))


@dataclass(frozen=True, slots=True)
class Reading:
    """What to read and which of it is this process's: inputs, resume state, shard."""

    paths: Sequence[str]
    max_line_bytes: int
    loop: bool = False
    resume: ResumeState | None = None
    shard: Shard | None = None
    lines: LineSource | None = None  # instead of reading `paths` (a Spark partition's lines)


# Lines that do not come from reading files (a Spark partition): given the counts to keep
# and the resume's "already done" test, every line in order, numbered as read_lines would.
LineSource = Callable[[ReadCounts, Callable[[str, int], bool] | None], Iterator[RawLine]]


def input_lines(reading: Reading, counts: ReadCounts) -> Iterator[RawLine]:
    """Every line to replay: once, or pass after pass with --loop (skipping finished lines)."""
    skip = reading.resume.is_done if reading.resume is not None else None
    if reading.lines is not None:
        yield from reading.lines(counts, skip)
        return
    yield from iter_lines(reading.paths, max_line_bytes=reading.max_line_bytes, counts=counts,
                          skip=skip)
    if not reading.loop:
        return
    for pass_no in itertools.count(2):  # until the duration (or a signal) stops the run
        for raw in iter_lines(reading.paths, max_line_bytes=reading.max_line_bytes,
                              counts=counts):
            yield raw._replace(pass_no=pass_no)


class InputError(Exception):
    """The input could not be read (the run stops with exit 4)."""


async def _read(reader: ChunkReader) -> list[RawLine] | None:
    """The next chunk of lines; an error of the input itself (not of an output) as InputError."""
    try:
        return await reader.next_chunk()
    except InputUnreadable as exc:  # names the file
        raise InputError(str(exc)) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"reading the input failed: {exc}") from None


class Intake:
    """Reads, validates and queues; pauses while memory is full or the server is down."""

    def __init__(self, *, settings: Settings, reading: Reading, flow: Flow, finisher: Finisher,
                 stats: RunStats, outage: Outage, clock: Clock, paced: bool) -> None:
        self._settings = settings
        self._reading = reading
        self._flow = flow
        self._finisher = finisher
        self._stats = stats
        self._outage = outage
        self._clock = clock
        self._pace = OriginalPace(settings.speed) if settings.pace == "original" else None
        self._pace_origin: tuple[int, float, float] | None = None  # pass, first time, start
        self._memory_cap = memory_cap(settings, paced=paced)

    async def run(self, reader: ChunkReader) -> None:
        """Until the input ends (or an input error, which stops the run with exit 4)."""
        flow = self._flow
        try:
            while (chunk := await _read(reader)) is not None:
                await self._take(chunk)
                flow.changed.set()
                lanes = flow.lanes
                while (lanes.in_memory >= self._memory_cap or lanes.spilled >= SPILL_CAP
                       or self._outage.down()) and flow.abort is None:
                    flow.intake_full = flow.was_full = True
                    flow.room.clear()
                    await flow.room.wait()
                flow.intake_full = False
            flow.input_ended = True
        except InputError as exc:
            flow.stop(Abort(ExitCode.INPUT, str(exc)))
        finally:
            flow.intake_done = True
            flow.changed.set()

    async def _take(self, chunk: list[RawLine]) -> None:
        allow_unknown = self._settings.allow_unknown_fields
        resume, shard, lanes = self._reading.resume, self._reading.shard, self._flow.lanes
        now_s = self._clock.wall()  # for the "not in the future" check on `time`
        flow = self._flow
        flow.lines_taken += len(chunk)
        if shard is not None:
            chunk = [raw for raw in chunk if shard.owns(raw.data)]
        flow.records_read += len(chunk)
        # The whole chunk in one call: the typed pass looks at it once (validate.py).
        verdicts = parse_lines(chunk, allow_unknown_fields=allow_unknown, now_s=now_s)
        for raw, parsed in zip(chunk, verdicts, strict=True):
            if isinstance(parsed, RecordFailure):
                self._finisher.invalid(parsed, pass_no=raw.pass_no)
                continue
            if raw.pass_no > 1:
                suffix = self._settings.loop_suffix.replace("{n}", str(raw.pass_no))
                parsed = parsed.in_pass(raw.pass_no, suffix)
            work = Work(parsed)
            if self._pace is not None and not await self._until_due(work):
                continue
            if resume is not None and resume.was_sent(parsed.file, parsed.line_no):
                work.resent = True
                self._stats.possible_duplicates += 1
            lanes.push(work)

    async def _until_due(self, work: Work) -> bool:
        """--pace original: waits until the record's recorded time comes round (scaled by
        speed); False (and a failure row) for a record that has no time."""
        assert self._pace is not None
        s = work.session
        if s.time_s is None:
            self._finisher.failed(work, FailureKind.MISSING_TIME,
                                  "--pace original needs a time on every record", None)
            return False
        origin = self._pace_origin
        if origin is None or origin[0] != s.pass_no:  # each pass starts its timeline anew
            origin = self._pace_origin = (s.pass_no, s.time_s, self._clock.now())
        work.scheduled_s = origin[2] + self._pace.offset_s(origin[1], s.time_s)
        wait_s = work.scheduled_s - self._clock.now()
        if wait_s > 0:
            self._flow.changed.set()  # what was pushed so far may go while this one waits
            await self._clock.sleep(wait_s)
        return True
