"""Settler: after a take's answers, ends each record or holds its lane for another try."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import assert_never

from replayer.engine.attempt import Answers, Parts
from replayer.engine.classify import Verdict
from replayer.engine.control import Abort
from replayer.engine.decide import Answer, Delivered, Failed, RetryIn, Rules, decide
from replayer.engine.finish import Finisher
from replayer.engine.flow import Flow
from replayer.engine.lanes import Lane, Work
from replayer.engine.outage import Outage
from replayer.engine.pacing import Clock
from replayer.observe.logs import about, log
from replayer.records import ExitCode


class Settler:
    """Applies decide() to each answered work; rows and counters go through the `Finisher`.

    The settler is the one writer of a record's tries (attempts, free attempts, ambiguous
    ones, its first throttle): an attempt counts once it is answered, so a call refused as
    too large, whose halves go instead, never counted.
    """

    def __init__(self, *, flow: Flow, finisher: Finisher, rules: Rules, outage: Outage,
                 clock: Clock, rng: random.Random) -> None:
        self._flow = flow
        self._finisher = finisher
        self._rules = rules
        self._outage = outage
        self._clock = clock
        self._rng = rng
        self.timers: set[asyncio.Task[None]] = set()

    def settle(self, parts: Parts, answers: Answers, tg: asyncio.TaskGroup) -> None:
        """Ends what is final; lanes with work left wait out their retry delay in `tg`."""
        self._finisher.requests(answers.sent)
        if answers.fatal is not None:
            fatal = answers.fatal
            self._flow.stop(Abort(ExitCode.INVALID_KEY, f"{fatal.kind}: {fatal.message}"))
            return
        lanes = self._flow.lanes
        if answers.delivered:  # the common case: the whole take ends in one pass
            self._finisher.delivered_take(parts, answers)
            for lane, works in parts:
                lanes.done(lane, len(works))
        else:
            down = self._outage.down()  # once per take: the server's state for all its answers
            start = 0
            for lane, works in parts:
                self._settle_lane(lane, works, start, answers, tg, down)
                start += len(works)
        self._flow.room.set()

    def _settle_lane(self, lane: Lane, works: tuple[Work, ...], start: int, answers: Answers,
                     tg: asyncio.TaskGroup, down: bool) -> None:
        final: list[Work] = []
        answered = 0
        delay_s = 0.0
        now_s = self._clock.now()
        finisher = self._finisher
        for i, work in enumerate(works, start):
            outcome = answers.outcomes[i]
            if outcome is None:
                continue  # not sent: it stays first in its lane
            answered += 1
            work.attempts += 1
            work.latency_ms = answers.latency_ms[i]
            if outcome.verdict is Verdict.DELIVERED:  # decide()'s first rule, inlined
                finisher.delivered(work, outcome)
                final.append(work)
                continue
            decision = decide(work, Answer(outcome, answers.retry_after_s[i]),
                              rules=self._rules, server_down=down, rng=self._rng, now_s=now_s)
            if decision.ambiguous:
                work.ambiguous += 1
            if isinstance(decision, Delivered):
                finisher.delivered(work, decision.outcome)
                final.append(work)
            elif isinstance(decision, Failed):
                finisher.failed(work, decision.kind, decision.message, decision.http_status)
                final.append(work)
            elif isinstance(decision, RetryIn):
                work.scheduled_s = None  # a retry is timed from when it goes
                if decision.throttled and work.throttled_s is None:
                    work.throttled_s = now_s
                if decision.free:
                    work.free_attempts += 1
                elif log.isEnabledFor(logging.DEBUG):
                    s = work.session
                    log.debug("retry in %.2f s after %s: %s", decision.delay_s,
                              outcome.kind, outcome.message,
                              extra=about(s.file, s.line_no, s.lane, outcome.kind))
                delay_s = max(delay_s, decision.delay_s)
            else:
                assert_never(decision)
        if self._flow.lanes.settle(lane, works, final):
            return
        self._flow.retry_waiting += 1
        finisher.retrying(answered - len(final))
        timer = tg.create_task(self._release_later(lane, delay_s))
        self.timers.add(timer)
        timer.add_done_callback(self.timers.discard)

    async def _release_later(self, lane: Lane, delay_s: float) -> None:
        """After a retry delay the lane is free again; it held no concurrency slot meanwhile."""
        try:
            await self._clock.sleep(delay_s)
        finally:
            self._flow.retry_waiting -= 1
        self._flow.lanes.release(lane)
        self._flow.changed.set()
