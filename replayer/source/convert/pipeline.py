"""Wires one conversion: export lines -> events -> sessions -> start records and rejects.

The only module of the package that writes: records to `out`, rejected lines to `rejects`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

import orjson

from replayer.source.convert.events import Refusal, read_event, start_record
from replayer.source.convert.mapping import Mapping
from replayer.source.convert.readers import ExportLine
from replayer.source.convert.sessions import Event, OpenSession, Sessioniser
from replayer.source.convert.summary import ConvertSummary, FileCounts

DEFAULT_GAP_S = 1800.0
DEFAULT_MAX_HELD = 200_000
_RAW_CHARS = 1000  # how much of a rejected line its row keeps


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """How to sessionise: the inactivity gap, the memory bound, and now (to refuse futures)."""

    now_s: float
    gap_s: float = DEFAULT_GAP_S
    max_held: int = DEFAULT_MAX_HELD


def convert(mapping: Mapping, lines: Iterable[ExportLine], *, out: BinaryIO,
            rejects: BinaryIO, options: ConvertOptions) -> ConvertSummary:
    """Converts every line; each ends in exactly one session or one row of `rejects`."""
    summary = ConvertSummary(mapping.name, options.gap_s, options.max_held)
    sessioniser = Sessioniser(gap_s=options.gap_s, max_held=options.max_held,
                              markers=mapping.rule == "marker")
    file_numbers: dict[str, int] = {}
    for line in lines:
        file_no = file_numbers.get(line.file)
        if file_no is None:
            file_no = file_numbers[line.file] = len(summary.files)
            summary.files.append(FileCounts(line.file))
        summary.events_read += 1
        summary.files[file_no].events_read += 1
        refusal = _place(mapping, line, file_no, sessioniser, options.now_s)
        if refusal is not None:
            summary.reject(file_no, refusal.reason)
            rejects.write(_reject_row(line, refusal))
        _write(mapping, sessioniser.closed(), out, summary)
    _write(mapping, sessioniser.finish(), out, summary)
    summary.peak_held = sessioniser.peak_held
    return summary


def _place(mapping: Mapping, line: ExportLine, file_no: int, sessioniser: Sessioniser,
           now_s: float) -> Refusal | None:
    try:
        obj = orjson.loads(line.data)
    except orjson.JSONDecodeError as exc:
        return Refusal("invalid_json", f"not JSON: {exc.msg} at column {exc.colno}")
    event = read_event(mapping, obj, file_no=file_no, line_no=line.line_no, now_s=now_s)
    if not isinstance(event, Event):
        return event
    reason = sessioniser.offer(event)
    if reason is None:
        return None
    if reason == "out_of_order":
        return Refusal(reason, "out of order by the session gap or more: its session was "
                               "already written")
    return Refusal(reason, "the memory bound (--max-held) closed the sessions it could join")


def _write(mapping: Mapping, sessions: list[OpenSession], out: BinaryIO,
           summary: ConvertSummary) -> None:
    for session in sessions:
        record = start_record(mapping, session, summary.fields)
        out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        summary.sessions_written += 1
        summary.events_in_sessions += session.events
        summary.files[session.first.file_no].sessions += 1


def _reject_row(line: ExportLine, refusal: Refusal) -> bytes:
    raw = line.data[: _RAW_CHARS * 4].decode("utf-8", errors="replace")[:_RAW_CHARS]
    row = {"file": line.file, "line": line.line_no, "reason": refusal.reason,
           "message": refusal.message, "raw": raw}
    return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
