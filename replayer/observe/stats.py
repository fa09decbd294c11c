"""A compact latency histogram, for the summary, the metrics rows and the thresholds. Pure.

Latencies are kept in buckets of 1% relative width, so memory stays flat for any run
length and every percentile is within 1% of the exact value.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from itertools import repeat
from operator import mul, truediv

_GROWTH = math.log(1.01)
FOLD_EVERY = 4096  # values kept raw before they are counted into buckets


class Histogram:
    """Counts of values (ms) in log buckets; `percentile` answers within 1%.

    `add` only appends the value to a list (a float array would parse each value
    again); every FOLD_EVERY values, and before any read, the list is counted into
    the buckets in one pass of C-level map and Counter.update.
    """

    __slots__ = ("_buckets", "_count", "_max", "_raw", "_total")

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self._count = 0
        self._max = 0.0
        self._total = 0.0
        self._raw: list[float] = []

    def add(self, value_ms: float, count: int = 1) -> None:
        """Records one value (`count` times: the records of one request share its
        latency, counted at once)."""
        if count != 1:
            self._fold()  # the raw values first: the sum stays in the order of the adds
            self._buckets[_bucket(value_ms)] += count
            self._count += count
            self._total += value_ms * count
            self._max = max(self._max, value_ms)
            return
        raw = self._raw
        raw.append(value_ms)
        if len(raw) >= FOLD_EVERY:
            self._fold()

    def _fold(self) -> None:
        """Counts the raw values into the buckets, the count, the sum and the maximum."""
        raw = self._raw
        if not raw:
            return
        self._raw = []
        self._count += len(raw)
        self._total = sum(raw, self._total)  # in the order of the adds, as one at a time
        self._max = max(self._max, max(raw))
        if min(raw) < 0.01:
            # Values under 0.01 ms (a request sent the moment it was planned for: 0.0)
            # share bucket -1; sorted, they are counted at once, and the rest as below.
            values = sorted(raw)
            tiny = bisect_left(values, 0.01)
            if tiny:
                self._buckets[-1] += tiny
            rest: Sequence[float] = values[tiny:]
        else:
            rest = raw
        self._buckets.update(map(int, map(truediv, map(math.log, map(
            mul, rest, repeat(100.0))), repeat(_GROWTH))))

    @property
    def buckets(self) -> Counter[int]:
        """Count per bucket key."""
        self._fold()
        return self._buckets

    @property
    def count(self) -> int:
        """How many values were added."""
        return self._count + len(self._raw)

    @property
    def max_value(self) -> float:
        """The largest value added (0.0 when none)."""
        self._fold()
        return self._max

    @max_value.setter
    def max_value(self, value_ms: float) -> None:
        self._fold()
        self._max = value_ms

    @property
    def total(self) -> float:
        """The sum of the values added."""
        self._fold()
        return self._total

    @total.setter
    def total(self, value_ms: float) -> None:
        self._fold()
        self._total = value_ms

    def __repr__(self) -> str:
        return (f"Histogram(count={self.count}, max_value={self.max_value}, "
                f"total={self.total})")

    def percentile(self, p: float) -> float | None:
        """The value at percentile `p` (0..100), None when empty."""
        self._fold()
        if not self._count:
            return None
        rank = max(1, math.ceil(self._count * p / 100.0))
        seen = 0
        for key in sorted(self._buckets):
            seen += self._buckets[key]
            if seen >= rank:
                return min(_value(key), self._max)
        return self._max

    def buckets_ms(self) -> list[list[float]]:
        """[[upper edge ms, count], ...] in increasing order: the distribution, for reports."""
        return [[round(_value(k), 4), n] for k, n in sorted(self.buckets.items())]

    @classmethod
    def from_buckets_ms(cls, pairs: list[list[float]], *, max_value: float) -> Histogram:
        """Rebuilds a histogram from `buckets_ms()` output (to merge workers' summaries)."""
        h = cls()
        for upper, n in pairs:
            h._buckets[_bucket(upper * 0.999)] += int(n)
            h._count += int(n)
            h._total += upper * n  # the sum is not kept per bucket: within 1%, like the rest
        h._max = max_value
        return h

    def summary(self, percentiles: tuple[float, ...] = (50, 90, 99)) -> dict[str, float | None]:
        """Percentiles (p50/p90/p99 by default) and max in ms, rounded; None when empty."""
        out = {f"p{p:g}": self.percentile(p) for p in percentiles}
        out["max"] = self.max_value if self.count else None
        return {k: (round(v, 3) if v is not None else None) for k, v in out.items()}

    def merge(self, other: Histogram) -> None:
        """Adds another histogram's counts to this one."""
        self._fold()
        self._buckets.update(other.buckets)
        self._count += other.count
        self._total += other.total
        self._max = max(self._max, other.max_value)


def _bucket(value_ms: float) -> int:
    return -1 if value_ms < 0.01 else int(math.log(value_ms * 100.0) / _GROWTH)


def _value(key: int) -> float:
    """The upper edge of a bucket, in ms."""
    return 0.01 if key < 0 else math.exp((key + 1) * _GROWTH) / 100.0
