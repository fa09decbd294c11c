"""What a run counts as it goes: rows by status and kind, requests, latencies. Pure.

The summary and each metrics row are built from these counters (see replay.py, monitor.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from replayer.observe.stats import Histogram


@dataclass(slots=True)
class Window:
    """What happened in one reporting interval (a row of metrics.ndjson)."""

    requests: int = 0
    delivered: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    latency: Histogram = field(default_factory=Histogram)
    scheduled: Histogram = field(default_factory=Histogram)  # per request, from planned send


@dataclass(slots=True)
class RunStats:
    """What the summary counts: rows by status and kind, attempts, latency by outcome."""

    by_status: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    user_lookups: int = 0  # distinct users per call, summed: what Leanplum bills
    retries: int = 0
    ambiguous_attempts: int = 0
    possible_duplicates: int = 0
    latency: Histogram = field(default_factory=Histogram)  # delivered records
    failed_latency: Histogram = field(default_factory=Histogram)  # sent, then failed
    # Per request, two views: from the actual send (service) and from the time the
    # request was planned for (scheduled), which a stalled server cannot hide from.
    service: Histogram = field(default_factory=Histogram)
    scheduled: Histogram = field(default_factory=Histogram)
    behind: Histogram = field(default_factory=Histogram)  # sent this late after planned, ms
    window: Window = field(default_factory=Window)

    def request(self, *, users: int = 1) -> None:
        """Counts one HTTP request carrying `users` distinct users."""
        self.requests += 1
        self.user_lookups += users
        self.window.requests += 1

    def answered(self, *, service_ms: float, scheduled_ms: float, behind_ms: float) -> None:
        """Times one request: its own latency, from its planned time, and its send delay."""
        self.service.add(service_ms)
        self.scheduled.add(scheduled_ms)
        self.behind.add(behind_ms)
        self.window.scheduled.add(scheduled_ms)

    def retried(self, n: int) -> None:
        """Counts `n` records scheduled for another attempt."""
        self.retries += n
        self.window.retries += n

    def delivered(self, *, latency_ms: float, count: int = 1) -> None:
        """Counts `count` delivered records (one by default) that share `latency_ms`."""
        self.by_status["delivered"] += count
        self.latency.add(latency_ms, count)
        self.window.delivered += count
        self.window.latency.add(latency_ms, count)

    def failed(self, kind: str, *, latency_ms: float | None = None) -> None:
        """Counts one failed record of `kind` (with its last latency when it was sent)."""
        kind = str(kind)  # a FailureKind counts under its plain text: JSON keys are str
        self.by_status["failed"] += 1
        self.by_kind[kind] += 1
        self.window.failed[kind] += 1
        if latency_ms is not None:
            self.failed_latency.add(latency_ms)

    def take_window(self) -> Window:
        """The interval so far, and a fresh one begins."""
        window, self.window = self.window, Window()
        return window

    def latency_summary(self) -> dict[str, float | None]:
        """p50/p90/p99/max of delivered records, in ms."""
        return self.latency.summary()
