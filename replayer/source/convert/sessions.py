"""Events in, sessions out: an accepted event as the mapping reads it, and a session as
the table cuts it (table.py) with its first event's line.

Pure: no I/O. Each session holds its first event's line (the start record's fields come
from it) and its events' identity and attributes, folded in time order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from replayer.source.convert.table import SessionRow


@dataclass(slots=True)
class Event:
    """One accepted export event, reduced to what sessions need; `obj` is the parsed line."""

    time_s: float
    user: str
    key: str | None  # the vendor's session key, or None: the gap (and marker) rule applies
    marker: bool  # a session-start marker such as Segment's Application Opened
    user_id: str | None
    device_id: str | None
    attributes: dict[str, Any] | None
    obj: dict[str, Any]
    duplicate_key: str | None = None  # the vendor's insert id: copies count once
    processed_s: float | None = None  # a UTC processing time, to detect local event times
    key_start_s: float | None = None  # the start its session key names (Amplitude's)


@dataclass(slots=True)
class OpenSession:
    """A session: its start (its first event's time, or the earlier start its key names),
    its first event (by time) and where it was read, its events' count, the first user and
    device IDs of its events, their attributes (the latest wins)."""

    first_s: float
    obj: dict[str, Any]
    file_no: int
    line_no: int
    events: int = 1
    user_id: str | None = None
    device_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


def open_session(row: SessionRow, data: bytes) -> OpenSession:
    """A session of the table with its first event's line: identity, and its events'
    attributes folded in time order (latest wins)."""
    attributes: dict[str, Any] = {}
    for text in row.attributes:
        attributes.update(orjson.loads(text))
    return OpenSession(row.start_s, orjson.loads(data), row.file_no, row.line_no, row.events,
                       row.user_id, row.device_id, attributes)
