"""Prometheus endpoint: every metric read from Totals at scrape time, served on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from replayer.observe.live import Totals
from replayer.observe.prom import LATENCY_EDGES_MS, latency_buckets, metrics_app, serve_metrics
from replayer.observe.stats import Histogram

# A row of metrics.ndjson as `replayer run samples/sessions.ndjson` writes it.
SAMPLE_ROW: dict[str, Any] = orjson.loads(
    b'{"t":1795672332.141,"failed_by_kind":{"invalid_json":1,"not_an_object":1,'
    b'"missing_user_id":1,"config_field":1,"secret_field":1,"unknown_field":1,'
    b'"invalid_value":2,"invalid_attribute_name":1,"invalid_time":1,"wrong_type":1,'
    b'"id_too_long":1},"latency_ms":{"p50":7.516,"p90":7.516,"p99":7.516,"max":7.516},'
    b'"outage":false,"elapsed_s":0.016,"requests":2,"delivered":288,"failed":12,"retries":0,'
    b'"latency_buckets_ms":[[3.5099,144],[7.5515,144]],"latency_sum_ms":1586.087,'
    b'"in_flight":0,"retry_waiting":0,"pending":0,"lines_read":300,"bytes_read":150944,'
    b'"bytes_total":150944}'
)

Families = dict[str, list[Sample]]


def row(**changes: Any) -> dict[str, Any]:
    """The sample row with some fields changed."""
    return {**SAMPLE_ROW, **changes}


def first_rows() -> list[tuple[str, dict[str, Any]]]:
    """Two workers' rows: latencies across several edges, one beyond the last (10 s)."""
    return [
        ("w0", row(elapsed_s=1.0, latency_buckets_ms=[[0.5, 3], [3.5099, 144], [7.5515, 141]],
                   in_flight=2, retry_waiting=1, pending=40)),
        ("w1", row(elapsed_s=2.0, requests=3, delivered=50, failed=1,
                   failed_by_kind={"rate_limited": 1}, retries=4,
                   latency_buckets_ms=[[120.0, 45], [30000.0, 5]], latency_sum_ms=155400.0,
                   in_flight=1, pending=5, lines_read=250, outage=True)),
    ]


def totals_of(rows: list[tuple[str, dict[str, Any]]]) -> Totals:
    totals = Totals()
    for source, r in rows:
        totals.add(source, r)
        totals.mark()  # as Follower.poll does after each poll
    return totals


async def scrape(http: aiohttp.ClientSession, url: str) -> Families:
    """GET /metrics, parsed: family name -> its samples."""
    async with http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
        text = await response.text()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(families: Families, sample_name: str, **labels: str) -> float:
    """The one sample of that name and exactly those labels."""
    found = [s.value for samples in families.values() for s in samples
             if s.name == sample_name and s.labels == labels]
    assert len(found) == 1, f"{len(found)} samples {sample_name}{labels}"
    return found[0]


def buckets(families: Families) -> list[tuple[float, float]]:
    """(le, cumulative count) of the latency histogram, in exposition order."""
    return [(float(s.labels["le"]), s.value)
            for s in families["replayer_request_latency_seconds"]
            if s.name == "replayer_request_latency_seconds_bucket"]


def cumulative_at(latency: Histogram, edge_ms: float) -> int:
    """Values in fine buckets whose upper edge is at or below `edge_ms`."""
    return sum(int(n) for upper, n in latency.buckets_ms() if upper <= edge_ms)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Totals, aiohttp.ClientSession, str]]:
    """A Totals fed the first rows, its /metrics URL on 127.0.0.1, and a client session."""
    totals = totals_of(first_rows())
    server = TestServer(metrics_app(lambda: totals), host="127.0.0.1")
    await server.start_server()
    http = aiohttp.ClientSession()
    yield totals, http, str(server.make_url("/metrics"))
    await http.close()
    await server.close()


async def test_counters_and_failures_by_kind(
    served: tuple[Totals, aiohttp.ClientSession, str],
) -> None:
    _, http, url = served
    families = await scrape(http, url)
    assert value(families, "replayer_records_total", outcome="delivered") == 338
    assert value(families, "replayer_records_total", outcome="failed") == 13
    assert value(families, "replayer_requests_total") == 5
    assert value(families, "replayer_retries_total") == 4
    by_kind = {s.labels["kind"]: s.value for s in families["replayer_failures"]}
    assert by_kind == {**SAMPLE_ROW["failed_by_kind"], "rate_limited": 1}
    assert sum(by_kind.values()) == value(families, "replayer_records_total", outcome="failed")


async def test_gauges(served: tuple[Totals, aiohttp.ClientSession, str]) -> None:
    totals, http, url = served
    families = await scrape(http, url)
    assert value(families, "replayer_requests_in_flight") == 3  # summed over workers
    assert value(families, "replayer_retry_queue_length") == 1
    assert value(families, "replayer_records_pending") == 45
    assert value(families, "replayer_rate_records_per_second") == 51.0  # 300 at 1 s, 351 at 2 s
    assert totals.records_per_s() == 51.0
    assert value(families, "replayer_outage") == 1
    assert value(families, "replayer_lines_read") == 300  # the furthest worker's


async def test_latency_histogram_matches_the_fine_buckets(
    served: tuple[Totals, aiohttp.ClientSession, str],
) -> None:
    totals, http, url = served
    families = await scrape(http, url)
    pairs = buckets(families)
    assert [le for le, _ in pairs] == [e / 1000 for e in LATENCY_EDGES_MS] + [float("inf")]
    counts = [n for _, n in pairs]
    assert counts == sorted(counts)
    for (_, n), edge_ms in zip(pairs, LATENCY_EDGES_MS, strict=False):
        assert n == cumulative_at(totals.latency, edge_ms)
    assert counts == [3, 3, 147, 288, 288, 288, 288, 333, 333, 333, 333, 333, 333, 338]
    assert value(families, "replayer_request_latency_seconds_count") == 338
    assert value(families, "replayer_request_latency_seconds_sum") == pytest.approx(156.986087)


async def test_counters_grow_between_scrapes(
    served: tuple[Totals, aiohttp.ClientSession, str],
) -> None:
    totals, http, url = served
    before = await scrape(http, url)
    totals.add("w0", row(elapsed_s=3.0, failed_by_kind={"timeout": 2}, failed=2, retries=7,
                         latency_buckets_ms=[[2.0, 288]], outage=False))
    after = await scrape(http, url)
    for name, labels in [("replayer_records_total", {"outcome": "delivered"}),
                         ("replayer_records_total", {"outcome": "failed"}),
                         ("replayer_requests_total", {}),
                         ("replayer_retries_total", {}),
                         ("replayer_request_latency_seconds_count", {}),
                         ("replayer_request_latency_seconds_sum", {})]:
        assert value(after, name, **labels) > value(before, name, **labels), name
    assert value(after, "replayer_records_total", outcome="delivered") == 338 + 288
    assert value(after, "replayer_failures_total", kind="timeout") == 2
    assert value(after, "replayer_request_latency_seconds_bucket", le="0.0025") == 3 + 288
    assert value(after, "replayer_outage") == 0


async def test_an_empty_run_shows_every_metric_at_zero() -> None:
    server = TestServer(metrics_app(Totals), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            families = await scrape(http, str(server.make_url("/metrics")))
    finally:
        await server.close()
    assert families.pop("replayer_failures") == []
    assert families.pop("replayer_limited") == []  # 429s by cause: none yet
    assert set(families) == {
        "replayer_records", "replayer_requests", "replayer_retries",
        "replayer_request_latency_seconds", "replayer_requests_in_flight",
        "replayer_retry_queue_length", "replayer_records_pending",
        "replayer_rate_records_per_second", "replayer_outage", "replayer_lines_read",
    }
    assert all(s.value == 0 for samples in families.values() for s in samples)


async def test_serve_metrics_on_a_free_port() -> None:
    totals = totals_of(first_rows())
    runner = await serve_metrics(metrics_app(lambda: totals), "127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        assert host == "127.0.0.1" and port > 0
        async with aiohttp.ClientSession() as http:
            families = await scrape(http, f"http://{host}:{port}/metrics")
    finally:
        await runner.cleanup()
    assert value(families, "replayer_records_total", outcome="delivered") == 338


@pytest.mark.parametrize(
    ("values_ms", "expected"),
    [
        ([], [0] * 14),
        ([0.005], [1] * 14),  # below the histogram's smallest bucket
        ([0.5, 3.0, 3.0, 700.0], [1, 1, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4]),
        ([0.995], [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),  # within 1%: one edge late
        ([20_000.0], [0] * 13 + [1]),
    ],
    ids=["empty", "tiny", "spread", "just-under-an-edge", "beyond-the-last-edge"],
)
def test_latency_buckets(values_ms: list[float], expected: list[int]) -> None:
    latency = Histogram()
    for v in values_ms:
        latency.add(v)
    out = latency_buckets(latency)
    assert [n for _, n in out] == expected
    assert out[-1] == ("+Inf", len(values_ms))
