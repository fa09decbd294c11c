"""RetryPolicy and Retry-After: delays per attempt, jitter, caps, giving up; no sleeping."""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from replayer.engine.retry import MAX_RETRY_AFTER_S, RetryPolicy, parse_retry_after

SEEDS = range(500)


# ---- backoff -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 1.0, 3.0), (2, 2.0, 6.0), (3, 4.0, 12.0), (4, 8.0, 24.0)],
    ids=["after-1:2+-1", "after-2:4+-2", "after-3:8+-4", "after-4:16+-8"],
)
def test_default_delays_follow_leanplum_example(attempts: int, low: float, high: float) -> None:
    policy = RetryPolicy()
    delays = [policy.next_delay(attempts, random.Random(seed)) for seed in SEEDS]
    assert all(d is not None and low <= d <= high for d in delays)
    # The jitter really spreads the delays over the band, both sides of the centre.
    centre = (low + high) / 2
    assert min(d for d in delays if d is not None) < centre - (centre - low) / 2
    assert max(d for d in delays if d is not None) > centre + (high - centre) / 2


@pytest.mark.parametrize(
    ("policy", "attempts", "expected"),
    [
        (RetryPolicy(jitter=0.0), 1, 2.0),
        (RetryPolicy(jitter=0.0), 2, 4.0),
        (RetryPolicy(jitter=0.0), 3, 8.0),
        (RetryPolicy(jitter=0.0), 4, 16.0),
        (RetryPolicy(jitter=0.0, base_s=0.5), 3, 2.0),
        (RetryPolicy(jitter=0.0, max_s=5.0), 3, 5.0),
        (RetryPolicy(jitter=0.0, max_s=60.0, max_attempts=20), 10, 60.0),
        (RetryPolicy(jitter=0.0, max_s=60.0, max_attempts=20), 19, 60.0),
        (RetryPolicy(jitter=0.0, base_s=0.0), 2, 0.0),
    ],
    ids=["1", "2", "3", "4", "base-0.5", "cap-5", "cap-60", "cap-60-late", "base-0"],
)
def test_no_jitter_gives_exact_delays(policy: RetryPolicy, attempts: int, expected: float) -> None:
    for seed in range(5):
        assert policy.next_delay(attempts, random.Random(seed)) == expected


@pytest.mark.parametrize(
    ("policy", "attempts"),
    [
        (RetryPolicy(), 5),
        (RetryPolicy(), 6),
        (RetryPolicy(max_attempts=1), 1),
        (RetryPolicy(max_attempts=3), 3),
        (RetryPolicy(max_attempts=3, jitter=0.0), 100),
    ],
    ids=["default-5", "past-the-end", "one-attempt-only", "three", "far-past"],
)
def test_gives_up_at_max_attempts(policy: RetryPolicy, attempts: int) -> None:
    rng = random.Random(0)
    assert policy.next_delay(attempts, rng) is None
    assert policy.next_delay(attempts, rng, retry_after_s=1.0) is None


def test_last_retry_before_max_attempts_still_waits() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.next_delay(2, random.Random(0)) is not None
    assert policy.next_delay(3, random.Random(0)) is None


@pytest.mark.parametrize("jitter", [0.0, 0.1, 0.5, 1.0], ids=lambda j: f"jitter-{j}")
def test_delays_are_never_negative_and_within_jitter(jitter: float) -> None:
    policy = RetryPolicy(jitter=jitter, max_attempts=10, max_s=10_000.0)  # the cap stays out
    for seed in SEEDS:
        for attempts in range(1, 10):
            centre = policy.base_s * 2 ** (attempts - 1)
            delay = policy.next_delay(attempts, random.Random(seed))
            assert delay is not None
            assert 0.0 <= delay
            assert centre * (1 - jitter) - 1e-9 <= delay <= centre * (1 + jitter) + 1e-9


def test_same_seed_same_delays() -> None:
    policy = RetryPolicy(max_attempts=10)
    a, b, c = random.Random(42), random.Random(42), random.Random(43)
    first = [policy.next_delay(n, a) for n in range(1, 10)]
    second = [policy.next_delay(n, b) for n in range(1, 10)]
    other = [policy.next_delay(n, c) for n in range(1, 10)]
    assert first == second
    assert first != other


def test_policy_is_a_frozen_value() -> None:
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 9  # type: ignore[misc]
    assert policy == RetryPolicy(max_attempts=5, base_s=2.0, max_s=60.0, jitter=0.5)


def test_jittered_delay_never_exceeds_max_s() -> None:
    policy = RetryPolicy(max_attempts=20, max_s=60.0, jitter=0.5)
    delays = [policy.next_delay(12, random.Random(seed)) or 0.0 for seed in SEEDS]
    assert max(delays) <= policy.max_s


# ---- Retry-After ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("retry_after_s", "expected"),
    [
        (0.0, 0.0),
        (1.5, 1.5),
        (30.0, 30.0),
        (120.0, 120.0),  # longer than the backoff would wait, and longer than max_s
        (MAX_RETRY_AFTER_S, MAX_RETRY_AFTER_S),
        (MAX_RETRY_AFTER_S + 1, MAX_RETRY_AFTER_S),
        (86_400.0, MAX_RETRY_AFTER_S),
        (float("inf"), MAX_RETRY_AFTER_S),
        (-5.0, 0.0),
    ],
    ids=["zero", "fraction", "30", "over-max_s", "at-cap", "over-cap", "a-day", "inf",
         "negative"],
)
def test_retry_after_overrides_backoff(retry_after_s: float, expected: float) -> None:
    policy = RetryPolicy(max_s=60.0)
    for attempts in (1, 2, 4):
        for seed in range(20):
            delay = policy.next_delay(attempts, random.Random(seed), retry_after_s=retry_after_s)
            assert delay == expected


def test_retry_after_does_not_consume_randomness() -> None:
    rng = random.Random(7)
    RetryPolicy().next_delay(1, rng, retry_after_s=3.0)
    assert rng.random() == random.Random(7).random()


NOW = datetime(2024, 5, 17, 12, 0, 0, tzinfo=UTC).timestamp()


def http_date(offset_s: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + offset_s, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("5", 5.0),
        ("120", 120.0),
        ("  7 ", 7.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("100000", 100000.0),  # parsing does not cap; the policy does
        (http_date(90), 90.0),
        (http_date(0), 0.0),
        (http_date(-3600), 0.0),
        ("Fri, 17 May 2024 12:10:00 GMT", 600.0),
        ("Friday, 17-May-24 12:00:30 GMT", 30.0),
        ("garbage", None),
        ("", None),
        ("   ", None),
        ("5 seconds", None),
        ("Fri, 32 May 2024 12:00:00 GMT", None),
        (None, None),
    ],
    ids=["zero", "delta", "delta-120", "spaces", "fractional", "negative", "huge",
         "date-in-90s", "date-now", "date-past", "imf-fixdate", "rfc850-date", "garbage",
         "empty", "blank", "words", "impossible-date", "none"],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now_s=NOW) == expected


def test_parse_retry_after_date_is_relative_to_now() -> None:
    value = http_date(300)
    assert parse_retry_after(value, now_s=NOW) == 300.0
    assert parse_retry_after(value, now_s=NOW + 100) == 200.0
    assert parse_retry_after(value, now_s=NOW + 1000) == 0.0


@pytest.fixture
def non_utc_local_time() -> Iterator[None]:
    """Local time five hours behind UTC, restored afterwards."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "EST+5"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_parse_retry_after_asctime_date_is_gmt(non_utc_local_time: None) -> None:
    assert parse_retry_after("Fri May 17 12:01:00 2024", now_s=NOW) == 60.0
