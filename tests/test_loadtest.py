"""Load-test mode: schedules and ramps on an injected clock, original pace, loops, durations,
thresholds, and latency that does not hide a stalled server."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from replayer.cli import main
from replayer.commands.console import print_summary
from replayer.config.settings import holds_schedule
from replayer.emulator import FaultConfig
from replayer.engine.control import RunControl
from replayer.engine.dispatch import FILL_WAIT_S
from replayer.engine.pacing import Pacer, ScheduleEnded, SchedulePacer
from replayer.engine.replay import replay
from replayer.engine.schedule import parse_rate
from replayer.output.layout import FAILURES, METRICS, RESULTS, SUMMARY
from replayer.records import ExitCode
from tests.conftest import FakeClock, StartEmulator, generated, read_rows, settings_for


async def run_replay(settings: Any, data: Path, out: Path, **kw: Any) -> Any:
    out.mkdir(exist_ok=True)
    kw.setdefault("rng", random.Random(3))
    return await replay(settings, [str(data)], out, control=RunControl(), **kw)


async def test_schedule_pacer_sends_each_request_at_its_planned_time() -> None:
    clock = FakeClock(start_s=50.0)
    schedule = parse_rate("10..30/2s,30..0/1s")
    pacer = SchedulePacer(schedule, clock=clock)

    planned = []
    with pytest.raises(ScheduleEnded):
        while True:
            planned.append(await pacer.wait())

    assert len(planned) == round(schedule.count_by(3.0)) == 55
    assert planned == [50.0 + schedule.time_of(k) for k in range(55)]  # type: ignore[operator]
    assert clock.now() == pytest.approx(planned[-1]), "slept until each request, no further"
    assert pacer.planned_by(1.0) == pytest.approx(15.0)  # (10 + 20) / 2 over the first second


async def test_a_ceiling_plans_nothing_each_request_is_timed_from_when_it_may_go() -> None:
    clock = FakeClock(start_s=7.0)
    pacer = Pacer(100.0, clock=clock)
    for k in range(5):  # the 100 ms window has room for 10: no wait for the pacer task
        assert await pacer.wait() == clock.now(), "no time planned from the rate"
        await clock.sleep(1.0 + k)  # a run far slower than its ceiling is not behind it


async def test_a_full_window_makes_senders_wait_for_the_pacer_task() -> None:
    # 2/s is one request per 0.5 s window: wide enough that a stalled machine cannot let
    # the window move on before the second request asks.
    pacer = Pacer(2.0, clock=FakeClock())
    await asyncio.wait_for(pacer.wait(), 1.0)  # room in the window: at once
    late = asyncio.ensure_future(pacer.wait())
    await asyncio.sleep(0.02)
    assert not late.done(), "the second request of a window waits"
    runner = asyncio.ensure_future(pacer.run())
    try:
        await asyncio.wait_for(late, 3.0)  # the pacer task grants it once the window moves
    finally:
        runner.cancel()


async def test_a_ramp_plans_then_ends_the_run_on_the_injected_clock(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    data = generated(tmp_path / "in.ndjson", records=2000, users=400)
    clock = FakeClock()
    settings = settings_for(emulator.url, batch=False, rate_schedule="100..300/2s,300..0/1s")

    report = await run_replay(settings, data, tmp_path / "out", clock=clock)

    assert report.summary.requests == 550  # 400 over the ramp up, 150 down to 0
    assert report.summary.stopped_by == "schedule"
    assert report.exit_code == ExitCode.OK
    last = parse_rate("100..300/2s,300..0/1s").time_of(549)
    assert sum(clock.sleeps) == pytest.approx(last), "virtual time ran to the last request"


async def test_original_pace_sends_at_recorded_offsets_divided_by_speed(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join([
        b'{"userId":"a","time":1700000000}',
        b'{"userId":"b","time":1700000020}',
        b'{"userId":"c"}',
        b'{"userId":"a","time":1700000050}',
    ]) + b"\n")
    clock = FakeClock()
    settings = settings_for(emulator.url, batch=False, pace="original", speed=10.0)

    report = await run_replay(settings, data, tmp_path / "out", clock=clock)

    assert clock.sleeps == pytest.approx([2.0, 3.0])  # 20 s and 30 s more, ten times faster
    [failure] = read_rows(tmp_path / "out" / FAILURES)
    assert (failure["line"], failure["kind"]) == (3, "missing_time")
    assert "time" in failure["message"]
    assert report.summary.delivered == 3


async def test_a_batched_schedule_sends_when_planned_not_when_the_read_ahead_fills(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    # Records trickle in at their recorded pace: the read-ahead never fills, and a batch
    # that waited for it would go FILL_WAIT_S late.
    emulator = await start_emulator()
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"".join(b'{"userId":"u%d","time":%d}\n' % (i, 1_700_000_000 + i)
                              for i in range(60)))
    settings = settings_for(emulator.url, pace="original", speed=40.0)  # 1.5 s

    report = await run_replay(settings, data, tmp_path / "out")

    assert report.summary.delivered == 60
    assert report.summary.request_latency_ms["scheduled"]["max"] < FILL_WAIT_S * 1000 / 2


def test_loop_suffixes_ids_per_pass_until_the_duration_ends(tmp_path: Path) -> None:
    data = tmp_path / "in.ndjson"
    data.write_bytes(b'{"userId":"u1","time":1700000000}\n{"deviceId":"d1"}\n')
    out = tmp_path / "out"

    result = CliRunner().invoke(main, ["run", str(data), "--out", str(out), "--loop",
                                       "--duration", "0.5s", "--rate", "40", "--no-batch"])

    assert result.exit_code == 0, result.output
    rows = read_rows(out / RESULTS)
    passes = {r.get("pass", 1) for r in rows}
    assert {1, 2, 3} <= passes, "several passes within the duration"
    second = [r for r in rows if r.get("pass") == 2]
    assert {(r["userId"], r["deviceId"]) for r in second} == {("u1-pass2", None),
                                                              (None, "d1-pass2")}
    summary = orjson.loads((out / SUMMARY).read_bytes())
    assert summary["stopped_by"] == "duration"


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--loop"], "--duration"), (["--rate", "10..x/5s"], "--rate"),
     (["--duration", "soon"], "--duration"), (["--fail-if", "p99>>1"], "--fail-if")],
    ids=["loop-without-duration", "bad-schedule", "bad-duration", "bad-threshold"],
)
def test_bad_load_test_options_are_usage_errors(tmp_path: Path, args: list[str],
                                                message: str) -> None:
    data = generated(tmp_path / "in.ndjson", records=3, users=1)
    result = CliRunner().invoke(main, ["run", str(data), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_thresholds_decide_the_exit_code(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=200, users=20)

    failing = CliRunner().invoke(main, ["run", str(data), "--out", str(tmp_path / "a"),
                                        "--fail-if", "p50>0.001ms", "--fail-if", "failed>5"])
    passing = CliRunner().invoke(main, ["run", str(data), "--out", str(tmp_path / "b"),
                                        "--fail-if", "error_rate>1%", "--fail-if", "p99>3600s"])

    assert failing.exit_code == ExitCode.THRESHOLD, failing.output
    assert "p50 (scheduled)" in failing.output and "FAIL" in failing.output
    assert passing.exit_code == ExitCode.OK, passing.output
    verdicts = orjson.loads((tmp_path / "a" / SUMMARY).read_bytes())["thresholds"]
    assert [(v["threshold"], v["failed"]) for v in verdicts] == [("p50>0.001ms", True),
                                                                ("failed>5", False)]


async def test_abort_on_fail_stops_the_run_early(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator(faults=FaultConfig(status_500=1.0))
    data = generated(tmp_path / "in.ndjson", records=3000, users=600)
    settings = settings_for(emulator.url, batch=False, rate_per_s=300.0, max_attempts=1,
                            fail_if=("error_rate>10%",), abort_on_fail=True)

    report = await run_replay(settings, data, tmp_path / "out")

    assert report.exit_code == ExitCode.THRESHOLD
    assert report.summary.stopped_by == "threshold"
    assert report.summary.records < 3000, "stopped long before the input ran out"


async def test_a_stalled_server_shows_in_scheduled_latency_not_in_service_latency(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    emulator = await start_emulator(faults=FaultConfig(stall_after_s=0.6, stall_for_s=1.0))
    data = generated(tmp_path / "in.ndjson", records=5000, users=2500)
    settings = settings_for(emulator.url, batch=False, rate_per_s=200.0, concurrency=4,
                            duration_s=2.6)

    report = await run_replay(settings, data, tmp_path / "out")

    views = report.summary.request_latency_ms
    # About 200 requests were planned during the one-second stall; each went out late.
    assert views["scheduled"]["p90"] > 300.0
    assert views["service"]["p90"] < 100.0, "most requests were quick once sent"
    assert report.summary.behind_schedule_ms["max"] > 500.0
    rows = [orjson.loads(x) for x in (tmp_path / "out" / METRICS).read_bytes().splitlines()]
    assert max(r["scheduled_latency_ms"]["p99"] or 0 for r in rows) > 500.0
    planned = sum(r["planned"] for r in rows)
    assert planned == pytest.approx(200.0 * rows[-1]["elapsed_s"], rel=0.05)


@pytest.mark.parametrize(
    ("settings", "held"),
    [({"rate_per_s": 8.0}, False), ({}, False), ({"rate": "auto", "rate_per_s": None}, False),
     ({"duration_s": 5.0}, False), ({"fail_if": ["p99>1s"]}, False),
     ({"rate_per_s": 8.0, "duration_s": 5.0}, True), ({"rate_per_s": 8.0, "loop": True}, True),
     ({"rate_per_s": 8.0, "fail_if": ["p99>1s"]}, True), ({"rate_schedule": "1..9/5s"}, True),
     ({"pace": "original"}, True)],
    ids=["ceiling", "unpaced", "auto", "unpaced-duration", "unpaced-thresholds",
         "rate-duration", "rate-loop", "rate-thresholds", "schedule", "original"],
)
def test_only_a_load_tests_rate_or_the_recorded_pace_holds_a_schedule(
    settings: dict[str, Any], held: bool
) -> None:
    assert holds_schedule(settings) is held
    assert settings_for("http://127.0.0.1:1/api", **settings).holds_schedule() is held


async def test_a_ceiling_backfill_slower_than_its_rate_is_not_behind_schedule(
    start_emulator: StartEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --rate 200 is a ceiling: a 1.5 s stall leaves the run 300 requests short of it for
    # good, which is no lag to alarm about (the old pacer called it 1.5 s behind schedule).
    emulator = await start_emulator(faults=FaultConfig(stall_after_s=0.3, stall_for_s=1.5))
    data = generated(tmp_path / "in.ndjson", records=400, users=200)
    settings = settings_for(emulator.url, batch=False, rate_per_s=200.0, concurrency=4)

    report = await run_replay(settings, data, tmp_path / "out")
    print_summary(report.summary, tmp_path / "out")

    s = report.summary
    assert s.delivered == 400
    assert s.behind_schedule_ms["max"] < 250.0, "a ceiling plans no time to fall behind"
    views = s.request_latency_ms
    assert views["scheduled"]["p50"] < views["service"]["p50"] + 50.0
    assert "behind schedule" not in capsys.readouterr().out
    rows = read_rows(tmp_path / "out" / METRICS)
    assert all(r["planned"] is None for r in rows), "a ceiling plans no request"
    assert not s.held_schedule


async def test_a_load_test_that_falls_behind_says_so(
    start_emulator: StartEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = await start_emulator(faults=FaultConfig(stall_after_s=0.2, stall_for_s=1.6))
    data = generated(tmp_path / "in.ndjson", records=800, users=400)
    settings = settings_for(emulator.url, batch=False, rate_per_s=200.0, concurrency=2,
                            duration_s=2.2)

    report = await run_replay(settings, data, tmp_path / "out")
    print_summary(report.summary, tmp_path / "out")

    assert report.summary.held_schedule
    assert report.summary.behind_schedule_ms["p99"] > 1000.0
    assert "behind schedule: p99" in capsys.readouterr().out
