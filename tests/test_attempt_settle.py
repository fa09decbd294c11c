"""attempt() and settle() on a scripted transport and a fake clock, without a socket: answers
by position, a split that counts no attempt, the all-delivered take settled in one pass, and
retries that hold their lane."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from replayer.engine.attempt import Answers, Attempter, Parts
from replayer.engine.classify import Verdict
from replayer.engine.decide import Rules
from replayer.engine.finish import Finisher
from replayer.engine.flow import Flow
from replayer.engine.lanes import Lanes, Take, Work
from replayer.engine.outage import Outage
from replayer.engine.retry import RetryPolicy
from replayer.engine.settle import Settler
from replayer.engine.stats import RunStats
from replayer.output.sinks import NdjsonSink
from replayer.records import Attempt, Session
from tests.conftest import FakeClock

K = 3  # the scripted server refuses a multi of more than K actions, as Leanplum does past 500
SUCCESS = {"success": True, "vars": {"a": 1}, "variants": [{"id": 7}]}


def ok(n: int, *, element: dict[str, Any] = SUCCESS) -> Attempt:
    return Attempt(200, orjson.dumps({"response": [element] * n}), latency_ms=12.5)


def too_large(n: int) -> Attempt:
    return Attempt(403, orjson.dumps({"response": [{"success": False, "error": {
        "message": f"multi takes at most {K} actions"}}] * n}), latency_ms=1.0)


class Script:
    """A `Poster` that answers each call with `answer(lines)` and keeps the lines it saw."""

    def __init__(self, answer: Callable[[list[int]], Attempt]) -> None:
        self.answer = answer
        self.calls: list[list[int]] = []

    async def __call__(self, url: str, body: bytes, *, actions: int) -> Attempt:
        lines = [int(a["userAttributes"]) for a in orjson.loads(body)["data"]]
        assert len(lines) == actions
        self.calls.append(lines)
        return self.answer(lines)


class Rig:
    """The stages that attempt and settle meet, over a scripted poster and a fake clock."""

    def __init__(self, tmp_path: Path, poster: Script, *, max_attempts: int = 3) -> None:
        self.clock = FakeClock()
        self.lanes = Lanes(lane_cap=100)
        self.flow = Flow(self.lanes)
        self.stats = RunStats()
        self.journal: list[list[tuple[str, int]]] = []
        self.outage = Outage(window_s=60.0, probe_max_s=30.0, limit_s=900.0,
                             clock=self.clock, flow=self.flow)
        self.results = NdjsonSink(tmp_path / "results.ndjson")
        self.failures = NdjsonSink(tmp_path / "failures.ndjson")
        finisher = Finisher(results=self.results, failures=self.failures, stats=self.stats,
                            save_responses=False, dry_run=False)
        self.attempter = Attempter(poster=poster, url="http://127.0.0.1:9/api", auth=b'{"appId":"a"',
                                   batch=True, clock=self.clock, outage=self.outage,
                                   before_send=lambda ls: self.journal.append(list(ls)),
                                   never_left=lambda ls: None)
        policy = RetryPolicy(max_attempts=max_attempts, base_s=2.0, max_s=8.0, jitter=0.0)
        self.settler = Settler(flow=self.flow, finisher=finisher, rules=Rules(policy),
                               outage=self.outage, clock=self.clock, rng=random.Random(1))

    def push(self, users: str) -> None:
        """One record per character (its user), numbered from line 1."""
        for line_no, user in enumerate(users, start=1):
            body = orjson.dumps({"userId": user, "userAttributes": str(line_no)})
            self.lanes.push(Work(Session("in", line_no, user, None, body, body)))

    def take(self, users: int = 50, actions: int = 500) -> Take:
        take = self.lanes.take(max_users=users, max_actions=actions)
        assert take is not None
        return take

    async def round(self, take: Take) -> Answers:
        answers = await self.attempter.attempt(take.parts, planned_s=self.clock.now())
        async with asyncio.TaskGroup() as tg:
            self.settler.settle(take.parts, answers, tg)
        return answers

    def rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        self.results.close()
        self.failures.close()
        return ([orjson.loads(x) for x in self.results.path.read_bytes().splitlines()],
                [orjson.loads(x) for x in self.failures.path.read_bytes().splitlines()])


def lines_of(parts: Parts) -> list[int]:
    return [w.session.line_no for _, ws in parts for w in ws]


async def test_an_all_delivered_take_ends_in_one_pass_and_counts_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, Script(lambda lines: ok(len(lines))))
    rig.push("aabcb")
    take = rig.take()

    answers = await rig.round(take)

    assert answers.delivered and answers.fatal is None
    assert [o and o.verdict for o in answers.outcomes] == [Verdict.DELIVERED] * 5
    assert lines_of(take.parts) == [1, 2, 3, 5, 4], "by position: lane by lane, in order"
    results, failures = rig.rows()
    assert sorted(r["line"] for r in results) == [1, 2, 3, 4, 5] and failures == []
    assert {(r["attempts"], r["latency_ms"], r["vars"], tuple(r["variants"]))
            for r in results} == {(1, 12.5, 1, (7,))}
    stats = rig.stats
    assert (stats.requests, stats.user_lookups, stats.by_status["delivered"]) == (1, 3, 5)
    assert (stats.latency.count, stats.window.latency.count, stats.service.count) == (5, 5, 1)
    assert stats.latency.percentile(50) == pytest.approx(12.5, rel=0.01)
    assert (rig.lanes.pending, rig.lanes.in_memory, len(rig.lanes)) == (0, 0, 0)


async def test_a_refused_multi_goes_in_halves_by_users_and_counts_no_attempt(
        tmp_path: Path) -> None:
    script = Script(lambda lines: too_large(len(lines)) if len(lines) > K else ok(len(lines)))
    rig = Rig(tmp_path, script)
    rig.push("abcdef")

    answers = await rig.round(rig.take())

    assert script.calls == [[1, 2, 3, 4, 5, 6], [1, 2, 3], [4, 5, 6]]
    assert rig.journal == [[("in", n) for n in c] for c in script.calls]
    assert answers.delivered and [s.answered for s in answers.sent] == [0, 3, 3]
    results, _ = rig.rows()
    assert sorted((r["line"], r["attempts"]) for r in results) == [(n, 1) for n in range(1, 7)]
    assert (rig.stats.requests, rig.stats.by_status["delivered"]) == (3, 6)
    assert rig.stats.latency.count == 6, "the refused call's latency is no record's"


async def test_a_lone_users_later_half_waits_behind_a_retry_of_the_first(
        tmp_path: Path) -> None:
    def answer(lines: list[int]) -> Attempt:
        if len(lines) > K:
            return too_large(len(lines))
        return Attempt(503, None, latency_ms=3.0) if 1 in lines else ok(len(lines))

    script = Script(answer)
    rig = Rig(tmp_path, script)
    rig.push("uuuuuu")  # one user: the split cuts its actions in order
    take = rig.take()

    answers = await rig.round(take)

    assert script.calls == [[1, 2, 3, 4, 5, 6], [1, 2, 3]], "4-6 must not overtake 1-3"
    assert not answers.delivered
    assert [o is None for o in answers.outcomes] == [False] * 3 + [True] * 3
    works = [w for _, ws in take.parts for w in ws]
    assert [w.attempts for w in works] == [1, 1, 1, 0, 0, 0], "nothing counted, nothing undone"
    assert rig.clock.sleeps == [pytest.approx(2.0)], "the lane waited out its backoff"
    assert rig.stats.retries == 3 and rig.lanes.pending == 6
    assert [w.session.line_no for w in rig.lanes._lanes["u"].items] == [1, 2, 3, 4, 5, 6]

    script.answer = lambda lines: ok(len(lines)) if len(lines) <= K else too_large(len(lines))
    await rig.round(rig.take())

    results, failures = rig.rows()
    assert [(r["line"], r["attempts"]) for r in results] == [
        (1, 2), (2, 2), (3, 2), (4, 1), (5, 1), (6, 1)] and failures == []
    assert rig.lanes.pending == 0


async def test_mixed_answers_settle_each_record_by_its_own_element(tmp_path: Path) -> None:
    warning = {"success": True, "warning": {"message": "odd"}}
    rejected = {"success": False, "error": {"message": "no"}}
    elements = {1: SUCCESS, 2: warning, 3: rejected}

    def answer(lines: list[int]) -> Attempt:
        body = {"response": [elements.get(n, SUCCESS) for n in lines]}
        return Attempt(200, orjson.dumps(body), latency_ms=4.0)

    rig = Rig(tmp_path, Script(answer))
    rig.push("abcd")

    answers = await rig.round(rig.take())

    assert not answers.delivered
    results, failures = rig.rows()
    assert sorted(r["line"] for r in results) == [1, 4]
    assert sorted((f["line"], f["kind"]) for f in failures) == [(2, "warning"), (3, "rejected")]
    assert (rig.stats.by_status["delivered"], rig.stats.by_status["failed"]) == (2, 2)
    assert rig.lanes.pending == 0 and rig.stats.retries == 0


async def test_a_record_that_keeps_failing_gives_up_after_its_attempts(tmp_path: Path) -> None:
    rig = Rig(tmp_path, Script(lambda lines: Attempt(500, None, latency_ms=2.0)),
              max_attempts=3)
    rig.push("a")

    for _ in range(3):
        await rig.round(rig.take())

    results, failures = rig.rows()
    assert results == [] and [(f["kind"], f["attempts"]) for f in failures] == [
        ("server_error", 3)]
    assert rig.clock.sleeps == [pytest.approx(2.0), pytest.approx(4.0)]
    assert rig.stats.retries == 2 and rig.stats.requests == 3


ONE_CALL_ANSWERS = {
    "delivered": ok(1),
    "a warning": Attempt(200, orjson.dumps({"response": [{"success": True, "warning": {
        "message": "Device not found"}}]}), latency_ms=3.0),
    "throttled, with Retry-After": Attempt(429, b"{}", latency_ms=1.5, retry_after="7"),
    "a server error": Attempt(503, None, latency_ms=2.0),
    "not a Leanplum answer": Attempt(200, b"<html>", latency_ms=2.0),
    "refused, never sent": Attempt(None, None, "connect", "refused", sent=False),
    "timed out": Attempt(None, None, "timeout", latency_ms=5000.0),
    "invalid key": Attempt(401, orjson.dumps({"response": [{"success": False, "error": {
        "message": "Invalid clientKey"}}]}), latency_ms=1.0),
    "forbidden": Attempt(403, b"{}", latency_ms=1.0),
}


@pytest.mark.parametrize("attempt", ONE_CALL_ANSWERS.values(), ids=ONE_CALL_ANSWERS.keys())
@pytest.mark.parametrize("earlier", ["first try", "ambiguous before", "resent"])
async def test_one_start_call_answers_as_a_take_of_one_does(tmp_path: Path, attempt: Attempt,
                                                             earlier: str) -> None:
    """Without batching, attempt() takes its own short way for the one record of a take: its
    answers, journal lines and never-left lines are those of the general way."""
    seen: dict[bool, tuple[Answers, list[Any], list[Any], list[str]]] = {}
    for batch in (False, True):
        (tmp_path / str(batch)).mkdir()
        rig = Rig(tmp_path / str(batch), Script(lambda lines: attempt))
        left: list[list[tuple[str, int]]] = []
        urls: list[str] = []

        async def poster(url: str, body: bytes, *, actions: int,
                         urls: list[str] = urls) -> Attempt:
            urls.append(url.rsplit("=", 1)[-1])
            assert actions == 1 and b'"appId":"a"' in body
            return attempt

        rig.attempter = Attempter(poster=poster, url="http://127.0.0.1:9/api",
                                  auth=b'{"appId":"a"', batch=batch, clock=rig.clock,
                                  outage=rig.outage,
                                  before_send=lambda ls, rig=rig: rig.journal.append(list(ls)),
                                  never_left=lambda ls, left=left: left.append(list(ls)))
        rig.push("a")
        take = rig.take()
        work = take.works[0]
        work.ambiguous = int(earlier == "ambiguous before")
        work.resent = earlier == "resent"
        answers = await rig.attempter.attempt(take.parts, planned_s=1.0)
        seen[batch] = (answers, rig.journal, left, urls)
    (one, journal, left, urls), (general, *_) = seen[False], seen[True]
    assert one == general
    assert urls == ["start"] and journal == [[("in", 1)]]
    assert left == ([] if attempt.sent else [[] if earlier != "first try" else [("in", 1)]])
