"""Dispatcher: takes ready lanes into requests, paced, within --concurrency: a task per slot
in use, which sends on while ready work is there to take."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from replayer.engine.attempt import Answers, Attempter
from replayer.engine.classify import Verdict
from replayer.engine.control import RunControl
from replayer.engine.flow import Flow
from replayer.engine.lanes import Take
from replayer.engine.outage import Outage
from replayer.engine.pacing import Clock, Pacer, Pacing, ScheduleEnded
from replayer.engine.rate_control import LimitCounts, RateController, Signal
from replayer.engine.settle import Settler

UPDATE_S = 0.005  # --rate auto: how often, at most, answers move the pacer's rate
FILL_WAIT_S = 1.0  # how long, at most, a batched call waits for the read-ahead to fill


@dataclass(frozen=True, slots=True)
class Batching:
    """How many users and actions one request may carry, and how long it may wait to fill.

    With `fill`, users are taken only once the read-ahead is full (or the input ended):
    which records of a user travel together then depends on the input, not on how fast
    the server answers, so a dry run batches as the real run will (and a user's records
    wait for each other, which costs fewer lookups). A stream slower than the read-ahead
    goes out after FILL_WAIT_S.
    """

    max_users: int = 1
    max_actions: int = 1
    linger_s: float = 0.0
    fill: bool = False


class AutoRateFeed:
    """--rate auto at run time: each request's answer goes to the controller, whose rate
    the pacer then paces at."""

    def __init__(self, controller: RateController, pacer: Pacer, clock: Clock) -> None:
        self.controller = controller
        self._pacer = pacer
        self._clock = clock
        self._updated_s = clock.now()

    def answered(self, signal: Signal, *, sent_s: float) -> None:
        """One request's answer (sent at `sent_s`). The pacer's rate follows a throttle at
        once and otherwise at most every UPDATE_S: thousands of answers a second need not
        each move the curve (its growth depends on time, not on how often it is read)."""
        now_s = self._clock.now()
        self.controller.answered(now_s, sent_s=sent_s, signal=signal)
        if signal is Signal.THROTTLED or now_s - self._updated_s >= UPDATE_S:
            self._updated_s = now_s
            self._pacer.set_rate(self.controller.rate_at(now_s))

    def rate_now(self) -> float:
        """The controller's rate now (also applied to the pacer)."""
        rate = self.controller.rate_at(self._clock.now())
        self._pacer.set_rate(rate)
        return rate


def signal_of(answers: Answers, limits: LimitCounts) -> Signal | None:
    """What one take's answers tell the rate controller (None: nothing was answered);
    a 429 is counted by its cause in `limits`."""
    if answers.fatal is not None:
        return None
    if answers.delivered:
        return Signal.OK
    neutral = answered = False
    for outcome in answers.outcomes:
        if outcome is None:
            continue
        answered = True
        if outcome.limit is not None:
            limits.add(outcome.limit.value)
            return Signal.THROTTLED if outcome.throttled else Signal.NEUTRAL
        neutral = neutral or outcome.verdict in (Verdict.RETRYABLE, Verdict.AMBIGUOUS)
    if not answered:
        return None
    return Signal.NEUTRAL if neutral else Signal.OK


class Dispatcher:
    """The loop that starts requests; `requests` holds those under way."""

    def __init__(self, *, flow: Flow, attempter: Attempter, settler: Settler, outage: Outage,
                 pacer: Pacing | None, clock: Clock, control: RunControl, batching: Batching,
                 concurrency: int, auto: AutoRateFeed | None = None) -> None:
        self._flow = flow
        self.auto = auto
        self.limits = LimitCounts()
        self._attempter = attempter
        self._settler = settler
        self._outage = outage
        self._pacer = pacer
        self._clock = clock
        self._control = control
        self._batching = batching
        self._slots = asyncio.Semaphore(concurrency)
        self.requests: set[asyncio.Task[None]] = set()
        self._open = False  # `run` is starting requests
        # A request's task may send the next ready take itself (see _take_now): only when
        # `run` would start it at once, without waiting for a pacer, a fill or a linger.
        self._sends_on = pacer is None and not batching.fill and not batching.linger_s

    async def run(self, tg: asyncio.TaskGroup) -> None:
        """Starts requests in `tg` until every record is done, the schedule ends or a stop."""
        self._open = True
        try:
            await self._start_requests(tg)
        finally:
            self._open = False  # done, or cancelled by a stop: no request takes more

    async def _start_requests(self, tg: asyncio.TaskGroup) -> None:
        while True:
            await self._slots.acquire()
            if self._outage.down():
                await self._outage.probe_turn()
            take = await self._next_take()
            if take is None:
                planned_s = None
            elif self._pacer is None:  # unpaced: no coroutine to await per request
                planned_s = self._due(take)
            else:
                planned_s = await self._paced_time(self._pacer)
            if take is None or planned_s is None:
                self._slots.release()
                return
            # In flight from now, not from when the task first runs: an outage's next
            # probe turn must wait for this request's answer.
            self._flow.in_flight += 1
            task = tg.create_task(self._request(take, planned_s, tg))
            self.requests.add(task)
            task.add_done_callback(self.requests.discard)

    async def _request(self, take: Take, planned_s: float, tg: asyncio.TaskGroup) -> None:
        """Sends `take`, then each take `_take_now` finds as one ends, in the same slot."""
        flow = self._flow
        try:
            while True:
                auto = self.auto
                sent_s = 0.0 if auto is None else self._clock.now()
                answers = await self._attempter.attempt(take.parts, planned_s=planned_s)
                if auto is not None:
                    signal = signal_of(answers, self.limits)
                    if signal is not None:
                        auto.answered(signal, sent_s=sent_s)
                elif not answers.delivered:
                    signal_of(answers, self.limits)  # counts a 429 by its cause
                self._settler.settle(take.parts, answers, tg)
                if not self._sends_on:
                    return
                flow.changed.set()
                # The loop's other ready callbacks first, as a new task's first step
                # would wait for them: see _take_now.
                await asyncio.sleep(0)
                next_take = self._take_now()
                if next_take is None:
                    return
                take = next_take
                planned_s = self._due(take)
        finally:
            flow.in_flight -= 1
            self._slots.release()
            flow.changed.set()

    def _take_now(self) -> Take | None:
        """The take `run` would start next at once with this slot, when there is one and
        nothing to wait for (no stop, no outage; `_sends_on`: no pacing, filling or
        lingering). The request's task sends it itself: no task, no slot handed over and
        taken back, no turn of `run` per request. None hands the slot back to `run`,
        which decides as before."""
        if (not self._open or self._flow.abort is not None
                or self._control.stopping.is_set() or self._outage.down()):
            return None
        batching = self._batching
        return self._flow.lanes.take(max_users=batching.max_users,
                                     max_actions=batching.max_actions)

    def _due(self, take: Take) -> float:
        """When an unpaced request was planned to go: its earliest scheduled work, or now."""
        due: float | None = None
        for _, works in take.parts:  # loops, not a list: a take is most often one work
            for work in works:
                at = work.scheduled_s
                if at is not None and (due is None or at < due):
                    due = at
        return self._clock.now() if due is None else due

    async def _paced_time(self, pacer: Pacing) -> float | None:
        """When a paced request was planned to go (its turn); None when the schedule ended."""
        try:
            return await pacer.wait()
        except ScheduleEnded:
            self._control.request_stop("schedule")
            return None

    async def _next_take(self) -> Take | None:
        flow, batching = self._flow, self._batching
        while True:
            if flow.abort is not None:
                return None
            if flow.lanes.ready_count:
                if batching.fill and not flow.read_all_it_may():
                    await self._wait_for(flow.read_all_it_may, FILL_WAIT_S)
                # Lingering helps only while the intake can bring more users.
                if (batching.linger_s and flow.lanes.ready_count < batching.max_users
                        and not flow.read_all_it_may()):
                    await self._wait_for(lambda: flow.lanes.ready_count >= batching.max_users
                                         or flow.read_all_it_may(), batching.linger_s)
                take = flow.lanes.take(max_users=batching.max_users,
                                       max_actions=batching.max_actions)
                if take is not None:
                    return take
            if flow.finished_all():
                return None
            await flow.until_changed()

    async def _wait_for(self, done: Callable[[], bool], wait_s: float) -> None:
        """Waits until `done()` (checked on each change of the flow), at most `wait_s`."""
        flow = self._flow
        deadline = self._clock.now() + wait_s
        while not done():
            left = deadline - self._clock.now()
            if left <= 0:
                return
            flow.changed.clear()
            try:
                async with asyncio.timeout(left):
                    await flow.changed.wait()
            except TimeoutError:
                return
