"""--rate auto: the controller in virtual time, the settings, 429 causes, and runs end to end."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from replayer.cli import main
from replayer.emulator import FaultConfig
from replayer.emulator.limit import THROTTLED, RateLimit, TokenBucket
from replayer.engine import rate_control
from replayer.engine.attempt import Answers
from replayer.engine.classify import LimitCause, Outcome, Verdict, classify, limit_cause
from replayer.engine.control import RunControl
from replayer.engine.decide import Answer, Failed, RetryIn, Rules, decide
from replayer.engine.dispatch import signal_of
from replayer.engine.lanes import Work
from replayer.engine.rate_control import (
    BETA,
    HEADROOM,
    K_S,
    SLOW_START_DOUBLING_S,
    WINDOW_S,
    AutoRate,
    LimitCounts,
    RateController,
    RateState,
    Signal,
    auto_rate_of,
    parse_auto,
    worker_share,
)
from replayer.engine.replay import replay
from replayer.engine.retry import RetryPolicy
from replayer.output.layout import FAILURES, METRICS, RESULTS
from replayer.output.metrics import read_rows as read_metrics
from replayer.records import Attempt, ExitCode, Session
from tests.conftest import StartEmulator, generated, read_rows, settings_for

# --- the controller, in virtual time -------------------------------------------------------


def drive(ctrl: RateController, *, until_s: float, limit: RateLimit | None = None,
          start_s: float = 0.0, step_s: float = 0.005, demand_per_s: float | None = None,
          bucket: TokenBucket | None = None) -> list[tuple[float, float, int, int]]:
    """Sends at the controller's rate; each request is answered one step later, OK or
    throttled by `limit`. Returns per second (end s, rate at the end, ok, throttled)."""
    bucket = bucket or (TokenBucket(limit) if limit is not None else None)
    owed, now_s, pending = 0.0, start_s, []
    seconds: list[tuple[float, float, int, int]] = []
    ok = throttled = 0
    while now_s < until_s:
        for sent_s, good in pending:
            ctrl.answered(now_s, sent_s=sent_s, signal=Signal.OK if good else Signal.THROTTLED)
            ok, throttled = ok + good, throttled + (not good)
        pending = []
        rate = ctrl.rate_at(now_s)
        owed += min(rate, demand_per_s or rate) * step_s
        while owed >= 1:
            owed -= 1
            pending.append((now_s, bucket is None or bucket.take(now_s)))
        now_s = round(now_s + step_s, 9)
        if now_s >= len(seconds) + 1 + start_s:
            seconds.append((now_s, ctrl.rate_at(now_s), ok, throttled))
            ok = throttled = 0
    return seconds


def controller(start: float = 20.0, ceiling: float = 10_000.0) -> RateController:
    return RateController(AutoRate(start, ceiling), now_s=0.0)


def test_it_climbs_fast_while_nothing_is_throttled() -> None:
    ctrl = controller()
    drive(ctrl, until_s=1.5)
    assert ctrl.rate_at(1.5) > 20 * 2 ** 7  # doubling every 0.2 s: 20 * 2 ** 7.5 by now
    assert ctrl.state(1.5) is RateState.CLIMBING and ctrl.cuts == 0


@pytest.mark.parametrize("limit", [50.0, 400.0, 2000.0], ids=["50", "400", "2000"])
def test_it_finds_and_holds_a_limit_it_is_not_told(limit: float) -> None:
    ctrl = controller()
    seconds = drive(ctrl, until_s=30.0, limit=RateLimit(((0.0, limit),)))
    steady = seconds[5:]
    goodput = sum(ok for _, _, ok, _ in steady) / len(steady)
    sent = sum(ok + th for _, _, ok, th in seconds)
    assert goodput >= 0.9 * limit
    assert sum(th for _, _, _, th in seconds) <= 0.05 * sent
    assert ctrl.cuts >= 1


def test_it_follows_a_limit_that_halves() -> None:
    ctrl = controller()
    seconds = drive(ctrl, until_s=40.0, limit=RateLimit(((0.0, 400.0), (20.0, 200.0))))
    after = seconds[25:]
    assert all(ok >= 0.85 * 200 for _, _, ok, _ in after)
    assert max(rate for _, rate, _, _ in after) < 2 * 200


def test_a_throttle_cuts_to_beta_of_what_was_answered() -> None:
    ctrl = controller(start=100.0)
    for i in range(50):  # 100 OK answers a second for half a second
        ctrl.answered(i * 0.01, sent_s=i * 0.01, signal=Signal.OK)
    before = ctrl.rate_at(0.5)
    ctrl.answered(0.5, sent_s=0.49, signal=Signal.THROTTLED)
    assert ctrl.rate_per_s == pytest.approx(BETA * min(before, ctrl.ok_per_s(0.5)))
    assert ctrl.state(0.6) is RateState.BACKING_OFF
    assert ctrl.w_max == pytest.approx(min(before, ctrl.ok_per_s(0.5)))


def test_one_cut_per_round_trip_throttles_sent_before_it_are_ignored() -> None:
    ctrl = controller(start=100.0)
    ctrl.answered(0.1, sent_s=0.09, signal=Signal.THROTTLED)
    once = ctrl.rate_per_s
    ctrl.answered(0.11, sent_s=0.05, signal=Signal.THROTTLED)  # sent before the cut
    assert ctrl.cuts == 1 and ctrl.rate_per_s >= once  # climbing again, not cut
    ctrl.answered(0.2, sent_s=0.15, signal=Signal.THROTTLED)  # sent after it
    assert ctrl.cuts == 2 and ctrl.rate_per_s < once


def test_it_climbs_back_to_w_max_after_k_seconds_then_holds() -> None:
    ctrl = controller(start=100.0)
    drive(ctrl, until_s=1.0, demand_per_s=100.0)
    ctrl.answered(1.0, sent_s=1.0, signal=Signal.THROTTLED)
    w_max = ctrl.w_max
    assert w_max is not None
    drive(ctrl, start_s=1.0, until_s=1.0 + K_S)
    assert ctrl.rate_per_s == pytest.approx(w_max, rel=0.02)
    assert ctrl.state(1.0 + K_S) is RateState.HOLDING


@pytest.mark.parametrize("signal", [Signal.NEUTRAL, Signal.OK], ids=["neutral", "ok"])
def test_per_user_429s_and_successes_never_lower_the_rate(signal: Signal) -> None:
    ctrl = controller(start=100.0)
    for i in range(200):
        before = ctrl.rate_at(i * 0.01)
        ctrl.answered(i * 0.01, sent_s=i * 0.01, signal=signal)
        assert ctrl.rate_per_s >= before
    assert ctrl.cuts == 0


def test_it_never_passes_the_ceiling() -> None:
    ctrl = controller(start=20.0, ceiling=300.0)
    seconds = drive(ctrl, until_s=10.0)
    assert max(rate for _, rate, _, _ in seconds) == 300.0
    assert ctrl.state(10.0) is RateState.HOLDING


def test_it_does_not_grow_a_rate_the_client_does_not_use() -> None:
    ctrl = controller(start=20.0)
    seconds = drive(ctrl, until_s=10.0, demand_per_s=30.0)
    # Past the first window it grows no more: at most what slow start reached in that
    # window, or HEADROOM times the rate used, whichever is higher.
    assert len({rate for _, rate, _, _ in seconds}) == 1
    warm = 20.0 * 2 ** (WINDOW_S / SLOW_START_DOUBLING_S)
    assert ctrl.rate_per_s <= max(HEADROOM * 30.0, warm) * 1.01


def test_it_goes_no_lower_than_one_a_second_when_everything_is_throttled() -> None:
    ctrl = controller(start=50.0)
    for i in range(1, 400):
        ctrl.answered(i * 0.05, sent_s=i * 0.05 - 0.001, signal=Signal.THROTTLED)
    assert ctrl.rate_per_s == 1.0


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("auto", None), ("AUTO", None), ("auto:800", 800.0), (" auto:0.5 ", 0.5),
], ids=["auto", "case", "ceiling", "fraction"])
def test_parse_auto(text: str, expected: float | None) -> None:
    assert parse_auto(text) == expected


@pytest.mark.parametrize("text", ["auto:0", "auto:-1", "auto:abc", "auto:", "auto:inf"])
def test_parse_auto_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="ceiling"):
        parse_auto(text)


def test_auto_rate_of_settings() -> None:
    base = settings_for("http://127.0.0.1:1/api")
    assert auto_rate_of(base) is None
    auto = dataclasses.replace(base, rate="auto:300", rate_start_per_s=500.0)
    assert auto_rate_of(auto) == AutoRate(300.0, 300.0)
    assert auto_rate_of(dataclasses.replace(base, rate="auto")) == AutoRate(20.0, 10_000.0)
    assert worker_share(dataclasses.replace(base, rate="auto:300"), 3)["rate"] == "auto:100"


RUN = ["run", "--workers", "1", "--quiet"]


@pytest.mark.parametrize(("args", "env", "expect"), [
    (["--rate", "auto:0"], {}, "greater than 0"),
    (["--rate", "auto:-1"], {}, "greater than 0"),
    (["--rate", "auto:abc"], {}, "must be a number"),
    (["--rate", "auto", "--pace", "original"], {}, "load test"),
    (["--rate", "auto", "--duration", "10s"], {}, "load test"),
    ([], {"REPLAYER_RATE": "auto", "REPLAYER_RATE_SCHEDULE": "10..20/5s"}, "load test"),
    ([], {"REPLAYER_RATE": "auto:abc"}, "must be a number"),
    ([], {"REPLAYER_RATE": "fast"}, "expected auto or auto:MAX"),
    (["--rate", "50"], {"REPLAYER_RATE": "auto"}, "choose one"),
], ids=["zero", "negative", "not-a-number", "pace-original", "duration", "schedule",
        "env-bad", "env-not-auto", "with-a-number"])
def test_bad_auto_settings_exit_2(tmp_path: Path, args: list[str], env: dict[str, str],
                                  expect: str) -> None:
    data = generated(tmp_path / "in.ndjson", records=3, users=2)
    result = CliRunner().invoke(main, [*RUN, str(data), "--out", str(tmp_path / "o"), *args],
                                env=env)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert expect in result.output
    assert "Traceback" not in result.output


def test_rate_auto_in_the_config_file_is_read(tmp_path: Path) -> None:
    from replayer.config import load_settings

    config = tmp_path / "config.toml"
    config.write_text('[send]\nrate = "auto:500"\nrate_start_per_s = 5.0\n', encoding="utf-8")
    settings = load_settings(flags={}, env={}, config_path=config)
    assert auto_rate_of(settings) == AutoRate(5.0, 500.0)


# --- 429 causes and what they do to a record -----------------------------------------------


def body(message: str) -> bytes:
    return b'{"response":[{"success":false,"error":{"message":"' + message.encode() + b'"}}]}'


@pytest.mark.parametrize(("message", "cause"), [
    ("Request failed due to concurrent requests to the same profile ID", LimitCause.PROFILE_LOCK),
    ("Too many requests in development mode: at most one per second per user",
     LimitCause.DEV_MODE),
    (THROTTLED, LimitCause.THROTTLED),
    ("Too many requests", LimitCause.THROTTLED),
    ("", LimitCause.THROTTLED),
], ids=["lock", "devmode", "emulator-limit", "plain", "no-message"])
def test_429_causes(message: str, cause: LimitCause) -> None:
    assert limit_cause(message) is cause
    [outcome] = classify(Attempt(429, body(message) if message else None), 1)
    assert (outcome.verdict, outcome.kind, outcome.limit) == (Verdict.RETRYABLE,
                                                              "rate_limited", cause)


def answers_of(*outcomes: Outcome) -> Answers:
    answers = Answers.unsent(len(outcomes))
    answers.outcomes[:] = outcomes
    answers.delivered = all(o.verdict is Verdict.DELIVERED for o in outcomes)
    return answers


def test_signal_of_counts_429s_by_cause() -> None:
    limits = LimitCounts()
    throttled = classify(Attempt(429, body(THROTTLED)), 1)[0]
    lock = classify(Attempt(429, body("concurrent requests to the same profile ID")), 1)[0]
    ok = classify(Attempt(200, b'{"response":[{"success":true}]}'), 1)[0]
    server = classify(Attempt(503, None), 1)[0]
    assert signal_of(answers_of(throttled, throttled), limits) is Signal.THROTTLED
    assert signal_of(answers_of(lock), limits) is Signal.NEUTRAL
    assert signal_of(answers_of(ok, ok), limits) is Signal.OK
    assert signal_of(answers_of(server), limits) is Signal.NEUTRAL
    assert signal_of(Answers.unsent(2), limits) is None
    assert limits.take_window() == {"throttled": 1, "profile_lock": 1}
    assert limits.take_window() == {}


THROTTLE = Answer(classify(Attempt(429, body(THROTTLED)), 1)[0], None)
LOCK = Answer(classify(Attempt(429, body("concurrent requests to the same profile")), 1)[0], None)
RULES = Rules(RetryPolicy(max_attempts=2, base_s=1.0, max_s=8.0, jitter=0.0),
              throttle_wait_max_s=60.0)


def work(attempts: int, *, free: int = 0, throttled_s: float | None = None) -> Work:
    session = Session("f", 1, "u", None, b"{}", b"{}")
    return Work(session, attempts=attempts, free_attempts=free, throttled_s=throttled_s)


@pytest.mark.parametrize(("w", "a", "rules", "now_s", "expected"), [
    (work(2), THROTTLE, RULES, 0.0, RetryIn(1.0, free=True, throttled=True)),
    (work(9, free=8, throttled_s=0.0), THROTTLE, RULES, 59.0,
     RetryIn(1.0, free=True, throttled=True)),
    (work(2), THROTTLE, dataclasses.replace(RULES, paced_throttles=True), 0.0,
     RetryIn(0.0, free=True, throttled=True)),
    (work(2, throttled_s=0.0), THROTTLE, RULES, 60.0, Failed),
    (work(2), THROTTLE, dataclasses.replace(RULES, throttle_wait_max_s=0.0), 0.0, Failed),
    (work(2), LOCK, RULES, 0.0, Failed),
    (work(1), LOCK, RULES, 0.0, RetryIn(1.0)),
], ids=["throttle-free", "still-within-the-wait", "paced", "wait-used-up", "wait-0",
        "lock-counts", "lock-backoff"])
def test_decide_on_429s(w: Work, a: Answer, rules: Rules, now_s: float,
                        expected: object) -> None:
    decision = decide(w, a, rules=rules, server_down=False, rng=random.Random(1), now_s=now_s)
    if isinstance(expected, type):
        assert isinstance(decision, expected)
    else:
        assert decision == expected


# --- the emulator's limit ------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "steps"), [
    ("400", ((0.0, 400.0),)), ("400,150@14s", ((0.0, 400.0), (14.0, 150.0))),
    ("50, 20@2.5", ((0.0, 50.0), (2.5, 20.0))),
], ids=["one", "change", "spaces"])
def test_limit_parses(spec: str, steps: tuple[tuple[float, float], ...]) -> None:
    assert RateLimit.parse(spec).steps == steps


@pytest.mark.parametrize("spec", ["0", "-5", "abc", "400,150", "400,150@x", "400,150@1s,9@0s"])
def test_bad_limits_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        RateLimit.parse(spec)


def test_the_bucket_holds_its_rate_and_follows_a_change() -> None:
    bucket = TokenBucket(RateLimit(((0.0, 100.0), (10.0, 50.0)), burst_s=0.1))
    granted = [sum(bucket.take(s + i / 1000) for i in range(1000)) for s in range(20)]
    assert all(95 <= n <= 111 for n in granted[:10]), granted
    assert all(45 <= n <= 56 for n in granted[11:]), granted


def test_emulate_refuses_a_bad_limit() -> None:
    result = CliRunner().invoke(main, ["emulate", "--limit-rps", "auto"])
    assert result.exit_code == 2 and "--limit-rps" in result.output


# --- end to end ----------------------------------------------------------------------------


async def run_auto(tmp_path: Path, url: str, **overrides: Any) -> Any:
    data = generated(tmp_path / "in.ndjson", records=overrides.pop("records", 1500),
                     users=overrides.pop("users", 600))
    out = tmp_path / "out"
    out.mkdir()
    settings = settings_for(url, rate="auto", **overrides)
    report = await replay(settings, [str(data)], out, control=RunControl(),
                          rng=random.Random(3))
    return report, out


@pytest.mark.parametrize("batch", [False, True], ids=["no-batch", "batch"])
async def test_a_limit_it_is_not_told_loses_nothing(
    start_emulator: StartEmulator, tmp_path: Path, batch: bool
) -> None:
    emulator = await start_emulator(limit=RateLimit(((0.0, 300.0),), burst_s=0.2))
    extra = {"batch_users": 2, "batch_actions": 2} if batch else {}
    report, out = await run_auto(tmp_path, emulator.url, batch=batch, concurrency=16,
                                 records=800, users=400, **extra)

    assert report.exit_code == ExitCode.OK, report.summary
    results, failures = read_rows(out / RESULTS), read_rows(out / FAILURES)
    assert len(results) == 800 and not failures
    summary = report.summary
    assert summary.throttled_share is not None and summary.throttled_share <= 0.10
    state = await emulator.state()
    assert state["counters"]["throttled"] >= 1  # the limit was met, and found
    assert summary.steady_rate_per_s is not None
    assert 0.3 * 300 <= summary.steady_rate_per_s <= 2.0 * 300
    rows = read_metrics(out / METRICS).rows
    assert all(r.rate_per_s is not None and r.rate_state for r in rows)
    assert sum(r.limited_by_cause.get("throttled", 0) for r in rows) == \
        state["counters"]["throttled"]


async def test_every_request_429_pauses_like_an_outage_and_loses_nothing(
    start_emulator: StartEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rate_control, "STALE_S", 0.5)  # find the rate again soon after
    # Everything throttled for the first 1.5 s: an outage (pause, probes); then all goes.
    emulator = await start_emulator(limit=RateLimit(((0.0, 0.001), (1.5, 10_000.0)),
                                                    burst_s=0.001))
    report, out = await run_auto(tmp_path, emulator.url, batch=False, concurrency=4,
                                 records=40, users=10, max_attempts=2,
                                 outage_window_s=0.3, outage_probe_max_s=0.2)

    assert report.exit_code == ExitCode.OK, report.summary
    assert report.summary.outages == 1
    assert len(read_rows(out / RESULTS)) == 40 and not read_rows(out / FAILURES)


async def test_without_auto_a_throttled_record_still_waits_without_using_attempts(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator(faults=FaultConfig(status_429_retry_after=0.5,
                                                       retry_after_s=0), seed=2)
    data = generated(tmp_path / "in.ndjson", records=60, users=20)
    (tmp_path / "out").mkdir()
    settings = settings_for(emulator.url, batch=False, max_attempts=1, concurrency=4)
    report = await replay(settings, [str(data)], tmp_path / "out", control=RunControl(),
                          rng=random.Random(3))
    assert report.exit_code == ExitCode.OK, report.summary
    assert len(read_rows(tmp_path / "out" / RESULTS)) == 60


# --- what a user sees ----------------------------------------------------------------------


def test_the_progress_line_shows_the_rate_and_what_the_controller_does() -> None:
    from replayer.observe.live import Totals
    from replayer.observe.progress import format_status

    totals = Totals()
    row = {"elapsed_s": 1.0, "rate_per_s": 150.4, "rate_state": "holding",
           "limited_by_cause": {"throttled": 2}}
    totals.add("w0", row)
    totals.add("w1", {**row, "rate_state": "backing off"})
    assert "rate auto 301/s backing off, holding" in format_status(totals)
    assert totals.limited_by_cause == {"throttled": 4}
    assert "rate auto" not in format_status(Totals())


async def test_the_report_charts_the_rate(start_emulator: StartEmulator, tmp_path: Path) -> None:
    from replayer.report.build import build_report

    emulator = await start_emulator(limit=RateLimit(((0.0, 200.0),), burst_s=0.2))
    report, out = await run_auto(tmp_path, emulator.url, batch=False, concurrency=8,
                                 records=300, users=100)
    assert report.exit_code == ExitCode.OK
    files = build_report(out)
    assert files.rate is not None and files.rate.stat().st_size > 1000
    assert 'id="chart-rate"' in files.html.read_text(encoding="utf-8")
