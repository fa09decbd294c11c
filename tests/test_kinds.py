"""The closed sets: every failure kind a row can carry is a FailureKind; exit codes; decide()."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from replayer.engine.classify import SEND_KINDS, Outcome, Verdict, classify
from replayer.engine.control import Abort, exit_code
from replayer.engine.decide import Answer, Delivered, Failed, RetryIn, Rules, decide
from replayer.engine.lanes import Work
from replayer.engine.retry import RetryPolicy
from replayer.records import Attempt, ExitCode, FailureKind, RawLine, Session, worst
from replayer.source.validate import VALIDATION_KINDS, parse_line
from tests.conftest import read_rows

REPO = Path(__file__).resolve().parents[1]


def test_validation_and_send_kinds_are_failure_kinds() -> None:
    assert all(isinstance(k, FailureKind) for k in (*VALIDATION_KINDS, *SEND_KINDS))
    assert set(VALIDATION_KINDS).isdisjoint(SEND_KINDS)
    assert set(FailureKind) == {*VALIDATION_KINDS, *SEND_KINDS, FailureKind.MISSING_TIME}


ATTEMPTS = [
    Attempt(status, body) for status in (200, 301, 307, 400, 401, 403, 404, 429, 451, 500, 503)
    for body in (None, b"", b"not json", b'{"response":[{"success":true}]}',
                 b'{"response":[{"success":false,"error":{"message":"Invalid access key"}}]}',
                 b'{"response":[{"success":true,"warning":{"message":"skipped"}}]}',
                 b'{"response":[{"success":true,"error":{"message":"bad"}}]}',
                 b'{"response":[1]}', b'{"response":[]}')
] + [Attempt(None, None, error, sent=sent)
     for error in ("timeout", "connect", "disconnected", "transport", "payload", None)
     for sent in (True, False)]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: f"{a.status}-{a.error}-{a.body!r:.20}")
def test_every_kind_classify_produces_is_closed(attempt: Attempt) -> None:
    for outcome in classify(attempt, 1):
        assert outcome.kind == "delivered" or outcome.kind in set(FailureKind), outcome


BAD_LINES = [b"{", b"[]", b"\xff\xfe", b'{"userId": 5}', b'{"clientKey": "k", "userId": "u"}',
             b'{"userId": "u", "time": -1}', b'{"userId": "u", "zzz": 1}',
             b'{"userId": "u", "userAttributes": {",": 1}}', b'{"deviceId": ""}', b"null",
             b'{"userId": "u", "appId": "a"}', b'{"userId": "' + b"x" * 500 + b'"}']


@pytest.mark.parametrize("data", BAD_LINES, ids=range(len(BAD_LINES)))
def test_every_kind_validation_produces_is_closed(data: bytes) -> None:
    result = parse_line(RawLine("f", 1, data), allow_unknown_fields=False, now_s=2e9)
    assert not isinstance(result, Session)
    assert isinstance(result.kind, FailureKind)


def test_every_kind_in_the_samples_run_is_closed(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from replayer.cli import main

    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(REPO / "samples" / "sessions.ndjson"),
                                       "--out", str(out), "--quiet", "--workers", "1"])
    assert result.exit_code == ExitCode.FAILURES, result.output
    kinds = {row["kind"] for row in read_rows(out / "failures.ndjson")}
    assert kinds and kinds <= set(FailureKind)


@pytest.mark.parametrize(("abort", "reason", "thresholds", "failed", "expected"), [
    (None, None, False, 0, ExitCode.OK),
    (None, None, False, 3, ExitCode.FAILURES),
    (None, None, True, 3, ExitCode.THRESHOLD),
    (None, "SIGTERM", True, 3, ExitCode.SIGTERM),
    (None, "SIGHUP", False, 0, ExitCode.SIGHUP),
    (None, "SIGINT", False, 0, ExitCode.SIGINT),
    (None, "duration", False, 0, ExitCode.OK),
    (Abort(ExitCode.OUTPUT, "disk full"), "SIGTERM", False, 0, ExitCode.OUTPUT),
    (Abort(ExitCode.INVALID_KEY, "key"), None, False, 0, ExitCode.INVALID_KEY),
], ids=["ok", "failures", "threshold", "signal-over-threshold", "hup", "int", "duration",
        "abort-over-signal", "key"])
def test_exit_code_rule(abort: Abort | None, reason: str | None, thresholds: bool, failed: int,
                        expected: ExitCode) -> None:
    assert exit_code(abort=abort, stop_reason=reason, thresholds_failed=thresholds,
                     failed=failed) is expected


def test_worst_reads_every_code_through_of_child() -> None:
    assert worst([]) is ExitCode.OK
    assert worst([0, 1, 143]) is ExitCode.SIGTERM
    assert worst([0, -9]) is ExitCode.WORKER
    assert worst([0, 77]) is ExitCode.WORKER


RULES = Rules(RetryPolicy(max_attempts=3, base_s=1.0, max_s=10.0, jitter=0.0))


def work(attempts: int, free: int = 0) -> Work:
    session = Session("f", 1, "u", None, b"{}", b"{}")
    return Work(session, attempts=attempts, free_attempts=free)


def answer(verdict: Verdict, kind: str = "timeout", retry_after_s: float | None = None) -> Answer:
    return Answer(Outcome(verdict, kind, "msg", 500), retry_after_s)


@pytest.mark.parametrize(("w", "a", "down", "rules", "expected"), [
    (work(1), answer(Verdict.DELIVERED, "delivered"), False, RULES, Delivered),
    (work(1), answer(Verdict.REJECTED, "rejected"), False, RULES, Failed),
    (work(1), answer(Verdict.SKIPPED, "warning"), False, RULES, Failed),
    (work(1), answer(Verdict.RETRYABLE, "server_error"), False, RULES, RetryIn(1.0)),
    (work(2), answer(Verdict.RETRYABLE, "server_error"), False, RULES, RetryIn(2.0)),
    (work(3), answer(Verdict.RETRYABLE, "server_error"), False, RULES, Failed),
    (work(3, free=2), answer(Verdict.RETRYABLE, "server_error"), False, RULES, RetryIn(1.0)),
    (work(3), answer(Verdict.RETRYABLE, "server_error"), True, RULES, RetryIn(0.0, free=True)),
    (work(1), answer(Verdict.RETRYABLE, "rate_limited", 7.0), False, RULES, RetryIn(7.0)),
    (work(1), answer(Verdict.AMBIGUOUS), False, RULES, RetryIn(1.0, ambiguous=True)),
    (work(1), answer(Verdict.AMBIGUOUS), False, Rules(RULES.policy, fail_ambiguous=True),
     Failed),
], ids=["delivered", "rejected", "skipped", "retry-1", "retry-2", "give-up", "free-attempts",
        "outage", "retry-after", "ambiguous-retry", "ambiguous-fail"])
def test_decide(w: Work, a: Answer, down: bool, rules: Rules, expected: object) -> None:
    decision = decide(w, a, rules=rules, server_down=down, rng=random.Random(1))
    if isinstance(expected, type):
        assert isinstance(decision, expected)
        if isinstance(decision, Failed):
            assert isinstance(decision.kind, FailureKind)
    else:
        assert decision == expected
