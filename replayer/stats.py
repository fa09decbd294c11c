"""Counters and a compact latency histogram for the summary. Pure.

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

    def add(self, value_ms: float) -> None:
        """Records one value."""
        self.buckets[_bucket(value_ms)] += 1
        self.count += 1
        self.max_value = max(self.max_value, value_ms)

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

    def merge(self, other: Histogram) -> None:
        """Adds another histogram's counts to this one."""
        self.buckets.update(other.buckets)
        self.count += other.count
        self.max_value = max(self.max_value, other.max_value)


def _bucket(value_ms: float) -> int:
    return -1 if value_ms < 0.01 else int(math.log(value_ms * 100.0) / _GROWTH)


def _value(key: int) -> float:
    """The upper edge of a bucket, in ms."""
    return 0.01 if key < 0 else math.exp((key + 1) * _GROWTH) / 100.0


@dataclass(slots=True)
class RunStats:
    """What the summary counts: rows by status and kind, attempts, latency."""

    by_status: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    retries: int = 0
    ambiguous_attempts: int = 0
    possible_duplicates: int = 0
    latency: Histogram = field(default_factory=Histogram)

    def delivered(self, *, latency_ms: float) -> None:
        """Counts one delivered record."""
        self.by_status["delivered"] += 1
        self.latency.add(latency_ms)

    def failed(self, kind: str) -> None:
        """Counts one failed record of `kind`."""
        self.by_status["failed"] += 1
        self.by_kind[kind] += 1

    def latency_summary(self) -> dict[str, float | None]:
        """p50/p90/p99/max in ms, rounded for reading."""
        h = self.latency
        out = {f"p{p}": h.percentile(p) for p in (50, 90, 99)}
        out["max"] = h.max_value if h.count else None
        return {k: (round(v, 3) if v is not None else None) for k, v in out.items()}
