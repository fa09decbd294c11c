"""Watching a real run: Prometheus scraped while it goes on, progress lines off a terminal."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from replayer.emulator import LatencyModel
from replayer.output.layout import SUMMARY
from tests.conftest import TEST_APP_ID, TEST_KEY, StartEmulator, gated_emulator, generated

ENV = {**os.environ, "LEANPLUM_APP_ID": TEST_APP_ID, "LEANPLUM_CLIENT_KEY": TEST_KEY}


def values(text: str) -> dict[str, float]:
    """Sample name (with labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


HELD_AFTER = 200  # requests answered before the gate holds the rest


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_metrics_are_scraped_during_a_run(tmp_path: Path, workers: str) -> None:
    data = generated(tmp_path / "in.ndjson", records=1500, users=300)
    out = tmp_path / "out"
    async with gated_emulator(held_after=HELD_AFTER,
                              latency_ms=LatencyModel(2.0)) as (url_api, release):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "replayer", "run", str(data), "--out", str(out),
            "--endpoint", url_api, "--no-batch", "--concurrency", "8", "--workers", workers,
            "--metrics-port", "0", "--no-preflight", env=ENV,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        url = None
        async with asyncio.timeout(30):
            while url is None:
                line = (await proc.stderr.readline()).decode()
                assert line, "the run ended before saying where its metrics are"
                found = re.search(r"metrics on (http://\S+/metrics)", line)
                url = found.group(1) if found else None

        scrapes = []
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            # Held at HELD_AFTER requests, the run cannot end: scrape until its rows show.
            while not scrapes or scrapes[-1]["replayer_records_total{outcome=delivered}"] == 0:
                async with http.get(url) as response:
                    assert response.status == 200
                    scrapes.append(values(await response.text()))
                await asyncio.sleep(0.2)
        release.set()
        await asyncio.wait_for(proc.communicate(), 60)

    assert proc.returncode == 0
    delivered = [s['replayer_records_total{outcome=delivered}'] for s in scrapes]
    assert delivered == sorted(delivered) and delivered[-1] > 0, "a counter that grows"
    assert delivered[-1] <= HELD_AFTER, "scraped while the run was going on"
    last = scrapes[-1]
    assert last["replayer_requests_in_flight{}"] <= 8
    assert last["replayer_request_latency_seconds_count{}"] == delivered[-1]
    summary = orjson.loads((out / SUMMARY).read_bytes())
    assert summary["delivered"] == 1500


async def test_progress_lines_when_stderr_is_not_a_terminal(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator(latency_ms=LatencyModel(10.0))
    data = generated(tmp_path / "in.ndjson", records=600, users=200)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "replayer", "run", str(data), "--out", str(tmp_path / "out"),
        "--endpoint", emulator.url, "--no-batch", "--concurrency", "4", "--workers", "1",
        "--progress-interval", "0.5", env=ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)

    lines = [x for x in stderr.decode().splitlines() if "records/s" in x]
    assert len(lines) >= 2, stderr.decode()
    assert re.search(r"^100\.0% of records finished \(600 of 600\) \| .* delivered 600 failed 0 ",
                     lines[-1])
    assert "\x1b[" not in stderr.decode(), "no escape codes off a terminal"
    assert stdout.decode().startswith("finished:")
