"""RunSummary: one codec, one merge; a single run and a sharded run of one input agree."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from replayer.engine.control import RunControl
from replayer.engine.replay import replay
from replayer.observe.stats import Histogram
from replayer.output import summary as s
from replayer.records import ExitCode
from replayer.source.shard import Shard
from tests.conftest import StartEmulator, generated, settings_for

WALL = 1_800_000_000.0
BLOCKED = frozenset({"u000007", "u000042"})


def part(*, delivered: int = 0, failed: dict[str, int] | None = None,
         code: ExitCode = ExitCode.OK, latencies: tuple[float, ...] = (), **counts: Any
         ) -> s.RunSummary:
    hist = Histogram()
    for value in latencies:
        hist.add(value)
    return s.build(
        s.Counts(delivered=delivered, failed_by_kind=failed or {}, **counts),
        {"delivered": hist}, exit_code=code, started_wall=WALL, elapsed_s=2.0,
        settings={"workers": 1}, inputs=["in.ndjson"], run_id="r1")


def merged(parts: list[s.RunSummary], *, expected: int | None = None,
           extra_codes: tuple[int, ...] = ()) -> s.RunSummary:
    return s.merge(parts, expected=len(parts) if expected is None else expected,
                   started_wall=WALL, elapsed_s=4.0, settings={"workers": 2},
                   inputs=["in.ndjson"], run_id="r1", extra_codes=extra_codes)


def test_codec_round_trips_every_field() -> None:
    one = dataclasses.replace(part(delivered=3, failed={"timeout": 1}, latencies=(1.0, 5.0)),
                              dry_run=True, stopped_by="duration", resume_with="replayer ...",
                              resumed={"lines_already_done": 2, "resent_in_flight": 0},
                              layout=s.Layout(2, "1/2", ({"state": "finished"},)),
                              estimate_max={"requests": 9, "user_lookups": 40})
    assert s.decode(s.encode(one), source="x") == one


def test_a_dry_runs_range_adds_up_over_workers_exact_where_one_fitted() -> None:
    beyond = dataclasses.replace(part(requests=5, user_lookups=20), dry_run=True,
                                 estimate_max={"requests": 9, "user_lookups": 40})
    fitted = dataclasses.replace(part(requests=3, user_lookups=7), dry_run=True)

    assert merged([beyond, fitted]).estimate_max == {"requests": 12, "user_lookups": 47}
    assert merged([fitted, fitted]).estimate_max is None
    assert b"estimate_max" not in s.encode(merged([fitted]))


@pytest.mark.parametrize(("data", "message"), [
    (b"{", "not JSON"),
    (b"[]", "not an object"),
    (b'{"version": 1}', "version"),
    (b'{"version": 2}', "missing"),
], ids=["torn", "array", "old-version", "missing-fields"])
def test_decode_refuses_what_replayer_did_not_write(data: bytes, message: str) -> None:
    with pytest.raises(s.SummaryError, match=message):
        s.decode(data, source="workers/0/summary.json")


def test_decode_refuses_wrong_types() -> None:
    doc = s.as_dict(part())
    doc["delivered"] = "3"
    import orjson

    with pytest.raises(s.SummaryError, match="delivered"):
        s.decode(orjson.dumps(doc), source="x")


@pytest.mark.parametrize(("codes", "failed", "expected"), [
    ((ExitCode.OK, ExitCode.OK), {}, ExitCode.OK),
    ((ExitCode.OK, ExitCode.OK), {"timeout": 1}, ExitCode.FAILURES),
    ((ExitCode.FAILURES, ExitCode.SIGTERM), {}, ExitCode.SIGTERM),
    ((ExitCode.SIGINT, ExitCode.INVALID_KEY), {}, ExitCode.INVALID_KEY),
    ((ExitCode.OK, ExitCode.OUTPUT), {}, ExitCode.OUTPUT),
], ids=["all-ok", "failures-count", "signal-wins", "key-wins", "output-wins"])
def test_merged_exit_code_is_the_worst(codes: tuple[ExitCode, ...], failed: dict[str, int],
                                       expected: ExitCode) -> None:
    parts = [part(code=codes[0], failed=failed), part(code=codes[1])]
    assert merged(parts).exit_code == expected


@pytest.mark.parametrize("status", [-9, -15, 99, None], ids=["SIGKILL", "SIGTERM", "odd", "none"])
def test_a_child_status_nobody_can_vouch_for_is_a_dead_worker(status: int | None) -> None:
    assert ExitCode.of_child(status) is ExitCode.WORKER
    assert merged([part(), part()], extra_codes=(0, -9)).exit_code == ExitCode.WORKER


def test_a_missing_part_makes_the_run_aborted_by_a_dead_worker() -> None:
    result = merged([part(delivered=5)], expected=2)
    assert (result.exit_code, result.state) == (ExitCode.WORKER, "aborted")
    assert result.stopped_because is not None and "worker" in result.stopped_because


def test_counts_and_histograms_add_up() -> None:
    a = part(delivered=2, failed={"timeout": 1}, latencies=(1.0, 2.0), requests=3,
             lines_read=10, records_this_session=3)
    b = part(delivered=4, failed={"timeout": 2, "blocked": 1}, latencies=(10.0,), requests=5,
             lines_read=10, records_this_session=7)
    result = merged([a, b])
    assert (result.delivered, result.failed, result.records) == (6, 4, 10)
    assert result.failures_by_kind == {"blocked": 1, "timeout": 3}
    assert result.requests == 8 and result.lines_read == 10
    assert result.latency_ms["max"] == 10.0
    assert sum(n for _, n in result.latency_histogram_ms["delivered"]) == 3
    assert result.records_per_s == 2.5  # 10 records of this session in 4 s


def test_resume_with_only_when_resumable() -> None:
    finished = s.merge([part()], expected=1, started_wall=WALL, elapsed_s=1, settings={},
                       inputs=[], run_id="", resume_with="replayer run --resume")
    stopped = s.merge([part(code=ExitCode.SIGTERM)], expected=1, started_wall=WALL,
                      elapsed_s=1, settings={}, inputs=[], run_id="",
                      resume_with="replayer run --resume")
    assert finished.resume_with is None
    assert stopped.resume_with == "replayer run --resume"


# Fields that depend on how the run was spread over processes (or on the clock).
LAYOUT_FIELDS = {"requests", "user_lookups", "records_per_s", "latency_ms", "failed_latency_ms",
                 "latency_histogram_ms", "latency_max_ms", "request_latency_ms",
                 "behind_schedule_ms", "started_at", "ended_at", "elapsed_s", "settings",
                 "layout", "retries", "run_id"}


async def test_a_single_run_and_a_sharded_run_agree(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    data = generated(tmp_path / "in.ndjson", records=1200, users=150)
    with data.open("ab") as f:
        f.write(b"not json\n{\"deviceId\": 5}\n")
    emulator = await start_emulator(blocked_users=BLOCKED)
    settings = settings_for(emulator.url)
    single_dir = tmp_path / "single"
    single_dir.mkdir()
    single = await replay(settings, [str(data)], single_dir, control=RunControl())
    parts = []
    for index in range(2):
        folder = tmp_path / f"shard{index}"
        folder.mkdir()
        report = await replay(settings, [str(data)], folder, control=RunControl(),
                              shard=Shard(index, 2))
        parts.append(report.summary)
    combined = s.merge(parts, expected=2, started_wall=WALL, elapsed_s=1.0,
                       settings=parts[0].settings, inputs=parts[0].inputs, run_id="")
    assert single.summary.failed > 0 and single.summary.delivered > 0
    for f in dataclasses.fields(s.RunSummary):
        if f.name not in LAYOUT_FIELDS:
            assert getattr(combined, f.name) == getattr(single.summary, f.name), f.name


def test_a_resume_of_a_run_that_wrote_failures_never_exits_0(tmp_path: Path) -> None:
    # The first session ends with failures; its resume has nothing left to send. The
    # run as a whole still failed some records: exit 1, the failures counted.
    from click.testing import CliRunner

    from replayer.cli import main

    data = generated(tmp_path / "in.ndjson", records=40, users=8)
    with data.open("ab") as f:
        f.write(b"not json\n")
    out = tmp_path / "out"
    first = CliRunner().invoke(main, ["run", str(data), "--out", str(out), "-q"])
    assert first.exit_code == ExitCode.FAILURES, first.output
    again = CliRunner().invoke(main, ["run", str(data), "--out", str(out), "-q", "--resume"])
    assert again.exit_code == ExitCode.FAILURES, again.output
    import orjson

    summary = orjson.loads((out / "summary.json").read_bytes())
    assert (summary["failed"], summary["records"], summary["state"]) == (1, 41, "finished")
