"""Wires one conversion: export lines -> events -> sessions -> start records and rejects.

The only module of the package that writes: records to `out`, rejected lines to `rejects`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO
from zoneinfo import ZoneInfo

import orjson

from replayer.source.convert.clock import LagTally
from replayer.source.convert.events import Refusal, read_event, start_record
from replayer.source.convert.mapping import Mapping
from replayer.source.convert.readers import ExportLine
from replayer.source.convert.sessions import Event, OpenSession, open_session
from replayer.source.convert.summary import ConvertSummary, FileCounts
from replayer.source.convert.table import DEFAULT_MEMORY_LIMIT, EventTable
from replayer.source.convert.verdict import DEFAULT_MAX_LINE_BYTES, refusal
from replayer.source.redact import redacted

DEFAULT_GAP_S = 1800.0
_RAW_CHARS = 1000  # how much of a rejected line its row keeps


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """How to sessionise: the inactivity gap, now (to refuse futures), the engine's memory
    limit and where it spills; run's line limit, which every record written must meet; and
    the zone whose wall clock the export's times are (None: UTC); whether anonymous IDs
    are user IDs (else device IDs)."""

    now_s: float
    gap_s: float = DEFAULT_GAP_S
    memory_limit: str = DEFAULT_MEMORY_LIMIT
    temp_dir: str | None = None
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    source_zone: ZoneInfo | None = None
    anonymous_as_user: bool = False


def convert(mapping: Mapping, lines: Iterable[ExportLine], *, out: BinaryIO,
            rejects: BinaryIO, options: ConvertOptions) -> ConvertSummary:
    """Converts every line; each ends in exactly one session written, one row of `rejects`
    (its own, or its session's when `run` would refuse the session's record) or the count
    of duplicates dropped. Sessions come out by start time whatever the order of `lines`."""
    summary = ConvertSummary(mapping.name, options.gap_s, options.memory_limit)
    with EventTable(memory_limit=options.memory_limit, temp_dir=options.temp_dir) as table:
        file_numbers: dict[str, int] = {}
        lags = LagTally()
        for line in lines:
            file_no = file_numbers.get(line.file)
            if file_no is None:
                file_no = file_numbers[line.file] = len(summary.files)
                summary.files.append(FileCounts(line.file))
            summary.events_read += 1
            summary.files[file_no].events_read += 1
            event = _event(mapping, line, options)
            if isinstance(event, Refusal):
                summary.reject(file_no, event.reason)
                rejects.write(_reject_row(line, event))
                continue
            if event.processed_s is not None:
                lags.add(event.time_s, event.processed_s)
            table.spool.add(user=event.user, key=event.key, time_s=event.time_s, marker=event.marker,
                      duplicate_key=event.duplicate_key, file_no=file_no,
                      line_no=line.line_no, user_id=event.user_id,
                      device_id=event.device_id, attributes=event.attributes, data=line.data,
                      key_start_s=event.key_start_s)
        summary.local_times = lags.detected()
        kept = table.kept()
        for file_no, counts in enumerate(summary.files):
            accepted = counts.events_read - sum(counts.rejects.values())
            if accepted > kept.get(file_no, 0):
                summary.drop_duplicates(file_no, accepted - kept.get(file_no, 0))
        payloads = table.payloads
        for batch in table.sessions(gap_s=options.gap_s, markers=mapping.rule == "marker"):
            for row in batch:
                session = open_session(row, payloads.read(row.pid, row.offset, row.length))
                _write(mapping, session, out, rejects, summary, options)
    return summary


def _event(mapping: Mapping, line: ExportLine, options: ConvertOptions) -> Event | Refusal:
    try:
        obj = orjson.loads(line.data)
    except orjson.JSONDecodeError as exc:
        return Refusal("invalid_json", f"not JSON: {exc.msg} at column {exc.colno}")
    return read_event(mapping, obj, now_s=options.now_s, zone=options.source_zone,
                      anonymous_as_user=options.anonymous_as_user)


def _write(mapping: Mapping, session: OpenSession, out: BinaryIO, rejects: BinaryIO,
           summary: ConvertSummary, options: ConvertOptions) -> None:
    data = orjson.dumps(start_record(mapping, session, summary.fields))
    file_no = session.file_no
    refused = refusal(data, max_line_bytes=options.max_line_bytes, now_s=options.now_s)
    if refused is not None:
        summary.reject(file_no, refused.reason, events=session.events)
        rejects.write(_session_reject_row(summary.files[file_no].file, session, refused))
        return
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
