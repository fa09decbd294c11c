"""Thresholds: spec parsing, checks against filled histograms, no data, error rate and rps math."""

from __future__ import annotations

import pytest

from replayer.observe.stats import Histogram
from replayer.observe.thresholds import (
    Observed,
    Threshold,
    any_failed,
    evaluate,
    parse_threshold,
)


def hist(*values_ms: float) -> Histogram:
    h = Histogram()
    for v in values_ms:
        h.add(v)
    return h


def observed(
    *,
    scheduled: Histogram | None = None,
    service: Histogram | None = None,
    requests: int = 0,
    records: int = 0,
    failed: int = 0,
    elapsed_s: float = 0.0,
) -> Observed:
    return Observed(
        scheduled=scheduled if scheduled is not None else Histogram(),
        service=service if service is not None else Histogram(),
        requests=requests,
        records=records,
        failed=failed,
        elapsed_s=elapsed_s,
    )


# ---- parse ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("p50>100ms", Threshold("p50", ">", 100.0, "scheduled")),
        ("p90>=1s", Threshold("p90", ">=", 1000.0, "scheduled")),
        ("p95<250us", Threshold("p95", "<", 0.25, "scheduled")),
        ("p99<=500", Threshold("p99", "<=", 500.0, "scheduled")),
        ("p99.9>2.5s", Threshold("p99.9", ">", 2500.0, "scheduled")),
        ("p99.99>1000ms", Threshold("p99.99", ">", 1000.0, "scheduled")),
        ("max>5s", Threshold("max", ">", 5000.0, "scheduled")),
        ("mean>200ms", Threshold("mean", ">", 200.0, "scheduled")),
        ("p75>300", Threshold("p75", ">", 300.0, "scheduled")),
        ("p99.90>1", Threshold("p99.9", ">", 1.0, "scheduled")),
        ("scheduled.p99>800ms", Threshold("p99", ">", 800.0, "scheduled")),
        ("service.p99>200ms", Threshold("p99", ">", 200.0, "service")),
        ("service.max>=1s", Threshold("max", ">=", 1000.0, "service")),
        ("service.mean>.5", Threshold("mean", ">", 0.5, "service")),
        ("  p99 > 500 ms ", Threshold("p99", ">", 500.0, "scheduled")),
        ("error_rate>1%", Threshold("error_rate", ">", 0.01)),
        ("error_rate>=0.01", Threshold("error_rate", ">=", 0.01)),
        ("error_rate>0.5%", Threshold("error_rate", ">", 0.005)),
        ("error_rate>100%", Threshold("error_rate", ">", 1.0)),
        ("error_rate>0", Threshold("error_rate", ">", 0.0)),
        ("rps<900", Threshold("rps", "<", 900.0)),
        ("rps<=12.5", Threshold("rps", "<=", 12.5)),
        ("failed>0", Threshold("failed", ">", 0.0)),
        ("failed>=10", Threshold("failed", ">=", 10.0)),
    ],
    ids=["p50-ms", "p90-s", "p95-us", "p99-bare-ms", "p99.9", "p99.99", "max", "mean",
         "any-percentile", "percentile-normalised", "scheduled-view", "service-view",
         "service-max", "service-mean", "spaces", "error-percent", "error-fraction",
         "error-half-percent", "error-all", "error-any", "rps-lt", "rps-le", "failed-any",
         "failed-ten"],
)
def test_parse_threshold(spec: str, expected: Threshold) -> None:
    assert parse_threshold(spec) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("p99", "expected METRIC OP VALUE"),
        ("p99=500", "expected METRIC OP VALUE"),
        ("p99==500", "expected METRIC OP VALUE"),
        ("", "expected METRIC OP VALUE"),
        (">500", "no metric"),
        ("p99>", "bad value ''"),
        ("p99>-5", "bad value '-5'"),
        ("p99>>5", "bad value '>5'"),
        ("p99>5ms<", "bad value '5ms<'"),
        ("p99>abc", "bad value 'abc'"),
        ("p99>5m", "unit 'm'"),
        ("p99>5%", "unit '%'"),
        ("p100>5", "'p100' must be above p0 and below p100"),
        ("p0>5", "'p0'"),
        ("pmax>5", "unknown metric 'pmax'"),
        ("latency>5", "unknown metric 'latency'"),
        ("sched.p99>5", "unknown metric 'sched.p99'"),
        ("service.rps<5", "the view 'service' applies only to latency"),
        ("scheduled.error_rate>1%", "the view 'scheduled' applies only to latency"),
        ("error_rate>5", "a fraction is at most 1 (write 5% for percent)"),
        ("error_rate>101%", "at most 100%"),
        ("error_rate>1ms", "unit 'ms'"),
        ("rps<900/s", "bad value '900/s'"),
        ("rps<900s", "rps takes a bare number"),
        ("failed>1.5", "not a whole number"),
        ("failed>1%", "failed takes a bare number"),
    ],
    ids=["no-op", "equals", "double-equals", "empty", "no-metric", "no-value", "negative",
         "double-op", "two-ops", "word-value", "minutes", "percent-latency", "p100", "p0",
         "pmax", "unknown", "unknown-view", "view-on-rps", "view-on-error-rate",
         "fraction-over-1", "percent-over-100", "unit-on-error-rate", "rps-per-s", "rps-unit",
         "failed-fraction", "failed-percent"],
)
def test_parse_threshold_rejects(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_threshold(spec)
    assert str(info.value).startswith(f"bad threshold {spec!r}: ")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("metric", "view"),
    [("rps", "service"), ("failed", "scheduled"), ("p99", None), ("mean", None),
     ("p100", "scheduled"), ("latency", "scheduled")],
    ids=["rps-with-view", "failed-with-view", "p99-without-view", "mean-without-view",
         "p100", "unknown"],
)
def test_threshold_value_rejects_inconsistent_fields(metric: str, view: str | None) -> None:
    with pytest.raises(ValueError):
        Threshold(metric, ">", 1.0, view)  # type: ignore[arg-type]


# ---- checks --------------------------------------------------------------------------------

STALLED = observed(scheduled=hist(*[900.0] * 100), service=hist(*[150.0] * 100))
ERRORS = observed(records=1000, failed=25)


@pytest.mark.parametrize(
    ("spec", "obs", "value", "failed", "text"),
    [
        ("p99>500ms", observed(scheduled=hist(*[612.0] * 100)), 612.0, True,
         "p99 (scheduled) = 612.0 ms > 500 ms: FAIL"),
        ("p99>500ms", observed(scheduled=hist(*[412.0] * 100)), 412.0, False,
         "p99 (scheduled) = 412.0 ms <= 500 ms: pass"),
        ("p99>0.5s", observed(scheduled=hist(*[612.0] * 100)), 612.0, True,
         "p99 (scheduled) = 612.0 ms > 500 ms: FAIL"),
        ("scheduled.p99>200ms", STALLED, 900.0, True,
         "p99 (scheduled) = 900.0 ms > 200 ms: FAIL"),
        ("service.p99>200ms", STALLED, 150.0, False,
         "p99 (service) = 150.0 ms <= 200 ms: pass"),
        ("p50<100", observed(scheduled=hist(50.0, 50.0, 50.0)), 50.0, True,
         "p50 (scheduled) = 50.0 ms < 100 ms: FAIL"),
        ("p50<=50", observed(scheduled=hist(50.0)), 50.0, True,
         "p50 (scheduled) = 50.0 ms <= 50 ms: FAIL"),
        ("max>500", observed(scheduled=hist(10.0, 500.0)), 500.0, False,
         "max (scheduled) = 500.0 ms <= 500 ms: pass"),
        ("max>=500", observed(scheduled=hist(10.0, 500.0)), 500.0, True,
         "max (scheduled) = 500.0 ms >= 500 ms: FAIL"),
        ("mean>100", observed(scheduled=hist(50.0, 150.0, 250.0)), 150.0, True,
         "mean (scheduled) = 150.0 ms > 100 ms: FAIL"),
        ("service.mean>=200", observed(service=hist(50.0, 150.0, 250.0)), 150.0, False,
         "mean (service) = 150.0 ms < 200 ms: pass"),
        ("p99>1us", observed(scheduled=hist(0.0005)), 0.0005, False,
         "p99 (scheduled) = 0.0005 ms <= 0.001 ms: pass"),
        ("p99<1us", observed(scheduled=hist(0.0005)), 0.0005, True,
         "p99 (scheduled) = 0.0005 ms < 0.001 ms: FAIL"),
        ("error_rate>1%", ERRORS, 0.025, True, "error_rate = 2.50% > 1%: FAIL"),
        ("error_rate>5%", ERRORS, 0.025, False, "error_rate = 2.50% <= 5%: pass"),
        ("error_rate>0.025", ERRORS, 0.025, False, "error_rate = 2.50% <= 2.5%: pass"),
        ("error_rate>=0.025", ERRORS, 0.025, True, "error_rate = 2.50% >= 2.5%: FAIL"),
        ("error_rate>0", observed(records=10), 0.0, False, "error_rate = 0.00% <= 0%: pass"),
        ("rps<900", observed(requests=900, elapsed_s=1.0), 900.0, False,
         "rps = 900.0 >= 900: pass"),
        ("rps<900", observed(requests=5_400, elapsed_s=6.0), 900.0, False,
         "rps = 900.0 >= 900: pass"),
        ("rps<900", observed(requests=53_990, elapsed_s=60.0), 53_990 / 60.0, True,
         "rps = 899.8 < 900: FAIL"),
        ("rps<900", observed(requests=0, elapsed_s=10.0), 0.0, True, "rps = 0.0 < 900: FAIL"),
        ("rps>1000000", observed(requests=1, elapsed_s=4.0), 0.25, False,
         "rps = 0.25 <= 1000000: pass"),
        ("failed>0", observed(failed=0), 0.0, False, "failed = 0 <= 0: pass"),
        ("failed>0", observed(failed=3), 3.0, True, "failed = 3 > 0: FAIL"),
        ("failed>=10", observed(failed=10, records=10), 10.0, True, "failed = 10 >= 10: FAIL"),
    ],
    ids=["p99-over", "p99-under", "p99-limit-in-s", "stall-seen-when-scheduled",
         "stall-hidden-from-service", "p50-lt", "p50-le-equal", "max-gt-equal-passes",
         "max-ge-equal-fails", "mean", "service-mean", "sub-ms", "sub-ms-lt", "error-over",
         "error-under", "error-equal-gt", "error-equal-ge", "error-none", "rps-exact", "rps-exact-6s",
         "rps-short", "rps-nothing-sent", "rps-small", "failed-none", "failed-some",
         "failed-all"],
)
def test_check(spec: str, obs: Observed, value: float, failed: bool, text: str) -> None:
    verdict = parse_threshold(spec).check(obs)
    assert verdict.threshold == parse_threshold(spec)
    assert verdict.value == pytest.approx(value)
    assert verdict.failed is failed
    assert verdict.text == text


@pytest.mark.parametrize(
    ("spec", "obs", "text"),
    [
        ("p99>500ms", observed(), "p99 (scheduled): no data"),
        ("p99.9<1ms", observed(service=hist(5.0)), "p99.9 (scheduled): no data"),
        ("service.max>1s", observed(scheduled=hist(5000.0)), "max (service): no data"),
        ("mean>1", observed(), "mean (scheduled): no data"),
        ("error_rate>0", observed(records=0, failed=0), "error_rate: no data"),
        ("rps<900", observed(requests=100, elapsed_s=0.0), "rps: no data"),
    ],
    ids=["empty-p99", "other-view-filled", "empty-service-max", "empty-mean", "no-records",
         "no-time"],
)
def test_no_data_does_not_fail(spec: str, obs: Observed, text: str) -> None:
    verdict = parse_threshold(spec).check(obs)
    assert verdict.value is None
    assert verdict.failed is False
    assert verdict.text == text


@pytest.mark.parametrize(
    ("p", "spec"),
    [(50, "p50>1"), (90, "p90>1"), (99, "p99>1"), (99.9, "p99.9>1"), (99.99, "p99.99>1")],
    ids=["p50", "p90", "p99", "p99.9", "p99.99"],
)
def test_percentile_reads_the_histogram(p: float, spec: str) -> None:
    spread = hist(*(float(v) for v in range(1, 20_001)))
    verdict = parse_threshold(spec).check(observed(scheduled=spread))
    assert verdict.value == spread.percentile(p)
    assert verdict.value == pytest.approx(20_000 * p / 100, rel=0.01)


def test_mean_survives_a_histogram_rebuilt_from_buckets() -> None:
    # Workers ship buckets, not the running total; the mean must not read as 0.
    original = hist(50.0, 150.0, 250.0, 1000.0)
    rebuilt = Histogram.from_buckets_ms(original.buckets_ms(), max_value=original.max_value)
    verdict = parse_threshold("mean>300").check(observed(scheduled=rebuilt))
    assert verdict.value == pytest.approx(362.5, rel=0.01)
    assert verdict.failed


def test_mean_of_all_zero_latencies_is_zero() -> None:
    verdict = parse_threshold("mean>0").check(observed(scheduled=hist(0.0, 0.0)))
    assert verdict.value == 0.0
    assert not verdict.failed


# ---- evaluate and any_failed ---------------------------------------------------------------

def test_evaluate_keeps_order_and_any_failed_sees_one_failure() -> None:
    obs = observed(scheduled=hist(*[612.0] * 10), service=hist(*[90.0] * 10),
                   requests=950, records=1000, failed=5, elapsed_s=1.0)
    specs = ["p99>500ms", "service.p99>200ms", "error_rate>1%", "rps<900", "failed>10"]
    verdicts = evaluate([parse_threshold(s) for s in specs], obs)
    assert [v.threshold for v in verdicts] == [parse_threshold(s) for s in specs]
    assert [v.failed for v in verdicts] == [True, False, False, False, False]
    assert any_failed(verdicts)
    assert not any_failed(verdicts[1:])


@pytest.mark.parametrize(
    ("specs", "expected"),
    [([], False), (["p99>1ms"], False), (["failed>=0"], True), (["p99>1ms", "failed>=0"], True)],
    ids=["none", "no-data-only", "one-failure", "no-data-and-failure"],
)
def test_any_failed(specs: list[str], expected: bool) -> None:
    obs = observed(records=1)
    assert any_failed(evaluate([parse_threshold(s) for s in specs], obs)) is expected
