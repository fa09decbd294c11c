"""Wires one conversion: export lines -> events -> sessions -> start records and rejects.

The only module of the package that writes: records to `out`, rejected lines to `rejects`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import chain, islice
from typing import BinaryIO
from zoneinfo import ZoneInfo

import orjson

from replayer.source.convert.clock import LagTally
from replayer.source.convert.events import Refusal
from replayer.source.convert.mapping import Mapping
from replayer.source.convert.readers import ExportLine
from replayer.source.convert.sessions import OpenSession
from replayer.source.convert.summary import ConvertSummary, FileCounts
from replayer.source.convert.table import DEFAULT_MEMORY_LIMIT, EventTable
from replayer.source.convert.verdict import DEFAULT_MAX_LINE_BYTES
from replayer.source.convert.work import Job, Line, Mapped, Steps, Workers, Written, worker_count
from replayer.source.redact import redacted

DEFAULT_GAP_S = 1800.0
_RAW_CHARS = 1000  # how much of a rejected line its row keeps
_BATCH_LINES = 2000  # lines mapped at a time (by this process or a worker)
_BATCHES_HERE = 10  # mapped in this process: a small export starts no worker
_SESSION_ROWS = 10_000  # sessions written at a time


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """How to sessionise: the inactivity gap, now (to refuse futures), the engine's memory
    limit and where it spills; run's line limit, which every record written must meet; and
    the zone whose wall clock the export's times are (None: UTC); whether anonymous IDs
    are user IDs (else device IDs); how many processes map and write (0: one per CPU)."""

    now_s: float
    gap_s: float = DEFAULT_GAP_S
    memory_limit: str = DEFAULT_MEMORY_LIMIT
    temp_dir: str | None = None
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    source_zone: ZoneInfo | None = None
    anonymous_as_user: bool = False
    workers: int = 0


def convert(mapping: Mapping, lines: Iterable[ExportLine], *, out: BinaryIO,
            rejects: BinaryIO, options: ConvertOptions) -> ConvertSummary:
    """Converts every line; each ends in exactly one session written, one row of `rejects`
    (its own, or its session's when `run` would refuse the session's record) or the count
    of duplicates dropped. Sessions come out by start time whatever the order of `lines`.

    The first lines are mapped in this process; past them, in `options.workers` worker
    processes (0: one per CPU), which then also write the sessions."""
    summary = ConvertSummary(mapping.name, options.gap_s, options.memory_limit)
    with EventTable(memory_limit=options.memory_limit, temp_dir=options.temp_dir) as table, \
            ExitStack() as stack:
        job = Job(mapping, table.folder, options.now_s, options.max_line_bytes,
                  options.source_zone, options.anonymous_as_user)
        here = Steps(job, table.spool)
        stack.callback(here.close)
        batches = _batches(lines, summary)
        lags = LagTally()
        for batch in islice(batches, _BATCHES_HERE):
            _fold_mapped(batch, here.map_lines(batch), summary, lags, rejects)
        workers: Workers | None = None
        rest = next(batches, None)
        count = options.workers or worker_count()
        if rest is not None and count > 1:
            workers = stack.enter_context(Workers(job, count=count))
            for batch, mapped in workers.map_lines(chain([rest], batches)):
                _fold_mapped(batch, mapped, summary, lags, rejects)
        elif rest is not None:
            for batch in chain([rest], batches):
                _fold_mapped(batch, here.map_lines(batch), summary, lags, rejects)
        summary.local_times = lags.detected()
        kept = table.kept()
        for file_no, counts in enumerate(summary.files):
            accepted = counts.events_read - sum(counts.rejects.values())
            if accepted > kept.get(file_no, 0):
                summary.drop_duplicates(file_no, accepted - kept.get(file_no, 0))
        sessions = table.sessions(gap_s=options.gap_s, markers=mapping.rule == "marker",
                                  batch_rows=_SESSION_ROWS)
        written = (workers.write_sessions(sessions) if workers is not None
                   else ((batch, here.write_sessions(batch)) for batch in sessions))
        for _batch, part in written:
            _fold_written(part, summary, out, rejects)
    return summary


def _batches(lines: Iterable[ExportLine], summary: ConvertSummary) -> Iterator[list[Line]]:
    """The lines in batches to map, each counted as read and its file numbered."""
    file_numbers: dict[str, int] = {}
    batch: list[Line] = []
    for line in lines:
        file_no = file_numbers.get(line.file)
        if file_no is None:
            file_no = file_numbers[line.file] = len(summary.files)
            summary.files.append(FileCounts(line.file))
        summary.events_read += 1
        summary.files[file_no].events_read += 1
        batch.append((file_no, line.line_no, line.data))
        if len(batch) == _BATCH_LINES:
            yield batch
            batch = []
    if batch:
        yield batch


def _fold_mapped(batch: list[Line], mapped: Mapped, summary: ConvertSummary, lags: LagTally,
                 rejects: BinaryIO) -> None:
    """A mapped batch's refused lines into the rejects file and the summary."""
    for index, refused in mapped.refused:
        file_no, line_no, data = batch[index]
        summary.reject(file_no, refused.reason)
        rejects.write(_reject_row(ExportLine(summary.files[file_no].file, line_no, data),
                                  refused))
    lags.merge(mapped.lags)


def _fold_written(written: Written, summary: ConvertSummary, out: BinaryIO,
                  rejects: BinaryIO) -> None:
    """A written batch of sessions into the output, the rejects file and the summary."""
    out.write(written.records)
    for file_no, (sessions, events) in written.per_file.items():
        summary.sessions_written += sessions
        summary.events_in_sessions += events
        summary.files[file_no].sessions += sessions
    for session, refused in written.refused:
        file_no = session.file_no
        summary.reject(file_no, refused.reason, events=session.events)
        rejects.write(_session_reject_row(summary.files[file_no].file, session, refused))
    summary.fields.merge(written.tally)


def _reject_row(line: ExportLine, refused: Refusal) -> bytes:
    raw = line.data[: _RAW_CHARS * 4].decode("utf-8", errors="replace")[:_RAW_CHARS]
    row = {"file": line.file, "line": line.line_no, "reason": refused.reason,
           "message": refused.message, "raw": raw}
    return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)


def _session_reject_row(file: str, session: OpenSession, refused: Refusal) -> bytes:
    """One row for all of a refused session's events: its first event's place, secrets
    masked, and how many events it held."""
    obj = session.obj
    try:
        orjson.dumps(obj)  # `redacted` recurses: only as deep as orjson writes back
    except orjson.JSONEncodeError:
        raw = "(nested too deeply to show)"
    else:
        raw = orjson.dumps(redacted(obj)).decode()
    row = {"file": file, "line": session.line_no, "reason": refused.reason,
           "message": refused.message, "raw": raw[:_RAW_CHARS], "events": session.events}
    return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
