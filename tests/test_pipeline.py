"""End to end through `replay()` against the emulator in process: what reached the server."""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from replayer.emulator import FaultConfig, LatencyModel
from replayer.engine.control import RunControl
from replayer.engine.intake import MEMORY_CAP, lane_cap
from replayer.engine.replay import replay
from replayer.output.layout import FAILURES, RESULTS, SUMMARY
from replayer.records import ExitCode
from tests.conftest import (
    DATA,
    TEST_KEY,
    StartEmulator,
    generated,
    input_records,
    read_rows,
    settings_for,
)


async def run_replay(settings: Any, paths: list[Path], out: Path, **kw: Any) -> Any:
    out.mkdir(exist_ok=True)
    return await replay(settings, [str(p) for p in paths], out, control=RunControl(),
                        rng=random.Random(7), **kw)


def expected_times(path: Path) -> dict[str, list[float]]:
    """Per user, the times of that user's valid records in input order."""
    per_user: dict[str, list[float]] = defaultdict(list)
    for _, rec in input_records(path):
        key = rec.get("userId") or rec.get("deviceId")
        per_user[key].append(rec["time"])
    return per_user


def received_times(state: dict[str, Any]) -> dict[str, list[float]]:
    return {user: [e["time"] for e in entries] for user, entries in state["users"].items()}


def assert_every_line_once(path: Path, out: Path) -> None:
    non_blank = {n for n, line in enumerate(path.read_bytes().splitlines(), 1) if line.strip()}
    rows = read_rows(out / RESULTS) + read_rows(out / FAILURES)
    lines = [r["line"] for r in rows]
    assert sorted(lines) == sorted(non_blank), "every non-blank line has exactly one row"


@pytest.mark.parametrize("batch", [False, True], ids=["start", "multi"])
async def test_many_sessions_few_users_keep_order_without_lock_conflicts(
    start_emulator: StartEmulator, tmp_path: Path, batch: bool
) -> None:
    emulator = await start_emulator(latency_ms=LatencyModel(1.0))
    data = generated(tmp_path / "in.ndjson", records=3000, users=12)
    settings = settings_for(emulator.url, concurrency=64, batch=batch)

    report = await run_replay(settings, [data], tmp_path / "out")

    state = await emulator.state()
    assert report.exit_code == ExitCode.OK
    assert state["counters"]["lock_conflicts"] == 0
    assert state["counters"]["requests_by_status"].keys() == {"200"}
    assert received_times(state) == expected_times(data)
    assert_every_line_once(data, tmp_path / "out")
    assert report.summary.delivered == 3000


async def test_invalid_lines_never_reach_the_server(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join([
        b'{"userId":"u1","time":1700000000}',
        b'{"userId":"u2","country":"USA","time":1700000001}',
        b"{broken",
        b"",
        b'[1,2]',
        b'{"userId":"u3","clientKey":"leaked-key-123","time":1700000002}',
        b'{"deviceId":"d1","time":1700000003,"bogus":1}',
        b'{"userId":"u4","time":1700000004}',
    ]) + b"\n")

    report = await run_replay(settings_for(emulator.url), [data], tmp_path / "out")

    state = await emulator.state()
    assert set(state["users"]) == {"u1", "u4"}
    assert report.exit_code == ExitCode.FAILURES
    failures = {r["line"]: r["kind"] for r in read_rows(tmp_path / "out" / FAILURES)}
    assert failures == {2: "invalid_value", 3: "invalid_json", 5: "not_an_object",
                        6: "secret_field", 7: "unknown_field"}
    assert_every_line_once(data, tmp_path / "out")
    for file in (tmp_path / "out").iterdir():
        assert b"leaked-key-123" not in file.read_bytes()


async def test_client_key_is_in_no_output_file(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator(faults=FaultConfig(status_503=0.2, status_429=0.1),
                                    seed=3)
    data = generated(tmp_path / "in.ndjson", records=300, users=30)
    out = tmp_path / "out"

    await run_replay(settings_for(emulator.url, max_attempts=10), [data], out)

    files = list(out.iterdir())
    assert {f.name for f in files} >= {RESULTS, FAILURES, SUMMARY, "journal.log", "run.json"}
    for file in files:
        assert TEST_KEY.encode() not in file.read_bytes(), file.name
    assert orjson.loads((out / SUMMARY).read_bytes())["settings"]["client_key"] == "[redacted]"


@pytest.mark.parametrize("batch", [False, True], ids=["start", "multi"])
async def test_requests_match_the_published_schema(
    start_emulator: StartEmulator, tmp_path: Path, batch: bool
) -> None:
    schema = orjson.loads((DATA / "start-request.schema.json").read_bytes())
    # The published schema requires userId, but the same docs accept deviceId alone.
    device_only = {**schema, "required": [r for r in schema["required"] if r != "userId"]}
    emulator = await start_emulator(record_requests=True)
    data = generated(tmp_path / "in.ndjson", records=200, users=40)

    await run_replay(settings_for(emulator.url, batch=batch), [data], tmp_path / "out")

    requests = (await emulator.state())["requests"]
    actions = []
    for request in requests:
        body = request.get("body", request)
        if batch:
            auth = {k: body[k] for k in ("appId", "clientKey", "apiVersion")}
            actions += [{**auth, **{k: v for k, v in a.items() if k != "action"}}
                        for a in body["data"]]
        else:
            actions.append(body)
    assert len(actions) == 200
    for action in actions:
        jsonschema.validate(action, schema if "userId" in action else device_only)


async def test_retryable_faults_end_delivered_in_order(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    faults = FaultConfig(status_500=0.05, status_502=0.05, status_503=0.05, status_429=0.05)
    emulator = await start_emulator(faults=faults, seed=11)
    data = generated(tmp_path / "in.ndjson", records=1000, users=50)

    report = await run_replay(settings_for(emulator.url, max_attempts=20, batch=False), [data],
                              tmp_path / "out")

    state = await emulator.state()
    assert report.exit_code == ExitCode.OK
    assert sum(state["counters"]["faults"].values()) > 50
    assert received_times(state) == expected_times(data)
    assert report.summary.retries > 0


async def test_invalid_access_key_stops_the_run(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    data = generated(tmp_path / "in.ndjson", records=5000, users=500)
    settings = dataclasses.replace(settings_for(emulator.url, concurrency=8),
                                   app_id="wrong-app")

    report = await run_replay(settings, [data], tmp_path / "out")

    state = await emulator.state()
    assert report.exit_code == ExitCode.INVALID_KEY
    assert state["counters"]["requests"] <= 16, "stops at once, not after every record"
    assert "invalid_key" in report.summary.stopped_because
    assert read_rows(tmp_path / "out" / RESULTS) == []


def test_lane_cap_leaves_room_for_users_per_slot_within_its_bounds() -> None:
    def cap(**overrides: Any) -> int:
        return lane_cap(settings_for("http://127.0.0.1:1/api", **overrides), paced=False)

    assert cap(batch=True, batch_actions=300) == 300
    assert cap(batch=False, concurrency=64) == MEMORY_CAP // (4 * 64)  # 78
    assert cap(batch=False, concurrency=1) == 256
    assert cap(batch=False, concurrency=1000) == 16
    paced = settings_for("http://127.0.0.1:1/api", batch=False, concurrency=64)
    assert lane_cap(paced, paced=True) == 16  # a paced read-ahead is small


@pytest.mark.parametrize("batch", [False, True], ids=["start", "multi"])
async def test_heavy_users_past_the_lane_cap_keep_their_order(
    start_emulator: StartEmulator, tmp_path: Path, batch: bool
) -> None:
    emulator = await start_emulator()
    data = tmp_path / "in.ndjson"
    # Two users of 700 records each, interleaved with light ones: past any lane's cap.
    lines = [orjson.dumps({"userId": f"heavy{i % 2}", "time": 1_700_000_000 + i})
             for i in range(1400)]
    lines += [orjson.dumps({"userId": f"light{i}", "time": 1_700_000_000 + i})
              for i in range(300)]
    data.write_bytes(b"\n".join(lines) + b"\n")

    report = await run_replay(settings_for(emulator.url, concurrency=4, batch=batch,
                                           batch_actions=50), [data], tmp_path / "out")

    state = await emulator.state()
    assert report.exit_code == ExitCode.OK
    assert received_times(state) == expected_times(data)
    assert len(read_rows(tmp_path / "out" / RESULTS)) == 1700


async def test_user_with_thousands_of_records_in_a_row_spills_and_keeps_order(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    data = tmp_path / "in.ndjson"
    lines = [orjson.dumps({"userId": "heavy", "time": 1_700_000_000 + i}) for i in range(3000)]
    lines += [orjson.dumps({"userId": f"light{i}", "time": 1_700_000_000 + i})
              for i in range(200)]
    data.write_bytes(b"\n".join(lines) + b"\n")

    report = await run_replay(settings_for(emulator.url, concurrency=16), [data],
                              tmp_path / "out")

    state = await emulator.state()
    assert report.exit_code == ExitCode.OK
    assert received_times(state) == expected_times(data)
    heavy = state["users"]["heavy"]
    light_last = max(e["seq"] for u, es in state["users"].items() if u != "heavy" for e in es)
    assert light_last < heavy[-1]["seq"], "the light users after the heavy one were not stalled"
