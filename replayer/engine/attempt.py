"""attempt(): one request for a take of lanes, and the answer for each record. Writes nothing:
no row, no counter, no record's state (the settler and the finisher do, from the answers)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from replayer.engine import send
from replayer.engine.classify import Outcome, Verdict, classify
from replayer.engine.decide import Answer
from replayer.engine.lanes import Lane, Work
from replayer.engine.outage import Outage
from replayer.engine.pacing import Clock
from replayer.engine.retry import parse_retry_after

Parts = tuple[tuple[Lane, tuple[Work, ...]], ...]
# Called with the lines a request carries before it goes out (the journal), and with
# those of a request that never left this machine (no connection was made).
BeforeSend = Callable[[Sequence[tuple[str, int]]], None]


class Sent(NamedTuple):
    """One HTTP request of a take, as the run's counters see it."""

    users: int
    answered: int  # works this request answers (0 when refused as too large or fatal)
    delivered: int  # `answered` when every one of them was delivered, else 0
    service_ms: float  # from its actual send to its answer
    scheduled_ms: float  # from the time it was planned for to its answer
    behind_ms: float  # how late after its planned time it went


@dataclass(slots=True)
class Answers:
    """The answers of one take by position: index i is the take's i-th work (lane by lane,
    each lane's works in order).

    `outcomes[i]` is None when that work was not sent (a fatal answer came first, or an
    earlier half of its own user must be retried first); `latency_ms[i]` and
    `retry_after_s[i]` belong to the request that carried it. `delivered` is the common
    case: every work was sent and answered delivered. `fatal` ends the run. `sent` lists
    the requests made, for the counters.
    """

    outcomes: list[Outcome | None]
    latency_ms: list[float]
    retry_after_s: list[float | None]
    delivered: bool = False
    fatal: Outcome | None = None
    sent: list[Sent] = field(default_factory=list)

    @classmethod
    def unsent(cls, n: int) -> Answers:
        """Answers for `n` works, none of them sent yet."""
        return cls([None] * n, [0.0] * n, [None] * n)

    def answer(self, i: int) -> Answer | None:
        """The answer to the i-th work, None when it was not sent."""
        outcome = self.outcomes[i]
        return None if outcome is None else Answer(outcome, self.retry_after_s[i])

    def may_retry(self, start: int, stop: int) -> bool:
        """True when a work in [start, stop) has no final answer yet (it may be sent again)."""
        for outcome in self.outcomes[start:stop]:
            if outcome is None or outcome.verdict in (Verdict.RETRYABLE, Verdict.AMBIGUOUS):
                return True
        return False


class Attempter:
    """Sends takes through a `Poster`: builds the body, journals it, classifies the answer."""

    def __init__(self, *, poster: send.Poster, url: str, auth: bytes, batch: bool,
                 clock: Clock, outage: Outage,
                 before_send: BeforeSend, never_left: BeforeSend) -> None:
        self._poster = poster
        self._start_url = f"{url}?action=start"
        self._multi_url = f"{url}?action=multi"
        self._auth = auth
        self._batch = batch
        self._clock = clock
        self._outage = outage
        self._before_send = before_send
        self._never_left = never_left

    def attempt(self, parts: Parts, *, planned_s: float) -> Coroutine[Any, Any, Answers]:
        """Sends `parts` in one call (in halves if refused as too large); returns the answers.

        The coroutine that does it, not one awaiting it: each level of coroutines is passed
        through on every resume of the request."""
        if not self._batch:
            return self._send_one(parts[0][1][0], planned_s)
        return self._attempt(parts, planned_s)

    async def _attempt(self, parts: Parts, planned_s: float) -> Answers:
        answers = Answers.unsent(sum(len(ws) for _, ws in parts))
        await self._send(parts, 0, answers, planned_s)
        answers.delivered = (answers.fatal is None
                             and sum(s.delivered for s in answers.sent) == len(answers.outcomes))
        return answers

    async def _send(self, parts: Parts, start: int, answers: Answers, planned_s: float) -> None:
        """Sends `parts`, the works at positions `start`.. of the take. A call refused as too
        large (403 on a multi) was ignored as a whole: it costs no attempt (nothing counted it),
        and its halves go out one after the other."""
        works = [w for _, ws in parts for w in ws]
        n = len(works)
        self._before_send([(w.session.file, w.session.line_no) for w in works])
        if self._batch:
            body = send.multi_body(self._auth, works, now_s=self._clock.wall())
            url = self._multi_url
        else:
            body = send.start_body(self._auth, works[0])
            url = self._start_url
        sent_s = self._clock.now()
        attempt = await self._poster(url, body, actions=n)
        now_s = self._clock.now()
        outcomes = classify(attempt, n)
        verdict = outcomes[0].verdict
        answered = 0 if verdict is Verdict.FATAL or verdict is Verdict.SPLIT else n
        delivered = answered if verdict is Verdict.DELIVERED and all(
            o.verdict is Verdict.DELIVERED for o in outcomes) else 0
        answers.sent.append(Sent(len(parts), answered, delivered, attempt.latency_ms,
                                 (now_s - planned_s) * 1000.0,
                                 max(0.0, sent_s - planned_s) * 1000.0))
        self._outage.note(attempt, now_s=now_s)
        if not attempt.sent:
            # None of it reached the server: unless an earlier try may have, it is not in
            # flight, and a resume need not mark it as a possible duplicate.
            self._never_left([(w.session.file, w.session.line_no) for w in works
                              if not w.ambiguous and not w.resent])
        if verdict is Verdict.FATAL:
            answers.fatal = outcomes[0]
            return
        if verdict is Verdict.SPLIT:
            at = start
            for half in _halves(parts):
                size = sum(len(ws) for _, ws in half)
                await self._send(half, at, answers, planned_s)
                at += size
                if answers.fatal is not None or (len(parts) == 1
                                                 and answers.may_retry(at - size, at)):
                    return  # one user's later actions must not overtake a retry
            return
        stop = start + n
        answers.outcomes[start:stop] = outcomes
        answers.latency_ms[start:stop] = [attempt.latency_ms] * n
        if attempt.retry_after is not None:
            retry_after_s = parse_retry_after(attempt.retry_after, now_s=self._clock.wall())
            answers.retry_after_s[start:stop] = [retry_after_s] * n

    async def _send_one(self, work: Work, planned_s: float) -> Answers:
        """`_send` for a take of one work (without batching, every take): one `start` call,
        whose answer is never split."""
        session = work.session
        line = [(session.file, session.line_no)]
        self._before_send(line)
        body = send.start_body(self._auth, work)
        clock = self._clock
        sent_s = clock.now()
        attempt = await self._poster(self._start_url, body, actions=1)
        now_s = clock.now()
        outcome = classify(attempt, 1)[0]
        verdict = outcome.verdict
        fatal = verdict is Verdict.FATAL
        delivered = verdict is Verdict.DELIVERED
        latency_ms = attempt.latency_ms
        sent = Sent(1, 0 if fatal else 1, 1 if delivered else 0, latency_ms,
                    (now_s - planned_s) * 1000.0, max(0.0, sent_s - planned_s) * 1000.0)
        self._outage.note(attempt, now_s=now_s)
        if not attempt.sent:  # as in _send
            self._never_left([] if work.ambiguous or work.resent else line)
        if fatal:
            return Answers([None], [0.0], [None], False, outcome, [sent])
        retry_after_s = None if attempt.retry_after is None else parse_retry_after(
            attempt.retry_after, now_s=clock.wall())
        return Answers([outcome], [latency_ms], [retry_after_s], delivered, None, [sent])


def _halves(parts: Parts) -> list[Parts]:
    """Splits a refused multi call in two: by users, or a lone user's actions in order."""
    if len(parts) > 1:
        mid = len(parts) // 2
        return [parts[:mid], parts[mid:]]
    lane, works = parts[0]
    mid = len(works) // 2
    return [((lane, works[:mid]),), ((lane, works[mid:]),)]
