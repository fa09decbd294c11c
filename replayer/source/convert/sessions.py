"""Streaming sessionisation with bounded memory: events in, closed sessions out.

Events wait in a reorder window (a heap by time) until the latest time read is a gap past
them, then go to their user's session in exact time order: an event out of order by less
than the gap lands where it belongs, one out of order by the gap or more is refused. A
session closes when no event still to come could join it, and is handed out once no
session that starts earlier is still open: sessions come out in start-time order.
`max_held` bounds the events waiting plus the sessions open or not yet handed out; past
it the oldest are placed or closed early, and any later event that could have joined
them is refused as over_memory_bound, never misplaced. Pure: no I/O.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

OUT_OF_ORDER = "out_of_order"
OVER_MEMORY_BOUND = "over_memory_bound"


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
    file_no: int
    line_no: int


@dataclass(slots=True)
class OpenSession:
    """A session being built: its first event (by time), its span, its events' count."""

    first: Event
    last_s: float
    events: int = 1
    user_id: str | None = None
    device_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    closed: bool = False

    def add(self, event: Event) -> None:
        """Folds a later event in: identity where still missing, attributes latest-wins."""
        self.last_s = event.time_s
        self.events += 1
        self.user_id = self.user_id or event.user_id
        self.device_id = self.device_id or event.device_id
        if event.attributes:
            self.attributes.update(event.attributes)


def _open(event: Event) -> OpenSession:
    return OpenSession(event, event.time_s, 1, event.user_id, event.device_id,
                       dict(event.attributes or {}))


class Sessioniser:
    """Places events into sessions of one user; hands back sessions as they close."""

    def __init__(self, *, gap_s: float, max_held: int, markers: bool) -> None:
        self.gap_s = gap_s
        self.max_held = max_held
        self.markers = markers
        self.peak_held = 0
        self._latest_s = float("-inf")  # the latest time accepted
        self._released_s = float("-inf")  # every event at or before this has been placed
        self._waiting: list[tuple[float, int, Event]] = []
        self._open: dict[str, dict[str | None, OpenSession]] = {}
        self._open_count = 0
        self._by_last: list[tuple[float, int, OpenSession]] = []
        self._by_start: list[tuple[float, int, OpenSession]] = []  # open, lazily pruned
        self._done: list[tuple[float, int, OpenSession]] = []  # closed, not handed out
        self._ready: list[OpenSession] = []  # closed and in start order: the caller's now
        self._seq = 0

    def offer(self, event: Event) -> str | None:
        """Accepts an event (None) or names why it cannot be placed (a reject reason)."""
        if event.time_s <= self._released_s:
            if event.time_s <= self._latest_s - self.gap_s:
                return OUT_OF_ORDER
            return OVER_MEMORY_BOUND
        self._seq += 1
        heapq.heappush(self._waiting, (event.time_s, self._seq, event))
        self._latest_s = max(self._latest_s, event.time_s)
        self._release(self._latest_s - self.gap_s)
        self._hand_out()
        while self._held() > self.max_held and (self._waiting or self._open_count):
            self._release(self._oldest_s())
            self._hand_out()
        self.peak_held = max(self.peak_held, self._held())
        return None

    def _held(self) -> int:
        return len(self._waiting) + self._open_count + len(self._done)

    def closed(self) -> list[OpenSession]:
        """Closed sessions that no earlier-starting session can precede, by start time."""
        self._hand_out()
        out, self._ready = self._ready, []
        return out

    def _hand_out(self) -> None:
        by_start = self._by_start
        while by_start and by_start[0][2].closed:
            heapq.heappop(by_start)
        floor = min(by_start[0][0] if by_start else float("inf"),
                    self._waiting[0][0] if self._waiting else float("inf"))
        done = self._done
        while done and (done[0][0] < floor or floor == float("inf")):
            self._ready.append(heapq.heappop(done)[2])

    def finish(self) -> list[OpenSession]:
        """Places every waiting event and closes every session (end of input)."""
        self._release(float("inf"))
        return self.closed()

    def _oldest_s(self) -> float:
        """The time to release up to so that at least one held item leaves."""
        candidates = [self._waiting[0][0]] if self._waiting else []
        while self._by_last and self._by_last[0][2].closed:
            heapq.heappop(self._by_last)
        if self._by_last:
            candidates.append(self._by_last[0][0] + self.gap_s)
        return min(candidates)

    def _release(self, until_s: float) -> None:
        if until_s <= self._released_s:
            return
        self._released_s = until_s
        waiting = self._waiting
        while waiting and waiting[0][0] <= until_s:
            self._place(heapq.heappop(waiting)[2])
        self._close_idle(until_s - self.gap_s)

    def _place(self, event: Event) -> None:
        sessions = self._open.get(event.user)
        if sessions is None:
            sessions = self._open[event.user] = {}
        current = sessions.get(event.key)
        if current is not None:
            paused = event.time_s - current.last_s >= self.gap_s
            if not paused and not (self.markers and event.marker and event.key is None):
                current.add(event)
                return
            self._close(current)
            sessions = self._open.setdefault(event.user, {})
        session = sessions[event.key] = _open(event)
        self._open_count += 1
        self._seq += 1
        heapq.heappush(self._by_last, (session.last_s, self._seq, session))
        heapq.heappush(self._by_start, (event.time_s, self._seq, session))

    def _close_idle(self, until_s: float) -> None:
        """Closes every open session whose last event is at or before `until_s`."""
        by_last = self._by_last
        while by_last and by_last[0][0] <= until_s:
            _, seq, session = heapq.heappop(by_last)
            if session.closed:
                continue
            if session.last_s > until_s:
                heapq.heappush(by_last, (session.last_s, seq, session))
                continue
            self._close(session)

    def _close(self, session: OpenSession) -> None:
        session.closed = True
        self._open_count -= 1
        first = session.first
        sessions = self._open[first.user]
        if sessions.get(first.key) is session:
            del sessions[first.key]
            if not sessions:
                del self._open[first.user]
        self._seq += 1
        heapq.heappush(self._done, (first.time_s, self._seq, session))
