"""attempt(): one request for a take of lanes, and the answer for each record. Writes no row."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from replayer.engine import send
from replayer.engine.classify import Outcome, Verdict, classify
from replayer.engine.decide import Answer
from replayer.engine.lanes import Lane, Work
from replayer.engine.outage import Outage
from replayer.engine.pacing import Clock
from replayer.engine.retry import parse_retry_after
from replayer.engine.stats import RunStats

Parts = tuple[tuple[Lane, tuple[Work, ...]], ...]
# Called with the lines a request carries before it goes out (the journal), and with
# those of a request that never left this machine (no connection was made).
BeforeSend = Callable[[Sequence[tuple[str, int]]], None]


@dataclass(slots=True)
class Answers:
    """The answers of one take: per work (by id) the final answer of its last attempt.

    A work without an answer was not sent (a fatal answer came first, or an earlier half
    of its own user must be retried first); `fatal` is the answer that ends the run.
    """

    by_work: dict[int, Answer] = field(default_factory=dict)
    fatal: Outcome | None = None

    def may_retry(self, parts: Parts) -> bool:
        """True when some work of `parts` has no final answer yet (it may be sent again)."""
        for _, works in parts:
            for work in works:
                answer = self.by_work.get(id(work))
                if answer is None or answer.outcome.verdict in (Verdict.RETRYABLE,
                                                                Verdict.AMBIGUOUS):
                    return True
        return False


class Attempter:
    """Sends takes through a `Poster`: builds the body, journals it, classifies the answer."""

    def __init__(self, *, poster: send.Poster, url: str, auth: bytes, batch: bool,
                 clock: Clock, stats: RunStats, outage: Outage,
                 before_send: BeforeSend, never_left: BeforeSend) -> None:
        self._poster = poster
        self._start_url = f"{url}?action=start"
        self._multi_url = f"{url}?action=multi"
        self._auth = auth
        self._batch = batch
        self._clock = clock
        self._stats = stats
        self._outage = outage
        self._before_send = before_send
        self._never_left = never_left

    async def attempt(self, parts: Parts, *, planned_s: float) -> Answers:
        """Sends `parts` in one call (in halves if refused as too large); returns the answers."""
        answers = Answers()
        await self._send(parts, answers, planned_s)
        return answers

    async def _send(self, parts: Parts, answers: Answers, planned_s: float) -> None:
        """A call refused as too large (403 on a multi) was ignored as a whole: it costs no
        attempt, and its halves go out one after the other."""
        works = [w for _, ws in parts for w in ws]
        for work in works:
            work.attempts += 1
            work.scheduled_s = None  # a retry is timed from when it goes
        self._before_send([(w.session.file, w.session.line_no) for w in works])
        if self._batch:
            body = send.multi_body(self._auth, works, now_s=self._clock.wall())
            url = self._multi_url
        else:
            body = send.start_body(self._auth, works[0])
            url = self._start_url
        sent_s = self._clock.now()
        attempt = await self._poster(url, body, actions=len(works))
        self._stats.request(users=len(parts))
        self._stats.answered(service_ms=attempt.latency_ms,
                             scheduled_ms=(self._clock.now() - planned_s) * 1000.0,
                             behind_ms=max(0.0, sent_s - planned_s) * 1000.0)
        outcomes = classify(attempt, len(works))
        self._outage.note(attempt)
        if not attempt.sent:
            # None of it reached the server: unless an earlier try may have, it is not in
            # flight, and a resume need not mark it as a possible duplicate.
            self._never_left([(w.session.file, w.session.line_no) for w in works
                              if not w.ambiguous and not w.resent])
        verdict = outcomes[0].verdict
        if verdict is Verdict.FATAL:
            answers.fatal = outcomes[0]
            return
        if verdict is Verdict.SPLIT:
            for work in works:
                work.attempts -= 1
            for half in _halves(parts):
                await self._send(half, answers, planned_s)
                if answers.fatal is not None or (len(parts) == 1 and answers.may_retry(half)):
                    return  # one user's later actions must not overtake a retry
            return
        retry_after_s = parse_retry_after(attempt.retry_after, now_s=self._clock.wall())
        for work, outcome in zip(works, outcomes, strict=True):
            work.latency_ms = attempt.latency_ms
            answers.by_work[id(work)] = Answer(outcome, retry_after_s)


def _halves(parts: Parts) -> list[Parts]:
    """Splits a refused multi call in two: by users, or a lone user's actions in order."""
    if len(parts) > 1:
        mid = len(parts) // 2
        return [parts[:mid], parts[mid:]]
    lane, works = parts[0]
    mid = len(works) // 2
    return [((lane, works[:mid]),), ((lane, works[mid:]),)]
