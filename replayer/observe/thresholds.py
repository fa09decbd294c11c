"""Pass/fail thresholds for load tests, k6 style: `p99>500ms` says when the run FAILS. Pure."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from replayer.observe.stats import Histogram

View = Literal["scheduled", "service"]
Op = Literal[">", ">=", "<", "<="]

LATENCY_UNITS_MS = {"ms": 1.0, "s": 1000.0, "us": 0.001}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
_OP_NAMES: dict[str, Op] = {">": ">", ">=": ">=", "<": "<", "<=": "<="}
_NEGATED = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}
_SPEC = re.compile(r"(?P<lhs>[^<>]*)(?P<op>>=|<=|>|<)(?P<rhs>.*)")
_VALUE = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-z%]*)")
_PERCENTILE = re.compile(r"p(\d+(?:\.\d+)?)")
_PLAIN = ("error_rate", "rps", "failed")


@dataclass(frozen=True, slots=True)
class Observed:
    """What a run measured, filled by the caller; latency histograms are in ms."""

    scheduled: Histogram  # from each request's planned send time
    service: Histogram  # from the actual send
    requests: int
    records: int
    failed: int  # failed records
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class Threshold:
    """The run fails when `metric` `op` `limit` holds.

    `limit` is in ms for latency (`pN`, `max`, `mean`), a fraction for `error_rate`,
    requests/s for `rps`, a count for `failed`. `view` is set for latency metrics only.
    """

    metric: str
    op: Op
    limit: float
    view: View | None = None

    def __post_init__(self) -> None:
        if self.metric in _PLAIN:
            if self.view is not None:
                raise ValueError(f"{self.metric} has no latency view")
        else:
            _latency_metric(self.metric)
            if self.view is None:
                raise ValueError(f"{self.metric} needs a view: scheduled or service")

    def check(self, obs: Observed) -> Verdict:
        """The verdict on `obs`; a metric without data (empty histogram, no records) passes."""
        value = self._value(obs)
        name = self.metric if self.view is None else f"{self.metric} ({self.view})"
        if value is None:
            return Verdict(self, None, False, f"{name}: no data")
        failed = _OPS[self.op](value, self.limit)
        op = self.op if failed else _NEGATED[self.op]
        shown, limit = self._show(value, precise=True), self._show(self.limit, precise=False)
        return Verdict(self, value, failed, f"{name} = {shown} {op} {limit}: "
                       + ("FAIL" if failed else "pass"))

    def _value(self, obs: Observed) -> float | None:
        if self.metric == "failed":
            return float(obs.failed)
        if self.metric == "error_rate":
            return obs.failed / obs.records if obs.records > 0 else None
        if self.metric == "rps":
            return obs.requests / obs.elapsed_s if obs.elapsed_s > 0.0 else None
        hist = obs.service if self.view == "service" else obs.scheduled
        if not hist.count:
            return None
        if self.metric == "max":
            return hist.max_value
        if self.metric == "mean":
            return _mean(hist)
        return hist.percentile(float(self.metric[1:]))

    def _show(self, value: float, *, precise: bool) -> str:
        if self.metric == "error_rate":
            return f"{value * 100:.2f}%" if precise else f"{_num(value * 100)}%"
        if self.metric == "failed":
            return _num(value)
        if not precise:
            text = _num(value)
        else:  # sub-unit values keep three significant digits rather than read as 0.0
            text = f"{value:.3g}" if 0.0 < value < 1.0 else f"{value:.1f}"
        return text if self.metric == "rps" else f"{text} ms"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One threshold's outcome: the measured value (None: no data) and a line for the report."""

    threshold: Threshold
    value: float | None
    failed: bool
    text: str


def parse_threshold(spec: str) -> Threshold:
    """A threshold from `[scheduled.|service.]METRIC OP VALUE[UNIT]`, e.g. `p99>500ms`."""
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise ValueError(f"bad threshold {spec!r}: expected METRIC OP VALUE with OP one of "
                         "> >= < <=, e.g. p99>500ms")
    try:
        return _threshold(match["lhs"].strip(), match["op"], match["rhs"].strip())
    except ValueError as e:
        raise ValueError(f"bad threshold {spec!r}: {e}") from None


def evaluate(thresholds: Iterable[Threshold], obs: Observed) -> list[Verdict]:
    """Each threshold's verdict on `obs`, in order."""
    return [t.check(obs) for t in thresholds]


def any_failed(verdicts: Iterable[Verdict]) -> bool:
    """Whether any verdict failed the run."""
    return any(v.failed for v in verdicts)


def _threshold(lhs: str, op: str, rhs: str) -> Threshold:
    view: View | None = None
    metric = lhs
    prefix, dot, rest = lhs.partition(".")
    if dot and prefix in ("scheduled", "service"):
        view = "scheduled" if prefix == "scheduled" else "service"
        metric = rest.strip()
    if metric in _PLAIN:
        if view is not None:
            raise ValueError(f"the view {view!r} applies only to latency (pN, max, mean)")
        return Threshold(metric, _OP_NAMES[op], _plain_limit(metric, rhs))
    limit_ms = _latency_limit_ms(rhs)
    return Threshold(_latency_metric(metric), _OP_NAMES[op], limit_ms, view or "scheduled")


def _latency_metric(name: str) -> str:
    if name in ("max", "mean"):
        return name
    if not name:
        raise ValueError("no metric before the operator")
    match = _PERCENTILE.fullmatch(name)
    if match is None:
        raise ValueError(f"unknown metric {name!r}: use pN (p50, p99.9 ...), max, mean, "
                         "error_rate, rps or failed; latency may be prefixed scheduled. or service.")
    p = float(match[1])
    if not 0.0 < p < 100.0:
        raise ValueError(f"percentile {name!r} must be above p0 and below p100 (max is p100)")
    return f"p{_num(p)}"


def _latency_limit_ms(text: str) -> float:
    number, unit = _value(text)
    if unit not in ("", *LATENCY_UNITS_MS):
        raise ValueError(f"unit {unit!r} in {text!r}: use ms, s or us (a bare number is ms)")
    return number * LATENCY_UNITS_MS.get(unit, 1.0)


def _plain_limit(metric: str, text: str) -> float:
    number, unit = _value(text)
    if metric == "error_rate":
        if unit == "%":
            if number > 100.0:
                raise ValueError(f"{text!r}: a percentage is at most 100%")
            return number / 100.0
        if unit:
            raise ValueError(f"unit {unit!r} in {text!r}: write a percentage (1%) or a fraction")
        if number > 1.0:
            raise ValueError(f"{text!r}: a fraction is at most 1 (write {_num(number)}% for percent)")
        return number
    if unit:
        raise ValueError(f"{metric} takes a bare number, not {text!r}")
    if metric == "failed" and not number.is_integer():
        raise ValueError(f"failed counts records: {text!r} is not a whole number")
    return number


def _value(text: str) -> tuple[float, str]:
    match = _VALUE.fullmatch(text)
    if match is None:
        raise ValueError(f"bad value {text!r}: expected a number >= 0, then a unit if any")
    return float(match["number"]), match["unit"]


def _mean(hist: Histogram) -> float:
    if hist.total > 0.0 or hist.max_value == 0.0:
        return hist.total / hist.count
    # `total` is lost when a histogram is rebuilt from buckets; estimate from bucket edges
    # (within 1%) rather than report a mean of 0 that no threshold would ever catch.
    return sum(upper * n for upper, n in hist.buckets_ms()) / hist.count


def _num(x: float) -> str:
    """A limit as the user would write it: 500, 0.5, 1234567 (no float noise, no exponent)."""
    text = f"{round(x, 6):f}".rstrip("0").rstrip(".")
    return text or "0"

