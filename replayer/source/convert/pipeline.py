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
from replayer.source.convert.verdict import DEFAULT_MAX_LINE_BYTES, refusal
from replayer.source.redact import redacted

DEFAULT_GAP_S = 1800.0
DEFAULT_MAX_HELD = 200_000
_RAW_CHARS = 1000  # how much of a rejected line its row keeps


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """How to sessionise: the inactivity gap, the memory bound, and now (to refuse futures);
    and run's line limit, which every record written must meet."""

    now_s: float
    gap_s: float = DEFAULT_GAP_S
    max_held: int = DEFAULT_MAX_HELD
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES


def convert(mapping: Mapping, lines: Iterable[ExportLine], *, out: BinaryIO,
            rejects: BinaryIO, options: ConvertOptions) -> ConvertSummary:
    """Converts every line; each ends in exactly one session written or one row of `rejects`
    (its own, or its session's when `run` would refuse the session's record)."""
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
        _write(mapping, sessioniser.closed(), out, rejects, summary, options)
    _write(mapping, sessioniser.finish(), out, rejects, summary, options)
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


def _write(mapping: Mapping, sessions: list[OpenSession], out: BinaryIO, rejects: BinaryIO,
           summary: ConvertSummary, options: ConvertOptions) -> None:
    for session in sessions:
        data = orjson.dumps(start_record(mapping, session, summary.fields))
        file_no = session.first.file_no
        refused = refusal(data, max_line_bytes=options.max_line_bytes, now_s=options.now_s)
        if refused is not None:
            summary.reject(file_no, refused.reason, events=session.events)
            rejects.write(_session_reject_row(summary.files[file_no].file, session, refused))
            continue
        out.write(data + b"\n")
        summary.sessions_written += 1
        summary.events_in_sessions += session.events
        summary.files[file_no].sessions += 1


def _reject_row(line: ExportLine, refused: Refusal) -> bytes:
    raw = line.data[: _RAW_CHARS * 4].decode("utf-8", errors="replace")[:_RAW_CHARS]
    row = {"file": line.file, "line": line.line_no, "reason": refused.reason,
           "message": refused.message, "raw": raw}
    return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)


def _session_reject_row(file: str, session: OpenSession, refused: Refusal) -> bytes:
    """One row for all of a refused session's events: its first event's place, secrets
    masked, and how many events it held."""
    obj = session.first.obj
    try:
        orjson.dumps(obj)  # `redacted` recurses: only as deep as orjson writes back
    except orjson.JSONEncodeError:
        raw = "(nested too deeply to show)"
    else:
        raw = orjson.dumps(redacted(obj)).decode()
    row = {"file": file, "line": session.first.line_no, "reason": refused.reason,
           "message": refused.message, "raw": raw[:_RAW_CHARS], "events": session.events}
    return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
