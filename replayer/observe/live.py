"""Live totals of a run that is still going, built from its metrics.ndjson files.

The pipeline appends one row per second per process; following those files gives
the progress display and the Prometheus endpoint the same numbers for one process or
many workers, and costs the hot path nothing. `Totals` is pure; `Follower` reads.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from replayer.observe.stats import Histogram

_GAUGES = ("in_flight", "retry_waiting", "pending")


@dataclass(frozen=True, slots=True)
class SourceReading:
    """How far one process got: what its reader read, the records it owns among the lines it
    took (its share of them), whether the input ended, and its earlier sessions' rows."""

    lines_read: int = 0
    blank_lines: int = 0
    bytes_read: int = 0
    records_read: int = 0
    records_seen: int = 0
    input_ended: bool = False
    prior_delivered: int = 0
    prior_failed_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Totals:
    """Sums of every row seen so far, plus the latest gauges of each source."""

    requests: int = 0
    delivered: int = 0
    failed: int = 0
    failed_by_kind: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    latency: Histogram = field(default_factory=Histogram)
    lines_read: int = 0
    bytes_read: int = 0
    bytes_total: int | None = None
    elapsed_s: float = 0.0
    outage: bool = False
    gauges: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> gauge -> value
    recent: list[tuple[float, int]] = field(default_factory=list)  # (elapsed_s, records done)
    rates: dict[str, tuple[float, str]] = field(default_factory=dict)  # --rate auto, per source
    limited_by_cause: Counter[str] = field(default_factory=Counter)  # 429s by cause
    readings: dict[str, SourceReading] = field(default_factory=dict)  # per source, the latest
    sources_expected: int = 1  # processes writing rows (workers): all must have ended

    def auto_rate(self) -> tuple[float, str] | None:
        """--rate auto: the controllers' rate summed over the sources, and their states."""
        if not self.rates:
            return None
        states = sorted({state for _, state in self.rates.values()})
        return sum(rate for rate, _ in self.rates.values()), ", ".join(states)

    @property
    def done(self) -> int:
        """Records with a row written by this session: delivered or failed."""
        return self.delivered + self.failed

    def prior_delivered(self) -> int:
        """A resume: records delivered by earlier sessions."""
        return sum(r.prior_delivered for r in self.readings.values())

    def prior_failed_by_kind(self) -> Counter[str]:
        """A resume: failure rows of earlier sessions, by kind."""
        kinds: Counter[str] = Counter()
        for reading in self.readings.values():
            kinds.update(reading.prior_failed_by_kind)
        return kinds

    def records_done(self) -> int:
        """Records with a row, earlier sessions of a resume included."""
        return self.done + self.prior_delivered() + self.prior_failed_by_kind().total()

    def input_ended(self) -> bool:
        """Every process read the whole input: the records known are all there will be."""
        readings = self.readings.values()
        return len(readings) >= self.sources_expected and all(r.input_ended for r in readings)

    def records_known(self) -> tuple[int, bool] | None:
        """(records the run has, exact): exact once the input ended, else extrapolated from
        the bytes read of the input's size; None while that cannot be told."""
        readings = list(self.readings.values())
        if self.input_ended():
            return sum(r.records_read for r in readings), True
        if not self.bytes_total or len(readings) < self.sources_expected:
            return None
        estimate = 0.0
        for r in readings:
            if r.input_ended:
                estimate += r.records_read
            elif r.bytes_read <= 0 or r.records_seen <= 0:
                return None
            else:  # the reader's lines and bytes go together; the intake takes them later
                share = r.records_read / r.records_seen
                lines = r.lines_read - r.blank_lines
                estimate += lines * share * self.bytes_total / r.bytes_read
        return max(math.ceil(estimate), self.records_done()), False

    def gauge(self, name: str) -> int:
        """A gauge summed over the sources (in_flight, retry_waiting, pending)."""
        return sum(g.get(name, 0) for g in self.gauges.values())

    def add(self, source: str, row: dict[str, Any]) -> None:
        """Takes one metrics row of `source` (a file) into the totals."""
        self.requests += row.get("requests", 0)
        self.delivered += row.get("delivered", 0)
        self.failed += row.get("failed", 0)
        self.failed_by_kind.update(row.get("failed_by_kind", {}))
        self.retries += row.get("retries", 0)
        pairs = row.get("latency_buckets_ms") or []
        if pairs:
            top = (row.get("latency_ms") or {}).get("max") or 0.0
            window = Histogram.from_buckets_ms(pairs, max_value=top)
            window.total = row.get("latency_sum_ms", 0.0)
            self.latency.merge(window)
        # Every worker reads every line, so reading progress is the furthest source's.
        self.lines_read = max(self.lines_read, row.get("lines_read", 0))
        self.bytes_read = max(self.bytes_read, row.get("bytes_read", 0))
        self.bytes_total = row.get("bytes_total", self.bytes_total)
        self.elapsed_s = max(self.elapsed_s, row.get("elapsed_s", 0.0))
        self.outage = bool(row.get("outage", False))
        self.gauges[source] = {name: row.get(name, 0) for name in _GAUGES}
        self.readings[source] = SourceReading(
            lines_read=row.get("lines_read", 0), blank_lines=row.get("blank_lines", 0),
            bytes_read=row.get("bytes_read", 0), records_read=row.get("records_read", 0),
            records_seen=row.get("records_seen", 0),
            input_ended=bool(row.get("input_ended", False)),
            prior_delivered=row.get("prior_delivered", 0),
            prior_failed_by_kind=row.get("prior_failed_by_kind") or {})
        self.limited_by_cause.update(row.get("limited_by_cause") or {})
        if row.get("rate_per_s") is not None:
            self.rates[source] = (float(row["rate_per_s"]), str(row.get("rate_state") or ""))

    def mark(self) -> None:
        """Notes (elapsed, done) once per poll, for the recent rate."""
        if not self.recent or self.recent[-1][0] < self.elapsed_s:
            self.recent.append((self.elapsed_s, self.done))
            del self.recent[:-30]

    def records_per_s(self) -> float:
        """Records finished per second over the last ~10 s (0 before two rows)."""
        if len(self.recent) < 2:
            return 0.0
        now_s, now_done = self.recent[-1]
        then_s, then_done = next(
            ((s, d) for s, d in self.recent if now_s - s <= 10.0), self.recent[0]
        )
        if now_s <= then_s:
            then_s, then_done = self.recent[0]
        span = now_s - then_s
        return (now_done - then_done) / span if span > 0 else 0.0

    def eta_s(self) -> float | None:
        """Seconds left: the records without a row yet at the recent pace; None when unknown."""
        known = self.records_known()
        if known is None:
            return None
        left = known[0] - self.records_done()
        if left <= 0 and known[1]:
            return 0.0
        rate = self.records_per_s()
        return max(left, 1) / rate if rate > 0 else None


class Follower:
    """Reads the complete rows appended to a set of files since the last call."""

    def __init__(self, files: Callable[[], Iterable[Path]]) -> None:
        self._files = files
        # A resumed run appends to its files: its live totals start from what is new.
        self._offsets: dict[Path, int] = {p: p.stat().st_size for p in files() if p.exists()}
        self.totals = Totals(sources_expected=len(list(files())))

    def poll(self) -> Totals:
        """Takes in every new complete row; a half-written last row waits for the next poll."""
        for path in self._files():
            offset = self._offsets.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1
            for raw in data[:end].splitlines():
                row = _row(raw)
                if row is not None:
                    self.totals.add(str(path), row)
            self._offsets[path] = offset + end
        self.totals.mark()
        return self.totals


def _row(raw: bytes) -> dict[str, Any] | None:
    """A metrics row as an object; None for a blank or damaged line (live totals skip it)."""
    try:
        row = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
    return row if isinstance(row, dict) else None
