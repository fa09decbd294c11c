"""Latency histogram: percentiles within 1% of exact, empty, merge; run counters."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from replayer.engine.stats import RunStats
from replayer.observe.stats import Histogram

PERCENTILES = [0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100]


def exact(values: list[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value with at least p% of values at or below."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * p / 100.0)) - 1]


def histogram(values: list[float]) -> Histogram:
    h = Histogram()
    for v in values:
        h.add(v)
    return h


Sampler = Callable[[random.Random], float]
DISTRIBUTIONS: list[tuple[str, Sampler, int]] = [
    ("uniform-ms", lambda r: r.uniform(1.0, 1000.0), 20_000),
    ("lognormal", lambda r: r.lognormvariate(3.0, 1.5), 20_000),
    ("sub-ms", lambda r: r.uniform(0.05, 1.0), 5_000),
    ("long-tail", lambda r: r.paretovariate(1.2) * 5.0, 20_000),
    ("seconds", lambda r: r.uniform(1_000.0, 60_000.0), 5_000),
    ("few", lambda r: r.uniform(1.0, 100.0), 7),
    ("one", lambda r: 42.0, 1),
    ("constant", lambda r: 12.5, 1000),
    ("integers", lambda r: float(r.randint(1, 50)), 10_000),
]


@pytest.mark.parametrize("seed", [1, 2, 3], ids=lambda s: f"seed-{s}")
@pytest.mark.parametrize(("name", "sample", "n"), DISTRIBUTIONS, ids=[d[0] for d in DISTRIBUTIONS])
def test_percentiles_within_one_percent(name: str, sample: Sampler, n: int, seed: int) -> None:
    rng = random.Random(seed)
    values = [sample(rng) for _ in range(n)]
    h = histogram(values)
    assert h.count == n
    assert h.max_value == max(values)
    for p in PERCENTILES:
        got, want = h.percentile(p), exact(values, p)
        assert got is not None
        assert abs(got - want) <= 0.01 * want, (p, got, want)


def test_percentile_of_100_is_the_maximum() -> None:
    values = [3.0, 1.0, 1234.5678, 2.0]
    assert histogram(values).percentile(100) == 1234.5678


def test_empty_histogram() -> None:
    h = Histogram()
    assert h.count == 0
    assert all(h.percentile(p) is None for p in PERCENTILES)
    assert RunStats().latency_summary() == {"p50": None, "p90": None, "p99": None, "max": None}


@pytest.mark.parametrize(
    ("left_n", "right_n"), [(0, 0), (0, 500), (500, 0), (1000, 3000), (1, 1)],
    ids=["both-empty", "into-empty", "from-empty", "uneven", "one-each"],
)
def test_merge_equals_one_histogram_of_all_values(left_n: int, right_n: int) -> None:
    rng = random.Random(left_n * 7 + right_n)
    left_values = [rng.lognormvariate(2.0, 1.0) for _ in range(left_n)]
    right_values = [rng.lognormvariate(4.0, 0.5) for _ in range(right_n)]
    left, right = histogram(left_values), histogram(right_values)
    left.merge(right)
    whole = histogram(left_values + right_values)
    assert left.count == whole.count == left_n + right_n
    assert left.max_value == whole.max_value
    for p in PERCENTILES:
        assert left.percentile(p) == whole.percentile(p)
    assert right.count == right_n  # the merged-in histogram is left as it was


def test_run_stats_counts_and_summarises() -> None:
    stats = RunStats()
    for ms in (10.0, 20.0, 30.0, 40.0):
        stats.delivered(latency_ms=ms)
    stats.failed("timeout")
    stats.failed("timeout")
    stats.failed("rejected")
    assert dict(stats.by_status) == {"delivered": 4, "failed": 3}
    assert dict(stats.by_kind) == {"timeout": 2, "rejected": 1}
    summary = stats.latency_summary()
    assert summary["max"] == 40.0
    assert summary["p50"] == pytest.approx(20.0, rel=0.01)
    assert summary["p99"] == pytest.approx(40.0, rel=0.01)


@pytest.mark.parametrize("n", [1, 4095, 4096, 4097, 10_000], ids=lambda n: f"n-{n}")
def test_values_kept_raw_count_as_added_one_at_a_time(n: int) -> None:
    """Raw values are counted into buckets in bulk (every FOLD_EVERY adds and before any
    read): the buckets, count, sum and max are those of adding values one at a time,
    values below the first bucket (0.01 ms, zero, negative) included."""
    rng = random.Random(n)
    values = [rng.choice([0.0, -1.0, 0.005, math.nextafter(0.01, 0.0), 0.01, 12.5]) if i % 7 == 0
              else rng.lognormvariate(1.0, 2.0) for i in range(n)]
    h = histogram(values)
    want: dict[int, int] = {}
    for v in values:
        key = -1 if v < 0.01 else int(math.log(v * 100.0) / math.log(1.01))
        want[key] = want.get(key, 0) + 1
    total = 0.0
    for v in values:
        total += v
    assert dict(h.buckets) == want
    assert h.count == n
    assert h.total == total
    assert h.max_value == max(0.0, *values)
    h.add(1e6)  # adds after a read still count
    assert h.count == n + 1
    assert h.max_value == 1e6


def test_a_value_added_with_a_count_is_that_many_adds_between_raw_ones() -> None:
    """The records of one request share its latency (`add(v, count)`): the same buckets,
    count and max as adding it `count` times, among values still kept raw."""
    many, one = Histogram(), Histogram()
    for h in (many, one):
        h.add(3.0)
        h.add(0.005)
    many.add(250.0, 40)
    for _ in range(40):
        one.add(250.0)
    for h in (many, one):
        h.add(7.5)
    assert dict(many.buckets) == dict(one.buckets)
    assert (many.count, many.max_value) == (one.count, one.max_value) == (43, 250.0)
    assert many.total == pytest.approx(one.total)
    assert many.percentile(50) == one.percentile(50)
