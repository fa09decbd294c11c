"""Sessions from rows sorted by session (table.py cuts them): events in, sessions out.

Pure: no I/O. Each session holds its first event's line (the start record's fields come
from it) and folds its later events' identity and attributes in time order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from replayer.source.convert.table import Row


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

    def add(self, row: Row) -> None:
        """Folds a later event in: identity where still missing, attributes latest-wins."""
        self.events += 1
        self.user_id = self.user_id or row.user_id
        self.device_id = self.device_id or row.device_id
        if row.attributes:
            self.attributes.update(row.attributes)


def _open(row: Row) -> OpenSession:
    return OpenSession(row.start_s, orjson.loads(row.data), row.file_no, row.line_no, 1,
                       row.user_id, row.device_id, dict(row.attributes or {}))


def sessions(rows: Iterable[Row]) -> Iterator[OpenSession]:
    """Each session of `rows` (whose first row of each session `opens` it), in row order."""
    current: OpenSession | None = None
    for row in rows:
        if row.opens:
            if current is not None:
                yield current
            current = _open(row)
        else:
            assert current is not None, "a session's rows start with the row that opens it"
            current.add(row)
    if current is not None:
        yield current
