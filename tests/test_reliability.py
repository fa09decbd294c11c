"""Retries, outages, bad input and chaos, end to end against servers in process."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from replayer.emulator import FaultConfig
from replayer.engine.control import RunControl
from replayer.engine.replay import replay
from replayer.engine.retry import RetryPolicy
from replayer.output.layout import FAILURES, RESULTS
from replayer.records import ExitCode
from tests.conftest import (
    DATA,
    FakeClock,
    StartEmulator,
    generated,
    input_records,
    read_rows,
    settings_for,
)


async def run_replay(settings: Any, data: Path, out: Path, **kw: Any) -> Any:
    out.mkdir(exist_ok=True)
    kw.setdefault("rng", random.Random(5))
    return await replay(settings, [str(data)], out, control=RunControl(), **kw)


def one_record(tmp_path: Path) -> Path:
    data = tmp_path / "one.ndjson"
    data.write_bytes(b'{"userId":"solo","time":1700000000}\n')
    return data


async def test_retry_after_is_honoured_on_the_injected_clock(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator(faults=FaultConfig(status_429_retry_after=1.0,
                                                       retry_after_s=7))
    clock = FakeClock()

    # throttle_wait_max_s=0: each throttling 429 is an attempt (by default it is free).
    report = await run_replay(settings_for(emulator.url, max_attempts=5, throttle_wait_max_s=0.0),
                              one_record(tmp_path), tmp_path / "out", clock=clock)

    assert clock.sleeps == [7.0, 7.0, 7.0, 7.0]
    assert report.exit_code == ExitCode.FAILURES
    [row] = read_rows(tmp_path / "out" / FAILURES)
    assert (row["kind"], row["attempts"], row["http_status"]) == ("rate_limited", 5, 429)


async def test_backoff_follows_the_policy_on_the_injected_clock(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator(faults=FaultConfig(status_503=1.0))
    clock = FakeClock()
    settings = settings_for(emulator.url, max_attempts=4, backoff_base_s=2.0,
                            backoff_max_s=60.0, outage_window_s=3600.0)

    await run_replay(settings, one_record(tmp_path), tmp_path / "out", clock=clock,
                     rng=random.Random(42))

    policy, rng = RetryPolicy(max_attempts=4), random.Random(42)
    expected = [policy.next_delay(n, rng) for n in (1, 2, 3)]
    assert clock.sleeps == expected
    for delay, nominal in zip(clock.sleeps, (2.0, 4.0, 8.0), strict=True):
        assert nominal * 0.5 <= delay <= nominal * 1.5
    [row] = read_rows(tmp_path / "out" / FAILURES)
    assert (row["kind"], row["attempts"]) == ("server_error", 4)


async def test_outage_pauses_and_probes_instead_of_failing_records(tmp_path: Path) -> None:
    down_until = time.monotonic() + 1.5
    seen = {"down": 0, "up": 0}
    answer = (DATA / "start-response.json").read_bytes()

    async def api(request: web.Request) -> web.Response:
        await request.read()
        if time.monotonic() < down_until:
            seen["down"] += 1
            return web.Response(status=503, text="<html>down</html>", content_type="text/html")
        seen["up"] += 1
        return web.Response(body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_post("/api", api)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    data = generated(tmp_path / "in.ndjson", records=60, users=15)
    settings = settings_for(str(server.make_url("/api")), batch=False, concurrency=8,
                            max_attempts=4,
                            backoff_base_s=0.1, backoff_max_s=0.4, outage_window_s=0.3,
                            outage_probe_max_s=0.2)
    try:
        report = await run_replay(settings, data, tmp_path / "out")
    finally:
        await server.close()

    assert report.exit_code == ExitCode.OK, report.summary
    assert report.summary.outages == 1
    assert seen["up"] == 60
    # Without the pause every record would have spent its 4 attempts: 240 failed calls.
    assert seen["down"] < 60


async def test_bad_input_each_fails_with_its_line_and_the_run_goes_on(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    lines = [
        b'\xef\xbb\xbf{"userId":"bom","time":1700000000}',  # 1 BOM: delivered
        b'{"userId":"crlf","time":1700000001}\r',  # 2 CRLF: delivered
        b'{"userId":"x",',  # 3 malformed JSON
        b'"just a string"',  # 4 not an object
        b'{"userId":"\xff\xfe"}',  # 5 invalid UTF-8
        b'{"userId":"big","city":"' + b"a" * (10 << 20) + b'"}',  # 6 a 10 MB line
        b'{"userId":"nul"}\x00',  # 7 NUL byte
        b'{"deviceId":"d","userAttributes":{"1":true}}',  # 8 numeric attribute name
        b'{"userId":"u","locationAccuracyType":"SATELLITE"}',  # 9 bad enum
        b'{"userId":"u","time":1700000000000}',  # 10 milliseconds
        b'{"userId":"u","devMode":"yes"}',  # 11 not a boolean
        b'{"time":1700000000}',  # 12 no user
        b'{"userId":"' + b"u" * 401 + b'"}',  # 13 id too long
        b'{"userId":"last","time":1700000002}',  # 14 delivered
    ]
    data = tmp_path / "bad.ndjson"
    data.write_bytes(b"\n".join(lines) + b"\n")

    report = await run_replay(settings_for(emulator.url), data, tmp_path / "out")

    delivered = {r["line"] for r in read_rows(tmp_path / "out" / RESULTS)}
    failed = {r["line"]: r for r in read_rows(tmp_path / "out" / FAILURES)}
    assert delivered == {1, 2, 14}
    assert set(failed) == set(range(3, 14))
    kinds = {n: failed[n]["kind"] for n in failed}
    assert kinds == {3: "invalid_json", 4: "not_an_object", 5: "invalid_utf8",
                     6: "line_too_long", 7: "invalid_json", 8: "invalid_attribute_name",
                     9: "invalid_value", 10: "invalid_time", 11: "wrong_type",
                     12: "missing_user_id", 13: "id_too_long"}
    assert all(row["message"] for row in failed.values())
    assert len(orjson.dumps(failed[6])) < 10_000, "a huge line is not copied into failures"
    assert set((await emulator.state())["users"]) == {"bom", "crlf", "last"}
    assert report.summary.lines_read == 14


CHAOS = FaultConfig(status_500=0.02, status_502=0.02, status_503=0.02, html_share=0.5,
                    status_429=0.02, status_429_retry_after=0.005, retry_after_s=1,
                    drop_before=0.01, drop_after=0.01, slow_after=0.005, slow_delay_s=0.6,
                    truncated_body=0.01)


@pytest.mark.parametrize("batch", [False, True], ids=["start", "multi"])
async def test_chaos_every_line_once_order_kept_duplicates_marked(
    start_emulator: StartEmulator, tmp_path: Path, batch: bool
) -> None:
    emulator = await start_emulator(faults=CHAOS, seed=2024)
    records = 20_000 if not batch else 30_000
    data = generated(tmp_path / "in.ndjson", records=records, users=500, seed=3)
    settings = settings_for(emulator.url, concurrency=64, timeout_s=0.3, max_attempts=30,
                            backoff_base_s=0.01, backoff_max_s=0.1, batch=batch,
                            batch_users=20, batch_actions=60)

    report = await run_replay(settings, data, tmp_path / "out")

    state = await emulator.state()
    counters = state["counters"]
    assert sum(counters["faults"].values()) >= 0.10 * counters["requests"]
    assert counters["lock_conflicts"] == 0
    assert report.exit_code == ExitCode.OK, report.summary
    rows = read_rows(tmp_path / "out" / RESULTS)
    assert sorted(r["line"] for r in rows) == list(range(1, records + 1))
    assert read_rows(tmp_path / "out" / FAILURES) == []

    line_time = {n: rec["time"] for n, rec in input_records(data)}
    received: dict[str, list[float]] = {u: [e["time"] for e in es]
                                        for u, es in state["users"].items()}
    expected: dict[str, list[float]] = defaultdict(list)
    for n, rec in input_records(data):
        expected[rec.get("userId") or rec["deviceId"]].append(rec["time"])
    for user, times in expected.items():
        first_seen = list(dict.fromkeys(received[user]))
        assert first_seen == times, f"{user}: every record arrived, in input order"
    accepted_twice = {t for ts in received.values() for t in ts if ts.count(t) > 1}
    marked = {line_time[r["line"]] for r in rows if r.get("ambiguous_attempts")}
    assert accepted_twice <= marked, "every duplicate at the server is marked ambiguous"
    assert report.summary.retries > 0
