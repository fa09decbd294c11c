"""The CLI as a real process: SIGTERM/SIGINT drain and exit resumable; SIGKILL loses nothing."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from replayer.emulator import LatencyModel
from replayer.output.layout import FAILURES, RESULTS, SUMMARY
from tests.conftest import (
    TEST_APP_ID,
    TEST_KEY,
    Emulator,
    StartEmulator,
    generated,
    input_records,
    read_rows,
)

ENV = {**os.environ, "LEANPLUM_APP_ID": TEST_APP_ID, "LEANPLUM_CLIENT_KEY": TEST_KEY}


async def spawn(data: Path, out: Path, url: str, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "replayer", "run", str(data), "--out", str(out),
        # No preflight: some of these emulators answer nothing for 20 s, on purpose.
        "--endpoint", url, "--no-preflight", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
    )


async def until(predicate: Any, *, timeout_s: float = 30.0) -> None:
    """Polls a condition on files the child writes (the only window we have into it)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


def has_rows(out: Path) -> bool:
    """Some result row is on disk (in a worker's folder while a multi-worker run goes on)."""
    return any(p.stat().st_size > 0 for p in out.rglob(RESULTS))


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


async def assert_combined_run_is_whole(data: Path, out: Path, emulator: Emulator) -> None:
    """Every line has one row; the server got every record, in order; duplicates are marked."""
    rows = read_rows(out / RESULTS) + read_rows(out / FAILURES)
    assert sorted(r["line"] for r in rows) == [n for n, _ in input_records(data)]
    state = await emulator.state()
    assert state["counters"]["lock_conflicts"] == 0
    line_time = {n: rec["time"] for n, rec in input_records(data)}
    expected: dict[str, list[float]] = defaultdict(list)
    for _, rec in input_records(data):
        expected[rec.get("userId") or rec["deviceId"]].append(rec["time"])
    received = {u: [e["time"] for e in es] for u, es in state["users"].items()}
    for user, times in expected.items():
        assert list(dict.fromkeys(received.get(user, []))) == times, user
    twice = {t for ts in received.values() for t in ts if ts.count(t) > 1}
    marked = {line_time[r["line"]] for r in rows
              if r.get("possible_duplicate") or r.get("ambiguous_attempts")}
    assert twice <= marked


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
async def test_signal_drains_exits_resumable_and_resume_completes(
    start_emulator: StartEmulator, tmp_path: Path, signum: int, code: int
) -> None:
    emulator = await start_emulator(latency_ms=LatencyModel(5.0))
    data = generated(tmp_path / "in.ndjson", records=4000, users=200)
    out = tmp_path / "out"
    proc = await spawn(data, out, emulator.url, "--concurrency", "16", "--no-batch")
    await until(lambda: has_rows(out))

    proc.send_signal(signum)
    returncode, stdout, stderr = await finish(proc)

    summary = orjson.loads((out / SUMMARY).read_bytes())
    assert returncode == code, stderr
    assert summary["state"] == "interrupted"
    assert summary["unfinished"] > 0
    assert "--resume" in summary["resume_with"] and "--resume" in stdout
    rows = read_rows(out / RESULTS)
    assert len({r["line"] for r in rows}) == len(rows), "no line twice"

    resumed = await spawn(data, out, emulator.url, "--resume", "--no-batch")
    returncode, stdout, stderr = await finish(resumed)

    assert returncode == 0, stderr
    assert orjson.loads((out / SUMMARY).read_bytes())["delivered"] == 4000
    await assert_combined_run_is_whole(data, out, emulator)


async def test_second_sigint_stops_at_once_with_consistent_outputs(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator(latency_ms=LatencyModel(20_000.0))  # nothing answers
    data = generated(tmp_path / "in.ndjson", records=200, users=50)
    out = tmp_path / "out"
    proc = await spawn(data, out, emulator.url, "--drain-timeout", "60")
    await until(lambda: any(p.stat().st_size for p in out.rglob("journal.log")))

    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    async with asyncio.timeout(10):  # past the start line, to the signal's own line
        line = b"replaying"
        while line.startswith(b"replaying"):
            line = await proc.stderr.readline()
    assert b"again to stop at once" in line
    proc.send_signal(signal.SIGINT)
    returncode, _, err = await finish(proc)  # within finish()'s bound, far below the drain timeout

    summary = orjson.loads((out / SUMMARY).read_bytes())
    assert returncode == 130, err
    assert summary["state"] == "interrupted"
    assert summary["delivered"] == 0 and summary["unfinished"] > 0
    assert read_rows(out / RESULTS) == []


@pytest.mark.parametrize(
    ("seed", "mode"),
    [(1, ["--no-batch"]), (2, ["--no-batch"]), (3, ["--no-batch"]),
     (4, ["--batch-users", "4", "--batch-actions", "8"])],
    ids=["start-1", "start-2", "start-3", "multi-4"],
)
async def test_sigkill_at_a_random_moment_then_resume_loses_nothing(
    start_emulator: StartEmulator, tmp_path: Path, seed: int, mode: list[str]
) -> None:
    emulator = await start_emulator(latency_ms=LatencyModel(2.0))
    data = generated(tmp_path / "in.ndjson", records=3000, users=300, seed=seed)
    out = tmp_path / "out"
    proc = await spawn(data, out, emulator.url, "--concurrency", "32", *mode)
    await until(lambda: has_rows(out))
    await asyncio.sleep(random.Random(seed).uniform(0.0, 0.4))

    proc.kill()
    await proc.wait()
    assert not (out / SUMMARY).exists(), "killed mid-run, before it could finish"
    assert len(read_rows(out / RESULTS)) < 3000
    resumed = await spawn(data, out, emulator.url, "--resume", *mode)
    returncode, _stdout, stderr = await finish(resumed)

    assert returncode == 0, stderr
    await assert_combined_run_is_whole(data, out, emulator)
    summary = orjson.loads((out / SUMMARY).read_bytes())
    assert summary["delivered"] == 3000
    assert summary["resumed"]["lines_already_done"] > 0
