"""Per-user FIFO lanes: each user's work in input order, at most one request in flight per user.

Pure: no event loop, no files. Memory is bounded by two caps: at most `lane_cap` items
of one lane stay in memory (later ones go to an injected `SpillStore`, in order), and the
caller stops feeding when `in_memory >= memory_cap`. So a user with a million records in
a row costs disk, not memory, and never stalls the users after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol

from replayer.records import Session

_IDLE_LANES = 1024  # emptied lanes kept for reuse (a few hundred KB at most)


@dataclass(slots=True, eq=False)
class Work:
    """One session on its way: how often it was tried, and how many tries may have landed."""

    session: Session
    attempts: int = 0
    free_attempts: int = 0  # attempts made while the server was down: not held against it
    ambiguous: int = 0
    latency_ms: float = 0.0
    resent: bool = False  # in flight when an earlier run died: may be a duplicate
    scheduled_s: float | None = None  # --pace original: when it was due to go (monotonic)
    throttled_s: float | None = None  # when its first throttling 429 came (monotonic)


class SpillStore(Protocol):
    """Where a lane's overflow waits, in order, one chain per lane (see spill.py)."""

    def append(self, lane: str, work: Work) -> None: ...

    def pop(self, lane: str, n: int) -> list[Work]: ...


@dataclass(slots=True, eq=False)
class Lane:
    """One user's queue: `items` in memory first, then `spilled` more in the spill store."""

    key: str
    items: deque[Work] = field(default_factory=deque)
    busy: bool = False
    spilled: int = 0


@dataclass(frozen=True, slots=True)
class Take:
    """Work taken for one request: per lane, the leading items of that lane, in order."""

    parts: tuple[tuple[Lane, tuple[Work, ...]], ...]

    @property
    def works(self) -> list[Work]:
        """Every item of the take, lane by lane, each lane's items in input order."""
        return [w for _, ws in self.parts for w in ws]

    @property
    def actions(self) -> int:
        """How many actions the request carries."""
        return sum(len(ws) for _, ws in self.parts)


class Lanes:
    """All lanes, plus the FIFO of lanes that are idle and have work (`ready`)."""

    def __init__(self, *, lane_cap: int, spill: SpillStore | None = None) -> None:
        self.lane_cap = lane_cap
        self._spill = spill
        self._lanes: dict[str, Lane] = {}
        self._ready: deque[Lane] = deque()
        # Lanes emptied and dropped, kept for the next new lane: when a user's records are
        # further apart than the read-ahead, nearly every record starts a lane (a Lane and
        # its deque). Nothing refers to a lane once `done`/`settle` dropped it.
        self._idle: list[Lane] = []
        self.in_memory = 0  # items held in `items` of all lanes
        self.pending = 0  # items not yet finished, in memory or spilled
        self.spilled = 0  # items waiting in the spill store

    def __len__(self) -> int:
        return len(self._lanes)

    @property
    def ready_count(self) -> int:
        """Lanes that could be sent right now."""
        return len(self._ready)

    def push(self, work: Work) -> None:
        """Queues `work` behind everything earlier of the same user."""
        s = work.session
        # Session.lane, without a property call per record
        key: str = s.user_id or s.device_id  # type: ignore[assignment]
        lane = self._lanes.get(key)
        if lane is None:
            if self._idle:
                lane = self._idle.pop()
                lane.key = key
            else:
                lane = Lane(key)
            self._lanes[key] = lane
        self.pending += 1
        if self._spill is not None and (lane.spilled or len(lane.items) >= self.lane_cap):
            self._spill.append(key, work)
            lane.spilled += 1
            self.spilled += 1
            return
        lane.items.append(work)
        self.in_memory += 1
        if not lane.busy and len(lane.items) == 1:
            self._ready.append(lane)

    def take(self, *, max_users: int = 1, max_actions: int = 1) -> Take | None:
        """Marks up to `max_users` ready lanes busy and takes up to `max_actions` items in all.

        A lane contributes its leading items in order; the rest of it waits until
        `finish`/`release`. A lane goes whole when it can: one that does not fit in the
        room left ends the take, first in line for the next one (only a lane alone in a
        take is cut to `max_actions`). None when no lane is ready.
        """
        parts: list[tuple[Lane, tuple[Work, ...]]] = []
        room = max_actions
        while self._ready and len(parts) < max_users and room > 0:
            if parts and len(self._ready[0].items) > room:
                break
            lane = self._ready.popleft()
            lane.busy = True
            items = lane.items
            n = min(room, len(items))
            parts.append((lane, tuple(items) if n == len(items) else tuple(islice(items, n))))
            room -= n
        return Take(tuple(parts)) if parts else None

    def settle(self, lane: Lane, taken: Sequence[Work], final: Sequence[Work]) -> bool:
        """Removes the `final` items among the `taken` head of `lane`; the rest stay first.

        Returns True when the lane is free again; False when items wait for a retry, in
        which case the lane stays busy until `release`, so later records wait behind them.
        """
        done = {id(w) for w in final}
        keep = [w for w in taken if id(w) not in done]
        for _ in taken:
            lane.items.popleft()
        lane.items.extendleft(reversed(keep))
        finished = len(taken) - len(keep)
        self.in_memory -= finished
        self.pending -= finished
        if keep:
            return False
        lane.busy = False
        self._after_change(lane)
        return True

    def done(self, lane: Lane, n: int) -> None:
        """The `n` leading items of busy `lane` all ended (the common case): the lane is free
        again. The same as `settle` with every taken item final, without comparing items."""
        items = lane.items
        if n == len(items):
            items.clear()
        else:
            for _ in range(n):
                items.popleft()
        self.in_memory -= n
        self.pending -= n
        lane.busy = False
        self._after_change(lane)

    def release(self, lane: Lane) -> None:
        """Frees a busy lane with its items still queued (after a retry delay)."""
        lane.busy = False
        self._after_change(lane)

    def _after_change(self, lane: Lane) -> None:
        if not lane.items and lane.spilled and self._spill is not None:
            works = self._spill.pop(lane.key, min(self.lane_cap, lane.spilled))
            lane.items.extend(works)
            lane.spilled -= len(works)
            self.spilled -= len(works)
            self.in_memory += len(works)
        if lane.items:
            if not lane.busy:
                self._ready.append(lane)
        elif not lane.busy:
            del self._lanes[lane.key]
            if not lane.spilled and len(self._idle) < _IDLE_LANES:
                self._idle.append(lane)  # empty, not busy, nothing spilled: as new
