"""decide(): what one answer means for one record: delivered, failed, or another try. Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple, assert_never

from replayer.engine.classify import Outcome, Verdict
from replayer.engine.lanes import Work
from replayer.engine.retry import MAX_RETRY_AFTER_S, RetryPolicy
from replayer.records import FailureKind


class Answer(NamedTuple):
    """What the server said about one work: the outcome and any Retry-After."""

    outcome: Outcome
    retry_after_s: float | None


@dataclass(frozen=True, slots=True)
class Delivered:
    """Final: taken by Leanplum (or, in a dry run, would have been sent)."""

    outcome: Outcome
    ambiguous: bool = False  # this answer followed an attempt that may have landed


@dataclass(frozen=True, slots=True)
class Failed:
    """Final: not delivered, for `kind`."""

    kind: FailureKind
    message: str
    http_status: int | None
    ambiguous: bool = False


@dataclass(frozen=True, slots=True)
class RetryIn:
    """Not final: try again after `delay_s`; `free` when the attempt is not held against it."""

    delay_s: float
    free: bool = False
    ambiguous: bool = False
    throttled: bool = False  # a throttling 429: the wait counts toward throttle_wait_max_s


Done = Delivered | Failed  # final: the record ends as one row
Decision = Done | RetryIn


@dataclass(frozen=True, slots=True)
class Rules:
    """What decide() weighs besides the answer: the retry policy and --on-ambiguous."""

    policy: RetryPolicy
    fail_ambiguous: bool = False
    # A record may wait this long in all (from its first throttling 429) on throttles
    # that cost it no attempt; 0: every throttle is an attempt.
    throttle_wait_max_s: float = 0.0
    paced_throttles: bool = False  # --rate auto: the controller paces retries, no backoff


def decide(work: Work, answer: Answer, *, rules: Rules, server_down: bool,
           rng: random.Random, now_s: float = 0.0) -> Decision:
    """The decision on `work` after `answer` (its `attempts` already count this one): `Done`
    (a row) or `RetryIn`.

    `now_s` (monotonic) is when the answer came, for the throttle wait bound.
    """
    outcome, retry_after_s = answer
    verdict = outcome.verdict
    kind = FailureKind(outcome.kind) if verdict is not Verdict.DELIVERED else None
    if verdict is Verdict.DELIVERED:
        return Delivered(outcome)
    if verdict is Verdict.SKIPPED or verdict is Verdict.REJECTED:
        assert kind is not None
        return Failed(kind, outcome.message, outcome.http_status)
    if verdict is Verdict.AMBIGUOUS or verdict is Verdict.RETRYABLE:
        ambiguous = verdict is Verdict.AMBIGUOUS
        if ambiguous and rules.fail_ambiguous:
            message = f"may have been processed ({outcome.kind}: {outcome.message})"
            return Failed(FailureKind.AMBIGUOUS, message, outcome.http_status, ambiguous=True)
        if server_down:
            # The server is down, not the record: wait for it without using up attempts.
            return RetryIn(0.0, free=True, ambiguous=ambiguous)
        if outcome.throttled and _may_wait(work, rules, now_s):
            return RetryIn(_throttle_delay(work, rules, rng, retry_after_s), free=True,
                           throttled=True)
        counted = work.attempts - work.free_attempts
        delay = rules.policy.next_delay(counted, rng, retry_after_s=retry_after_s)
        if delay is None:
            assert kind is not None
            return Failed(kind, f"gave up after {work.attempts} attempts: {outcome.message}",
                          outcome.http_status, ambiguous=ambiguous)
        return RetryIn(delay, ambiguous=ambiguous)
    if verdict is Verdict.SPLIT or verdict is Verdict.FATAL:
        raise AssertionError(f"{verdict} is decided by the attempt, not per record")
    assert_never(verdict)


def _may_wait(work: Work, rules: Rules, now_s: float) -> bool:
    """Whether a throttled record may wait once more without using up an attempt."""
    first_s = now_s if work.throttled_s is None else work.throttled_s
    return now_s - first_s < rules.throttle_wait_max_s


def _throttle_delay(work: Work, rules: Rules, rng: random.Random,
                    retry_after_s: float | None) -> float:
    """A Retry-After wins; with --rate auto none (the pacer's lowered rate spaces retries);
    else the backoff of the policy, growing with the throttles so far, capped at its last."""
    if retry_after_s is not None:
        return min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S)
    if rules.paced_throttles:
        return 0.0
    policy = rules.policy
    step = max(1, min(work.free_attempts + 1, policy.max_attempts - 1))
    delay = policy.next_delay(step, rng)
    return policy.base_s if delay is None else delay
