"""throttle_shape: requests per ~100 ms window for a rate. No timing: that belongs in benchmarks."""

from __future__ import annotations

import random

import pytest

from replayer.engine.pacing import WINDOW_S, throttle_shape

# (rate per second, requests per window, window seconds)
SHAPE_CASES = [
    (1000.0, 100, 0.1),
    (5.0, 1, 0.2),
    (2.5, 1, 0.4),
    (1.0, 1, 1.0),
    (0.5, 1, 2.0),
    (10.0, 1, 0.1),
    (15.0, 2, 2 / 15),
    (123.0, 12, 12 / 123),
    (20_000.0, 2000, 0.1),
]


@pytest.mark.parametrize(
    ("rate", "count", "window_s"), SHAPE_CASES,
    ids=["1000", "5", "2.5", "1", "0.5", "10", "15-rounds-up", "123", "20000"],
)
def test_throttle_shape(rate: float, count: int, window_s: float) -> None:
    assert throttle_shape(rate) == (count, window_s)


@pytest.mark.parametrize("rate", [123.0, 1000.0, 5.0, 2.5, 17.0, 33.3, 1234.5],
                         ids=lambda r: f"rate-{r}")
def test_count_over_window_is_the_rate_exactly(rate: float) -> None:
    count, window_s = throttle_shape(rate)
    assert count / window_s == rate


def test_shape_for_many_rates() -> None:
    rng = random.Random(5)
    rates = [rng.uniform(0.1, 100_000.0) for _ in range(2000)] + list(range(1, 2001))
    for rate in rates:
        count, window_s = throttle_shape(rate)
        assert isinstance(count, int) and count >= 1
        # count / window == rate up to float rounding (one part in 10^15)
        assert count / window_s == pytest.approx(rate, rel=1e-12)
        if rate >= 1 / WINDOW_S:
            # windows stay near 100 ms: rounding the count moves them by at most a half
            assert abs(window_s - WINDOW_S) <= 0.5 / rate + 1e-12
        else:
            assert count == 1
