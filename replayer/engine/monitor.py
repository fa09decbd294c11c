"""Monitor: the run's clockwork beside the records: flushing, metrics rows, thresholds, --duration."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence
from typing import Any

from replayer.engine.control import RunControl
from replayer.engine.dispatch import AutoRateFeed
from replayer.engine.flow import Flow
from replayer.engine.outage import Outage
from replayer.engine.pacing import Clock, Pacing
from replayer.engine.rate_control import LimitCounts
from replayer.engine.stats import RunStats
from replayer.observe import thresholds
from replayer.observe.logs import log
from replayer.output.metrics import MetricsRow, encode_row
from replayer.output.resume import PriorRows
from replayer.output.sinks import NdjsonSink
from replayer.source.read import ReadCounts

FLUSH_INTERVAL_S = 0.05
METRICS_INTERVAL_S = 1.0


class Monitor:
    """Writes metrics.ndjson once a second, checks --fail-if, and flushes the row files."""

    def __init__(self, *, flow: Flow, stats: RunStats, counts: ReadCounts, outage: Outage,
                 pacer: Pacing | None, clock: Clock, control: RunControl, metrics: NdjsonSink,
                 flushed: Sequence[NdjsonSink], fail_if: Sequence[str], abort_on_fail: bool,
                 bytes_total: int | None, limits: LimitCounts | None = None,
                 auto: AutoRateFeed | None = None, prior: PriorRows | None = None) -> None:
        self._flow = flow
        self._stats = stats
        self._counts = counts
        self._outage = outage
        self._pacer = pacer
        self._clock = clock
        self._control = control
        self._metrics = metrics
        self._flushed = flushed
        self._specs = tuple(fail_if)
        self._thresholds = [thresholds.parse_threshold(spec) for spec in fail_if]
        self._abort_on_fail = abort_on_fail
        self._bytes_total = bytes_total
        self._limits = limits if limits is not None else LimitCounts()
        self.auto = auto
        self._prior = prior if prior is not None else PriorRows()  # a resume's earlier rows
        self.rate_seconds: list[float] = []  # --rate auto: the controller's rate, each second
        self._planned_total = 0.0
        self.started_s = clock.now()
        self.verdicts: list[thresholds.Verdict] = []

    async def flush_often(self) -> None:
        """Puts rows on disk every few tens of ms (a kill loses at most that much)."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            for sink in self._flushed:
                sink.flush()

    async def metrics_often(self) -> None:
        """One metrics row a second; with --abort-on-fail, a stop when a threshold fails."""
        while True:
            await asyncio.sleep(METRICS_INTERVAL_S)
            self.write_metrics()
            if self._abort_on_fail and self._thresholds:
                verdicts = thresholds.evaluate(self._thresholds, self.observed())
                failed = [v.text for v in verdicts if v.failed]
                if failed and not self._control.stopping.is_set():
                    log.warning("threshold failed, stopping: %s", "; ".join(failed))
                    self.verdicts = verdicts  # the run ends on these, not on later numbers
                    self._control.request_stop("threshold")

    async def stop_after(self, duration_s: float) -> None:
        """--duration: a graceful stop, as on SIGTERM, once the time is up."""
        await self._clock.sleep(duration_s)
        log.warning("duration of %.0f s reached: stopping", duration_s)
        self._control.request_stop("duration")

    def final_verdicts(self) -> list[thresholds.Verdict]:
        """The thresholds judged at the end (or as they stood when they stopped the run)."""
        if self._control.stop_reason != "threshold":
            self.verdicts = thresholds.evaluate(self._thresholds, self.observed())
        return self.verdicts

    def verdict_rows(self) -> list[dict[str, Any]]:
        """The thresholds as summary.json lists them."""
        return [{"threshold": spec, "value": v.value, "failed": v.failed, "text": v.text}
                for spec, v in zip(self._specs, self.verdicts, strict=True)]

    def steady_rate_per_s(self) -> float | None:
        """--rate auto: the rate it settled on, the median of the last half of its seconds
        (the rate now when the run was shorter than two seconds); None without auto."""
        if self.auto is None:
            return None
        seconds = self.rate_seconds[len(self.rate_seconds) // 2:]
        if len(seconds) < 2:
            return self.auto.rate_now()
        return statistics.median(seconds)

    def observed(self) -> thresholds.Observed:
        """What the thresholds are checked against."""
        stats = self._stats
        return thresholds.Observed(
            scheduled=stats.scheduled, service=stats.service, requests=stats.requests,
            records=stats.by_status["delivered"] + stats.by_status["failed"],
            failed=stats.by_status["failed"], elapsed_s=self._clock.now() - self.started_s,
        )

    def write_metrics(self) -> None:
        """Writes one row of metrics.ndjson now."""
        self._metrics.write_line(encode_row(self.metrics_row()).rstrip(b"\n"))
        self._metrics.flush()

    def metrics_row(self) -> MetricsRow:
        """One row of metrics.ndjson: the interval since the last row, and the state now."""
        window = self._stats.take_window()
        flow = self._flow
        rate = state = None
        if self.auto is not None:
            rate = round(self.auto.rate_now(), 2)
            state = str(self.auto.controller.state(self._clock.now()))
            self.rate_seconds.append(rate)
        return MetricsRow(
            t=round(self._clock.wall(), 3),
            elapsed_s=round(self._clock.now() - self.started_s, 3),
            requests=window.requests,
            delivered=window.delivered,
            failed=sum(window.failed.values()),
            failed_by_kind=dict(window.failed),
            retries=window.retries,
            latency_ms=window.latency.summary(),
            latency_buckets_ms=window.latency.buckets_ms(),
            scheduled_latency_ms=window.scheduled.summary(),
            planned=self._planned_in_window(),
            latency_sum_ms=round(window.latency.total, 3),
            in_flight=flow.in_flight,
            retry_waiting=flow.retry_waiting,
            pending=flow.lanes.pending,
            lines_read=self._counts.lines,
            bytes_read=self._counts.bytes_read,
            bytes_total=self._bytes_total,
            outage=self._outage.active,
            rate_per_s=rate,
            rate_state=state,
            limited_by_cause=self._limits.take_window(),
            # Lines a resume skips have their rows in earlier sessions: known records all.
            records_read=flow.records_read + self._counts.skipped_done,
            records_seen=flow.lines_taken + self._counts.skipped_done,
            blank_lines=self._counts.blank_lines,
            input_ended=flow.input_ended,
            prior_delivered=self._prior.by_status["delivered"],
            prior_failed_by_kind=dict(self._prior.by_kind),
        )

    def _planned_in_window(self) -> float | None:
        """Requests the schedule planned since the last metrics row (None when unpaced)."""
        if self._pacer is None:
            return None
        now = self._pacer.planned_by(self._clock.now() - self.started_s)
        planned, self._planned_total = now - self._planned_total, now
        return round(planned, 2)
