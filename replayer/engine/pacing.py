"""Time and pace: the `Clock` seam and the single pacer task around asyncio-throttle.

asyncio-throttle counts acquisitions in a sliding window and polls while the window is
full. Three choices make it accurate and cheap: the window is ~100 ms (not 1 s), so no
100 ms holds more than its share; exactly one task (the pacer) polls it, and senders wait
on a one-slot queue of tokens instead of on the throttler; and while the window has room
a sender takes its place in it at once, without waiting for the pacer task to run (a
rate far above what the client reaches then costs nothing: `--rate auto` climbing).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from asyncio_throttle.throttler import Throttler

from replayer.engine.schedule import RateSchedule

WINDOW_S = 0.1


class Clock(Protocol):
    """Monotonic time for durations, wall time for UNIX `time` fields, and sleeping."""

    def now(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The process's own clocks: `now` is monotonic seconds, `wall` UNIX seconds.

    The functions themselves, not methods calling them: the clock is read a few times
    per request, and a call of a C function costs no Python frame.
    """

    now = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        """Sleeps on the event loop."""
        await asyncio.sleep(seconds)


def throttle_shape(rate_per_s: float) -> tuple[int, float]:
    """(requests per window, window seconds) for a rate: windows of ~100 ms, at least one request.

    The window is derived from the rounded count so that count / window == rate exactly.
    """
    per_window = max(1, round(rate_per_s * WINDOW_S))
    return per_window, per_window / rate_per_s


class ScheduleEnded(Exception):
    """The rate schedule planned no more requests (a ramp down to 0 ended)."""


class Pacing(Protocol):
    """Decides when each request may go; `wait` returns the time it was planned for (a
    ceiling plans nothing: the time it let the request go)."""

    async def run(self) -> None: ...

    async def wait(self) -> float: ...

    def planned_by(self, elapsed_s: float) -> float: ...


class Pacer:
    """A ceiling: one token per allowed request; `run()` alone polls the throttler.

    A ceiling plans no request: `wait` returns the moment the request may go, so a run
    slower than its ceiling (a slow server, --concurrency used up, lanes waiting) is not
    counted as behind a schedule it never had. `set_rate` changes the rate at once
    (--rate auto).
    """

    def __init__(self, rate_per_s: float, *, clock: Clock) -> None:
        per_window, window_s = throttle_shape(rate_per_s)
        # Poll at 1/100 of the window: each refill starts at most 1% late.
        self._throttler = Throttler(per_window, period=window_s, retry_interval=window_s / 100)
        self._tokens: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        self._clock = clock
        self._origin_s = clock.now()
        self._since_s = self._origin_s  # when the current rate took effect
        self._planned_before = 0.0  # requests planned before `_since_s`
        self.rate_per_s = rate_per_s

    async def run(self) -> None:
        """Forever: acquire from the throttler, then offer the token to one sender."""
        while True:
            await self._throttler.acquire()  # type: ignore[no-untyped-call]  # untyped library
            await self._tokens.put(None)

    async def wait(self) -> float:
        """Waits until this request may go; returns that moment (monotonic s)."""
        if not _take_room(self._throttler):
            await self._tokens.get()
        return self._clock.now()

    def set_rate(self, rate_per_s: float) -> None:
        """Paces at `rate_per_s` from now on (the throttler's window is reshaped in place)."""
        if rate_per_s == self.rate_per_s:
            return
        now_s = self._clock.now()
        self._planned_before += self.rate_per_s * max(0.0, now_s - self._since_s)
        self._since_s = now_s
        per_window, window_s = throttle_shape(rate_per_s)
        throttler = self._throttler
        throttler.rate_limit, throttler.period = per_window, window_s
        throttler.retry_interval = window_s / 100
        self.rate_per_s = rate_per_s

    def planned_by(self, elapsed_s: float) -> float:
        """Requests the ceiling allowed in the first `elapsed_s` seconds (the integral of
        its rate)."""
        now_s = self._origin_s + max(0.0, elapsed_s)
        return self._planned_before + self.rate_per_s * max(0.0, now_s - self._since_s)


def _take_room(throttler: Throttler) -> bool:
    """Logs one acquisition in the throttler's window if it has room now, as its
    `acquire` does after polling (asyncio-throttle has no non-blocking acquire)."""
    throttler.flush()  # type: ignore[no-untyped-call]  # untyped library
    logs = throttler._task_logs  # the window that acquire() itself appends to
    if len(logs) >= throttler.rate_limit:
        return False
    logs.append(time.monotonic())
    return True


class SchedulePacer:
    """A rate schedule (ramps, stages): request k goes at start + schedule.time_of(k).

    Driven by the injected clock, so schedules are tested in virtual time. asyncio-throttle
    holds one fixed rate, so a changing rate is paced here directly; it is the only waiter.
    """

    def __init__(self, schedule: RateSchedule, *, clock: Clock) -> None:
        self._schedule = schedule
        self._clock = clock
        self._start_s: float | None = None
        self._issued = 0

    async def run(self) -> None:
        """Nothing to poll: `wait` sleeps until each request's time."""

    async def wait(self) -> float:
        """Sleeps until the next request is due; returns that planned time (monotonic s)."""
        if self._start_s is None:
            self._start_s = self._clock.now()
        offset = self._schedule.time_of(self._issued)
        if offset is None:
            raise ScheduleEnded
        self._issued += 1
        planned = self._start_s + offset
        delay = planned - self._clock.now()
        if delay > 0:
            await self._clock.sleep(delay)
        return planned

    def planned_by(self, elapsed_s: float) -> float:
        """Requests planned in the first `elapsed_s` seconds."""
        return self._schedule.count_by(max(0.0, elapsed_s))
