"""Flow: what moves between the stages: the lanes, who waits on whom, and why a run stops."""

from __future__ import annotations

import asyncio

from replayer.engine.control import Abort
from replayer.engine.lanes import Lanes


class Flow:
    """The lanes, the events that wake the intake and the dispatcher, and the run's abort."""

    def __init__(self, lanes: Lanes) -> None:
        self.lanes = lanes
        self.changed = asyncio.Event()  # something the dispatcher may act on
        self.room = asyncio.Event()  # the intake may read on
        self.in_flight = 0  # requests under way
        self.retry_waiting = 0  # lanes waiting out a retry delay
        self.intake_done = False
        self.records_read = 0  # lines this process owns (a row each), counted as taken
        self.lines_taken = 0  # non-blank lines taken, owned or not (another shard's)
        self.input_ended = False  # the intake read the input to its end (not stopped early)
        self.intake_full = False  # the intake waits for room: no record comes until one ends
        self.was_full = False  # the input was larger than the read-ahead at some point
        self.abort: Abort | None = None

    def stop(self, abort: Abort) -> None:
        """Ends the run early for `abort` (the first reason given is the one kept)."""
        if self.abort is None:
            self.abort = abort
        self.changed.set()
        self.room.set()

    def read_all_it_may(self) -> bool:
        """No record comes until one ends: the read-ahead is full, the input ended, or
        the run stops."""
        return self.intake_full or self.intake_done or self.abort is not None

    def finished_all(self) -> bool:
        """Every record read has its row."""
        return self.intake_done and self.lanes.pending == 0

    async def until_changed(self) -> None:
        """Waits for the next change (a row, a freed lane, new input, a stop)."""
        self.changed.clear()
        await self.changed.wait()
