"""The dispatcher on a scripted attempter: a request's task sends the takes ready after it
(unpaced), within --concurrency and one request per user, and stops taking at a stop, an
outage or a pacer. No socket: the attempter answers after a turn of the loop."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

import pytest

from replayer.engine.attempt import Answers, Parts
from replayer.engine.control import Abort, RunControl
from replayer.engine.dispatch import Batching, Dispatcher
from replayer.engine.flow import Flow
from replayer.engine.lanes import Lanes, Work
from replayer.engine.pacing import RealClock
from replayer.records import ExitCode, Session


class CountingGroup(asyncio.TaskGroup):
    """A TaskGroup that counts the tasks started in it."""

    def __init__(self) -> None:
        super().__init__()
        self.started = 0

    def create_task(self, coro: Coroutine[Any, Any, Any], **kw: Any) -> asyncio.Task[Any]:
        self.started += 1
        return super().create_task(coro, **kw)


class ScriptedAttempter:
    """Answers every work delivered after `turns` turns of the loop; keeps what it saw."""

    def __init__(self, turns: int = 2) -> None:
        self.turns = turns
        self.sent: list[tuple[str, int]] = []  # (user, line) in send order
        self.in_flight = 0
        self.requests = 0
        self.most_in_flight = 0
        self.users_in_flight: set[str] = set()
        self.same_user_twice = False
        self.on_send: list[Any] = []  # called with the count sent so far, before each answer

    async def attempt(self, parts: Parts, *, planned_s: float) -> Answers:
        users = [lane.key for lane, _ in parts]
        if self.users_in_flight.intersection(users):
            self.same_user_twice = True
        self.users_in_flight.update(users)
        self.in_flight += 1
        self.requests += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        for lane, works in parts:
            self.sent.extend((lane.key, w.session.line_no) for w in works)
        for hook in self.on_send:
            hook(len(self.sent))
        try:
            for _ in range(self.turns):
                await asyncio.sleep(0)
        finally:
            self.in_flight -= 1
            self.users_in_flight.difference_update(users)
        n = sum(len(ws) for _, ws in parts)
        return Answers([None] * n, [1.0] * n, [None] * n, delivered=True)


class EndingSettler:
    """Ends every work of a delivered take, as the settler does."""

    def __init__(self, flow: Flow) -> None:
        self._flow = flow

    def settle(self, parts: Parts, answers: Answers, tg: asyncio.TaskGroup) -> None:
        assert answers.delivered
        for lane, works in parts:
            self._flow.lanes.done(lane, len(works))
        self._flow.room.set()


class FakeOutage:
    """Down when told; a probe turn waits for every request to end, as Outage's does, and
    then finds the server back."""

    def __init__(self, flow: Flow) -> None:
        self._flow = flow
        self.is_down = False
        self.probes = 0

    def down(self) -> bool:
        return self.is_down

    async def probe_turn(self) -> None:
        while self._flow.in_flight:
            await self._flow.until_changed()
        self.probes += 1
        self.is_down = False


class OneTurnPacer:
    """A pacer that lets every request go after one turn of the loop."""

    async def run(self) -> None:
        return None

    async def wait(self) -> float:
        await asyncio.sleep(0)
        return asyncio.get_running_loop().time()

    def planned_by(self, elapsed_s: float) -> float:
        return 0.0


def loaded_flow(records: int, users: int) -> Flow:
    """A flow whose lanes hold `records` works of `users` users, the whole input read."""
    flow = Flow(Lanes(lane_cap=records))
    for n in range(1, records + 1):
        user = f"u{n % users}"
        flow.lanes.push(Work(Session("in.ndjson", n, user, None, b"{}", b"{}")))
    flow.records_read = records
    flow.intake_done = flow.input_ended = True
    return flow


def dispatcher(flow: Flow, attempter: ScriptedAttempter, *, concurrency: int,
               control: RunControl | None = None, outage: FakeOutage | None = None,
               pacer: Any = None, batching: Batching | None = None) -> Dispatcher:
    return Dispatcher(flow=flow, attempter=attempter,  # type: ignore[arg-type]
                      settler=EndingSettler(flow),  # type: ignore[arg-type]
                      outage=outage or FakeOutage(flow),  # type: ignore[arg-type]
                      pacer=pacer, clock=RealClock(), control=control or RunControl(),
                      batching=batching or Batching(), concurrency=concurrency)


async def run_all(d: Dispatcher) -> CountingGroup:
    """Runs the dispatcher until it is done, then waits for its requests (as replay does)."""
    async with CountingGroup() as tg:
        await d.run(tg)
        while d.requests:
            await asyncio.wait(set(d.requests))
    return tg


def assert_all_sent(attempter: ScriptedAttempter, flow: Flow, records: int) -> None:
    """Every line went once, each user's in input order, never two of a user at once,
    and the flow holds nothing more."""
    assert sorted(line for _, line in attempter.sent) == list(range(1, records + 1))
    per_user: dict[str, list[int]] = defaultdict(list)
    for user, line in attempter.sent:
        per_user[user].append(line)
    assert all(lines == sorted(lines) for lines in per_user.values())
    assert not attempter.same_user_twice
    assert flow.lanes.pending == 0 and flow.in_flight == 0


@pytest.mark.parametrize(("records", "users", "started"), [(400, 50, 8), (90, 3, None)],
                         ids=["many-users", "fewer-users-than-slots"])
async def test_a_request_task_sends_the_takes_ready_after_it(
        records: int, users: int, started: int | None) -> None:
    flow = loaded_flow(records, users=users)
    attempter = ScriptedAttempter()
    d = dispatcher(flow, attempter, concurrency=8)

    tg = await run_all(d)

    assert_all_sent(attempter, flow, records)
    assert attempter.most_in_flight == min(8, users)
    if started is not None:
        # Ready work never ran out: each of the 8 slots kept its first task to the end.
        assert tg.started == started
    else:
        # A task that finds no ready lane hands its slot back; the dispatcher starts a
        # new one when a lane is ready again.
        assert tg.started >= users


async def test_no_take_after_a_stop() -> None:
    flow = loaded_flow(400, users=50)
    attempter = ScriptedAttempter()
    control = RunControl()
    d = dispatcher(flow, attempter, concurrency=8, control=control)
    started_at_stop: list[int] = []

    async with CountingGroup() as tg:
        def stop(sent: int) -> None:
            if sent == 40:
                control.request_stop("SIGTERM")
                started_at_stop.append(tg.started)

        attempter.on_send.append(stop)
        dispatch = tg.create_task(d.run(tg))  # (counted too: one more)
        await control.stopping.wait()
        for _ in range(20):  # turns before replay gets to cancel the dispatcher
            await asyncio.sleep(0)
        dispatch.cancel()  # as replay does on a stop, then drains what is under way
        while d.requests:
            await asyncio.wait(set(d.requests))

    # No request's task took more work once the stop was asked for: a send after it
    # comes only from a task `run` started before it noticed (replay cancels it then).
    assert len(attempter.sent) - 40 <= tg.started - started_at_stop[0]
    assert flow.in_flight == 0
    assert flow.lanes.pending == 400 - len(attempter.sent)


async def test_no_take_after_the_dispatcher_is_cancelled() -> None:
    flow = loaded_flow(400, users=50)
    attempter = ScriptedAttempter()
    d = dispatcher(flow, attempter, concurrency=8)

    async with CountingGroup() as tg:
        dispatch = tg.create_task(d.run(tg))
        while len(attempter.sent) < 40:
            await asyncio.sleep(0)
        dispatch.cancel()
        sent_at_cancel = len(attempter.sent)
        while d.requests:
            await asyncio.wait(set(d.requests))

    assert len(attempter.sent) <= sent_at_cancel + 8
    assert flow.lanes.pending == 400 - len(attempter.sent)


async def test_an_outage_hands_every_slot_back_for_the_probe() -> None:
    flow = loaded_flow(200, users=50)
    attempter = ScriptedAttempter()
    outage = FakeOutage(flow)
    d = dispatcher(flow, attempter, concurrency=8, outage=outage)
    sent_while_down: list[int] = []

    def go_down(sent: int) -> None:
        if outage.is_down:
            sent_while_down.append(sent)
        if sent == 50:
            outage.is_down = True

    attempter.on_send.append(go_down)

    tg = await run_all(d)

    # Down after the 50th send: no task sent on by itself until the probe turn (which
    # waits for every request under way to end) found the server back.
    assert outage.probes == 1
    assert sent_while_down == []
    assert_all_sent(attempter, flow, 200)
    assert tg.started > 8  # the slots went back to the dispatcher, which started anew


@pytest.mark.parametrize("stop", ["abort", "none"])
async def test_an_abort_ends_the_taking(stop: str) -> None:
    flow = loaded_flow(300, users=50)
    attempter = ScriptedAttempter()
    d = dispatcher(flow, attempter, concurrency=8)
    if stop == "abort":
        attempter.on_send.append(
            lambda sent: flow.stop(Abort(ExitCode.INVALID_KEY, "x")) if sent == 30 else None)

    await run_all(d)

    if stop == "abort":
        assert len(attempter.sent) <= 30 + 8
    else:
        assert len(attempter.sent) == 300


async def test_a_paced_run_starts_each_request_from_the_dispatcher() -> None:
    flow = loaded_flow(120, users=40)
    attempter = ScriptedAttempter()
    d = dispatcher(flow, attempter, concurrency=8, pacer=OneTurnPacer())

    tg = await run_all(d)

    assert len(attempter.sent) == 120
    assert tg.started == 120  # every request waited for its turn in `run`


@pytest.mark.parametrize("batching", [Batching(5, 10, fill=True), Batching(5, 10, 0.001)],
                         ids=["fill", "linger"])
async def test_a_batched_run_that_waits_to_fill_starts_each_request_from_the_dispatcher(
        batching: Batching) -> None:
    flow = loaded_flow(200, users=40)
    attempter = ScriptedAttempter()
    d = dispatcher(flow, attempter, concurrency=4, batching=batching)

    tg = await run_all(d)

    assert_all_sent(attempter, flow, 200)
    assert tg.started == attempter.requests
