"""A compact latency histogram, for the summary, the metrics rows and the thresholds. Pure.

Latencies are kept in buckets of 1% relative width, so memory stays flat for any run
length and every percentile is within 1% of the exact value.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

_GROWTH = math.log(1.01)


@dataclass(slots=True)
class Histogram:
    """Counts of values (ms) in log buckets; `percentile` answers within 1%."""

    buckets: Counter[int] = field(default_factory=Counter)
    count: int = 0
    max_value: float = 0.0
    total: float = 0.0
    # The records of one request share its latency: the bucket of the last value is
    # remembered, so the hundreds of adds that follow skip the logarithm.
    _last: tuple[float, int] = field(default=(math.nan, 0), repr=False, compare=False)

    def add(self, value_ms: float, count: int = 1) -> None:
        """Records one value (`count` times)."""
        last_value, key = self._last
        if value_ms != last_value:
            key = _bucket(value_ms)
            self._last = (value_ms, key)
            self.max_value = max(self.max_value, value_ms)
        self.buckets[key] += count
        self.count += count
        self.total += value_ms * count

    def percentile(self, p: float) -> float | None:
        """The value at percentile `p` (0..100), None when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(self.count * p / 100.0))
        seen = 0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                return min(_value(key), self.max_value)
        return self.max_value

    def buckets_ms(self) -> list[list[float]]:
        """[[upper edge ms, count], ...] in increasing order: the distribution, for reports."""
        return [[round(_value(k), 4), n] for k, n in sorted(self.buckets.items())]

    @classmethod
    def from_buckets_ms(cls, pairs: list[list[float]], *, max_value: float) -> Histogram:
        """Rebuilds a histogram from `buckets_ms()` output (to merge workers' summaries)."""
        h = cls()
        for upper, n in pairs:
            h.buckets[_bucket(upper * 0.999)] += int(n)
            h.count += int(n)
            h.total += upper * n  # the sum is not kept per bucket: within 1%, like the rest
        h.max_value = max_value
        return h

    def summary(self, percentiles: tuple[float, ...] = (50, 90, 99)) -> dict[str, float | None]:
        """Percentiles (p50/p90/p99 by default) and max in ms, rounded; None when empty."""
        out = {f"p{p:g}": self.percentile(p) for p in percentiles}
        out["max"] = self.max_value if self.count else None
        return {k: (round(v, 3) if v is not None else None) for k, v in out.items()}

    def merge(self, other: Histogram) -> None:
        """Adds another histogram's counts to this one."""
        self.buckets.update(other.buckets)
        self.count += other.count
        self.total += other.total
        self.max_value = max(self.max_value, other.max_value)


def _bucket(value_ms: float) -> int:
    return -1 if value_ms < 0.01 else int(math.log(value_ms * 100.0) / _GROWTH)


def _value(key: int) -> float:
    """The upper edge of a bucket, in ms."""
    return 0.01 if key < 0 else math.exp((key + 1) * _GROWTH) / 100.0
