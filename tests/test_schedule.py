"""Rate schedules: spec parsing, rate and count at stage edges, exact request times; OriginalPace."""

from __future__ import annotations

import dataclasses
import math
from itertools import pairwise

import pytest

from replayer.config.duration import parse_duration
from replayer.engine.schedule import OriginalPace, RateSchedule, Stage, parse_rate

CHAIN = "100..1000/60s,1000/300s,1000..0/30s"


def forever(rate: float) -> Stage:
    return Stage(rate, rate, None)


# ---- parse_duration ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("250ms", 0.25),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("2h0m5s500ms", 7205.5),
        ("1.5h", 5400.0),
        ("0.5s", 0.5),
        (".5s", 0.5),
        (" 10m ", 600.0),
    ],
    ids=["s", "m", "h", "ms", "h+m", "m+s", "all-units", "fraction-h", "fraction-s",
         "leading-dot", "padded"],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "bad duration ''"),
        ("10", "'10'"),
        ("5x", "'5x'"),
        ("0s", "greater than 0"),
        ("0h0m", "greater than 0"),
        ("-5s", "'-5s'"),
        ("30m1h", "'30m1h'"),
        ("1h 30m", "'1h 30m'"),
        ("10S", "'10S'"),
        ("1.2.3s", "'1.2.3s'"),
        ("s", "'s'"),
    ],
    ids=["empty", "no-unit", "bad-unit", "zero", "zero-compound", "negative", "out-of-order",
         "inner-space", "upper-case", "two-dots", "unit-only"],
)
def test_parse_duration_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="ms, s, m, h|greater than 0") as info:
        parse_duration(text)
    assert fragment in str(info.value)


# ---- parse_rate ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("spec", "stages", "total_s", "constant"),
    [
        ("250", (forever(250.0),), None, True),
        ("0.5", (forever(0.5),), None, True),
        ("100..1000/60s", (Stage(100.0, 1000.0, 60.0), forever(1000.0)), None, False),
        (CHAIN, (Stage(100.0, 1000.0, 60.0), Stage(1000.0, 1000.0, 300.0),
                 Stage(1000.0, 0.0, 30.0)), 390.0, False),
        ("250/60s,0", (Stage(250.0, 250.0, 60.0),), 60.0, False),
        ("250/1m,500", (Stage(250.0, 250.0, 60.0), forever(500.0)), None, False),
        ("250/60s,250", (Stage(250.0, 250.0, 60.0), forever(250.0)), None, True),
        ("250/60s", (Stage(250.0, 250.0, 60.0), forever(250.0)), None, True),
        ("1000..0/30s", (Stage(1000.0, 0.0, 30.0),), 30.0, False),
        ("0..100/10s", (Stage(0.0, 100.0, 10.0), forever(100.0)), None, False),
        ("100/1h30m", (Stage(100.0, 100.0, 5400.0), forever(100.0)), None, True),
        ("100/250ms,0", (Stage(100.0, 100.0, 0.25),), 0.25, False),
        ("0/10s,100", (Stage(0.0, 0.0, 10.0), forever(100.0)), None, False),
        ("100/10s,0/5s", (Stage(100.0, 100.0, 10.0), Stage(0.0, 0.0, 5.0)), 15.0, False),
        (" 100..200 / 10s , 200 ", (Stage(100.0, 200.0, 10.0), forever(200.0)), None, False),
    ],
    ids=["constant", "constant-fraction", "ramp-then-hold", "chain-ends-at-0", "hold-then-stop",
         "hold-then-other-rate", "same-rate-twice", "one-hold-stage", "ramp-down-to-0",
         "ramp-from-0", "compound-duration", "ms-duration", "leading-pause", "trailing-pause",
         "whitespace"],
)
def test_parse_rate(
    spec: str, stages: tuple[Stage, ...], total_s: float | None, constant: bool
) -> None:
    schedule = parse_rate(spec)
    assert schedule.stages == stages
    assert schedule == RateSchedule(stages)
    assert schedule.total_duration_s == total_s
    assert schedule.constant is constant


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "stage 1 '': empty"),
        ("abc", "'abc' is not a rate"),
        ("-5", "'-5' is not a rate"),
        ("1e3", "'1e3' is not a rate"),
        ("inf", "'inf' is not a rate"),
        ("nan/10s", "'nan' is not a rate"),
        ("100..abc/10s", "'abc' is not a rate"),
        ("100....200/5s", "'..200' is not a rate"),
        ("100..1000", "a ramp needs a duration"),
        ("100,200", "stage 1 '100': only the last stage may omit its duration"),
        ("100/0s", "stage 1 '100/0s': bad duration '0s': must be greater than 0"),
        ("100/5x", "bad duration '5x'"),
        ("100/10s/5s", "bad duration '10s/5s'"),
        ("100/", "bad duration ''"),
        ("100/60s,,200", "stage 2 '': empty"),
        ("100/60s,", "stage 2 '': empty"),
        ("0", "plans no requests"),
        ("0/10s", "plans no requests"),
        ("0..0/10s,0", "plans no requests"),
    ],
    ids=["empty", "word", "negative", "exponent", "inf", "nan", "bad-ramp-end", "four-dots",
         "ramp-without-duration", "hold-forever-not-last", "zero-duration", "bad-unit",
         "two-slashes", "missing-duration", "empty-middle-stage", "trailing-comma", "only-zero",
         "zero-for-a-while", "zero-ramp-then-stop"],
)
def test_parse_rate_rejects(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rate(spec)
    assert str(info.value).startswith(f"bad rate {spec!r}: ")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "stages",
    [
        (),
        (forever(100.0), Stage(100.0, 100.0, 10.0)),
        (Stage(100.0, 200.0, None),),
        (forever(0.0),),
        (Stage(-1.0, 100.0, 10.0),),
        (Stage(math.nan, 100.0, 10.0),),
        (Stage(100.0, math.inf, 10.0),),
        (Stage(100.0, 100.0, 0.0),),
        (Stage(100.0, 100.0, math.inf),),
    ],
    ids=["no-stages", "forever-not-last", "forever-ramp", "forever-at-0", "negative-rate",
         "nan-rate", "inf-rate", "zero-duration", "inf-duration"],
)
def test_rate_schedule_rejects_bad_stages(stages: tuple[Stage, ...]) -> None:
    with pytest.raises(ValueError):
        RateSchedule(stages)


def test_rate_schedule_value_ends_after_its_last_stage() -> None:
    # The value is literal: the hold-the-last-rate rule belongs to the spec grammar.
    schedule = RateSchedule((Stage(100.0, 1000.0, 60.0),))
    assert schedule.total_duration_s == 60.0
    assert schedule.time_of(33_000) is None
    assert schedule.time_of(32_999) is not None


def test_schedules_are_frozen() -> None:
    schedule = parse_rate("250")
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.stages = ()  # type: ignore[misc]


# ---- rate_at and count_by ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("t_s", "rate", "count"),
    [
        (-1.0, 0.0, 0.0),
        (0.0, 100.0, 0.0),
        (30.0, 550.0, 9_750.0),
        (59.999, 999.985, 32_999.0),
        (60.0, 1000.0, 33_000.0),
        (200.0, 1000.0, 173_000.0),
        (360.0, 1000.0, 333_000.0),
        (375.0, 500.0, 344_250.0),
        (390.0, 0.0, 348_000.0),
        (1e6, 0.0, 348_000.0),
    ],
    ids=["before-start", "start", "mid-ramp", "just-before-ramp-end", "ramp-end",
         "mid-hold", "hold-end", "mid-ramp-down", "end", "long-after"],
)
def test_rate_and_count_along_a_chain(t_s: float, rate: float, count: float) -> None:
    schedule = parse_rate(CHAIN)
    assert schedule.rate_at(t_s) == pytest.approx(rate, rel=1e-9, abs=1e-9)
    assert schedule.count_by(t_s) == pytest.approx(count, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    ("spec", "t_s", "rate", "count"),
    [
        ("250", 0.0, 250.0, 0.0),
        ("250", 10.0, 250.0, 2_500.0),
        ("0..100/10s", 0.0, 0.0, 0.0),
        ("0..100/10s", 10.0, 100.0, 500.0),
        ("0..100/10s", 11.0, 100.0, 600.0),
        ("0/10s,100", 5.0, 0.0, 0.0),
        ("0/10s,100", 10.0, 100.0, 0.0),
        ("0/10s,100", 12.0, 100.0, 200.0),
        ("250/60s,0", 60.0, 0.0, 15_000.0),
    ],
    ids=["constant-start", "constant-10s", "ramp-from-0-start", "ramp-from-0-end",
         "ramp-from-0-hold", "pause", "pause-end", "after-pause", "stop"],
)
def test_rate_and_count_at_edges(spec: str, t_s: float, rate: float, count: float) -> None:
    schedule = parse_rate(spec)
    assert schedule.rate_at(t_s) == pytest.approx(rate)
    assert schedule.count_by(t_s) == pytest.approx(count)


# ---- time_of -------------------------------------------------------------------------------

def _ramp_down_time(k: int) -> float:
    """1000..0/30s: count(t) = 1000 t - 50/3 t^2, solved for t (the earlier root)."""
    return 30.0 - 0.03 * math.sqrt(1e6 - 200.0 * k / 3.0)


@pytest.mark.parametrize(
    ("spec", "k", "expected_s"),
    [
        ("250", 0, 0.0),
        ("250", 1, 0.004),
        ("250", 1_000_000, 4_000.0),
        ("100..1000/60s", 1, (-100 + math.sqrt(100**2 + 30)) / 15),
        ("100..1000/60s", 9_750, 30.0),
        ("100..1000/60s", 33_000, 60.0),
        ("100..1000/60s", 34_000, 61.0),
        ("1000..0/30s", 1, _ramp_down_time(1)),
        ("1000..0/30s", 7_500, _ramp_down_time(7_500)),
        ("1000..0/30s", 14_999, _ramp_down_time(14_999)),
        ("1000..0/30s", 15_000, None),
        ("0..100/10s", 0, 0.0),
        ("0..100/10s", 1, math.sqrt(0.2)),
        ("0..100/10s", 500, 10.0),
        ("0..100/10s", 600, 11.0),
        (CHAIN, 333_000, 360.0),
        (CHAIN, 344_250, 375.0),
        (CHAIN, 347_999, 390.0 - math.sqrt(2 * 30 / 1000)),
        (CHAIN, 348_000, None),
        ("250/60s,0", 14_999, 59.996),
        ("250/60s,0", 15_000, None),
        ("0/10s,100", 0, 0.0),
        ("0/10s,100", 1, 10.01),
        ("0/10s,100", 100, 11.0),
        ("100/10s,0/5s,100", 999, 9.99),
        ("100/10s,0/5s,100", 1_000, 10.0),
        ("100/10s,0/5s,100", 1_001, 15.01),
    ],
    ids=["const-0", "const-1", "const-million", "ramp-1", "ramp-mid", "ramp-end",
         "hold-after-ramp", "down-1", "down-half", "down-last", "down-past-end",
         "from-0-first", "from-0-second", "from-0-end", "from-0-hold", "chain-hold-end",
         "chain-mid-down", "chain-last", "chain-past-end", "stop-last", "stop-past-end",
         "pause-first-at-0", "pause-then-1", "pause-then-100", "gap-before", "gap-earliest",
         "gap-after"],
)
def test_time_of_is_exact(spec: str, k: int, expected_s: float | None) -> None:
    got = parse_rate(spec).time_of(k)
    if expected_s is None:
        assert got is None
    else:
        assert got == pytest.approx(expected_s, rel=1e-9, abs=1e-12)


SCHEDULES = ["250", "100..1000/60s", "1000..0/30s", "0..100/10s", CHAIN, "250/60s,0",
             "0/10s,100", "100/10s,0/5s,100", "5000..50/20s,50..7000/10s,3"]


@pytest.mark.parametrize("spec", SCHEDULES, ids=SCHEDULES)
def test_time_of_inverts_count_by_and_is_monotonic(spec: str) -> None:
    schedule = parse_rate(spec)
    times = [schedule.time_of(k) for k in range(100_000)]
    planned = [t for t in times if t is not None]
    assert times[: len(planned)] == planned  # once None, None ever after
    assert all(a < b for a, b in pairwise(planned))
    end = schedule.total_duration_s
    for k in range(0, len(planned), 997):
        assert schedule.count_by(planned[k]) == pytest.approx(k, abs=1e-6 * max(1, k))
        assert end is None or planned[k] <= end


@pytest.mark.parametrize(
    ("spec", "requests"),
    [("1000..0/30s", 15_000), ("250/60s,0", 15_000), ("100/10s,0/5s", 1_000),
     ("0..1000/1s,0..0/1s,1000..0/1s", 1_000), ("3..7/1s,0", 5)],
    ids=["ramp-down", "hold-then-stop", "trailing-pause", "up-pause-down", "few"],
)
def test_a_finite_schedule_plans_its_integral(spec: str, requests: int) -> None:
    schedule = parse_rate(spec)
    assert schedule.time_of(requests - 1) is not None
    assert schedule.time_of(requests) is None
    assert schedule.count_by(math.inf) == pytest.approx(requests)


def test_a_minute_of_100_to_1000_plans_33000_requests() -> None:
    schedule = parse_rate("100..1000/60s")
    in_first_minute = 0
    while (t := schedule.time_of(in_first_minute)) is not None and t < 60.0:
        in_first_minute += 1
    assert abs(in_first_minute - 33_000) <= 1
    assert schedule.count_by(60.0) == pytest.approx(33_000, abs=1e-6)


# ---- OriginalPace --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("speed", "first_s", "record_s", "offset_s"),
    [
        (1.0, 100.0, 100.0, 0.0),
        (1.0, 100.0, 105.5, 5.5),
        (2.0, 100.0, 110.0, 5.0),
        (0.5, 0.0, 1.0, 2.0),
        (10.0, 1_700_000_000.0, 1_700_003_600.0, 360.0),
        (1.0, 100.0, 90.0, 0.0),
    ],
    ids=["first", "real-time", "twice-as-fast", "half-speed", "an-hour-at-10x", "older-clamps"],
)
def test_original_pace_offsets(
    speed: float, first_s: float, record_s: float, offset_s: float
) -> None:
    assert OriginalPace(speed).offset_s(first_s, record_s) == pytest.approx(offset_s)


@pytest.mark.parametrize(
    "speed", [0.0, -1.0, math.nan, math.inf], ids=["zero", "negative", "nan", "inf"]
)
def test_original_pace_rejects_bad_speed(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        OriginalPace(speed)
