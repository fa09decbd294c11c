"""Prometheus metrics of a running replay, served at GET /metrics by aiohttp.

Values are read from `Totals` at scrape time (usually `Follower.poll`), so the hot path
counts nothing extra; the endpoint runs in the run's event loop, with no thread of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from replayer.observe.live import Totals
from replayer.observe.stats import Histogram

# Upper edges of the exposed latency buckets, in ms (Prometheus shows them in seconds).
LATENCY_EDGES_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

_REGISTRY = web.AppKey("registry", CollectorRegistry)


class TotalsCollector(Collector):
    """Turns the totals of a run into metric families, once per scrape."""

    def __init__(self, totals: Callable[[], Totals]) -> None:
        self._totals = totals

    def collect(self) -> Iterator[Metric]:
        """Every metric of the run, from one fresh read of the totals."""
        t = self._totals()
        records = CounterMetricFamily(
            "replayer_records", "Records finished, by outcome.", labels=["outcome"]
        )
        records.add_metric(["delivered"], t.delivered)
        records.add_metric(["failed"], t.failed)
        yield records
        failures = CounterMetricFamily(
            "replayer_failures", "Failed records, by failure kind.", labels=["kind"]
        )
        for kind, n in sorted(t.failed_by_kind.items()):
            failures.add_metric([kind], n)
        yield failures
        yield CounterMetricFamily("replayer_requests", "HTTP requests sent.", value=t.requests)
        yield CounterMetricFamily(
            "replayer_retries", "Records scheduled for another attempt.", value=t.retries
        )
        yield HistogramMetricFamily(
            "replayer_request_latency_seconds",
            "Latency of the request that delivered a record, observed once per delivered record.",
            buckets=latency_buckets(t.latency),
            sum_value=t.latency.total / 1000.0,
        )
        limited = CounterMetricFamily(
            "replayer_limited", "Requests answered 429, by cause (throttled, profile_lock, "
            "dev_mode).", labels=["cause"])
        for cause, n in sorted(t.limited_by_cause.items()):
            limited.add_metric([cause], n)
        yield limited
        yield from _gauges(t)
        auto = t.auto_rate()
        if auto is not None:
            yield GaugeMetricFamily("replayer_rate_limit_per_second",
                                    "--rate auto: the requests per second the controller "
                                    "paces at now.", value=auto[0])


def _gauges(t: Totals) -> Iterator[Metric]:
    values = (
        ("replayer_requests_in_flight", "HTTP requests awaiting an answer.", t.gauge("in_flight")),
        ("replayer_retry_queue_length", "Users waiting out a retry delay.",
         t.gauge("retry_waiting")),
        ("replayer_records_pending", "Records read and not finished yet.", t.gauge("pending")),
        ("replayer_rate_records_per_second", "Records finished per second over the last ~10 s.",
         t.records_per_s()),
        ("replayer_outage", "1 while the server counts as down and intake is paused, else 0.",
         1 if t.outage else 0),
        ("replayer_lines_read", "Input lines read so far.", t.lines_read),
    )
    for name, documentation, value in values:
        yield GaugeMetricFamily(name, documentation, value=value)


def latency_buckets(
    latency: Histogram, edges_ms: Sequence[float] = LATENCY_EDGES_MS
) -> list[tuple[str, float]]:
    """Cumulative (le seconds, count) pairs ending with +Inf, from the 1%-wide buckets.

    A fine bucket counts under the first edge at or above its upper edge: no value counts
    under an edge it exceeds, and only values within 1% below an edge count one edge late.
    """
    pairs = latency.buckets_ms()
    out: list[tuple[str, float]] = []
    seen = 0
    i = 0
    for edge_ms in edges_ms:
        while i < len(pairs) and pairs[i][0] <= edge_ms:
            seen += int(pairs[i][1])
            i += 1
        out.append((str(edge_ms / 1000.0), seen))
    out.append(("+Inf", latency.count))
    return out


def metrics_registry(totals: Callable[[], Totals]) -> CollectorRegistry:
    """A registry of its own (not the global one) holding only the run's collector."""
    registry = CollectorRegistry()
    registry.register(TotalsCollector(totals))
    return registry


def metrics_app(totals: Callable[[], Totals]) -> web.Application:
    """An app serving GET /metrics in the Prometheus text format, read from `totals()`."""
    app = web.Application()
    app[_REGISTRY] = metrics_registry(totals)
    app.router.add_get("/metrics", _metrics)
    return app


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve_metrics(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Starts serving `app` on host:port (0 picks a free port); the caller cleans up the runner.

    The bound address is in `runner.addresses`.
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
