"""The dry run's estimate holds: it counts the calls and user lookups the real run makes.

Each case replays the same input twice against the same in-process emulator, once with
--dry-run and once for real, and compares `requests` and `user_lookups` in summary.json.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest

from replayer.commands.console import print_summary
from replayer.emulator import LatencyModel
from replayer.engine import intake
from replayer.engine.control import RunControl
from replayer.engine.replay import replay
from replayer.output.summary import ESTIMATED, RunSummary
from tests.conftest import REPO, StartEmulator, generated, settings_for

TOLERANCE = 0.10  # the promise the README makes
SMALL_READ_AHEAD = 4_000  # records: an input three times as large crosses it twice over

CASES: dict[str, tuple[str, dict[str, Any], int, bool]] = {
    # (input, settings, read-ahead to use (0: the run's own), larger than the read-ahead)
    "samples": ("samples", {}, 0, False),
    "generated-batched": ("8000:800", {}, 0, False),
    "generated-no-batch": ("2000:400", {"batch": False}, 0, False),
    "generated-paced": ("3000:600", {"rate_per_s": 50.0}, 0, True),  # reads 2,000 ahead
    # Over a read-ahead smaller than the input, which records of a user meet in one call
    # depends on how answers and reading interleave: the estimate is that of a fast server.
    "beyond-the-read-ahead": ("12000:1500", {}, SMALL_READ_AHEAD, True),
}


def input_for(spec: str, folder: Path) -> Path:
    if spec == "samples":
        return REPO / "samples" / "sessions.ndjson"
    records, users = (int(n) for n in spec.split(":"))
    return generated(folder / "in.ndjson", records=records, users=users)


async def run_once(settings: Any, data: Path, out: Path) -> RunSummary:
    out.mkdir()
    report = await replay(settings, [str(data)], out, control=RunControl(),
                          rng=random.Random(5))
    return report.summary


@pytest.mark.parametrize(("spec", "overrides", "read_ahead", "beyond"), CASES.values(),
                         ids=CASES.keys())
async def test_the_dry_run_counts_the_calls_and_lookups_the_real_run_makes(
    start_emulator: StartEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    spec: str, overrides: dict[str, Any], read_ahead: int, beyond: bool,
) -> None:
    if read_ahead:
        monkeypatch.setattr(intake, "MEMORY_CAP", read_ahead)
    emulator = await start_emulator()
    data = input_for(spec, tmp_path)
    settings = settings_for(emulator.url, **overrides)

    dry = await run_once(dataclasses.replace(settings, dry_run=True), data, tmp_path / "dry")
    real = await run_once(settings, data, tmp_path / "real")

    assert real.retries == 0, "a retry is a call no dry run can foresee"
    assert dry.records == real.records == real.delivered + real.failed
    for name in ESTIMATED:
        estimate, actual = getattr(dry, name), getattr(real, name)
        assert abs(estimate - actual) <= TOLERANCE * actual, (name, estimate, actual)
    # The upper end of the range is given only when the input did not fit the read-ahead.
    assert (dry.estimate_max is not None) is beyond


async def test_against_a_slower_server_the_real_run_is_within_the_estimates_range(
    start_emulator: StartEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Answers slower than the reading: calls go out as answers free their slots, and a
    # user's records read meanwhile wait for the next one.
    monkeypatch.setattr(intake, "MEMORY_CAP", SMALL_READ_AHEAD)
    emulator = await start_emulator(latency_ms=LatencyModel(5.0, 50.0), seed=7)
    data = input_for("12000:1500", tmp_path)
    settings = settings_for(emulator.url)

    dry = await run_once(dataclasses.replace(settings, dry_run=True), data, tmp_path / "dry")
    real = await run_once(settings, data, tmp_path / "real")

    assert real.retries == 0 and dry.estimate_max is not None
    print_summary(dry, tmp_path / "dry")
    assert (f"a server slower than the reading would take up to "
            f"{dry.estimate_max['requests']} calls and {dry.estimate_max['user_lookups']} "
            "lookups") in capsys.readouterr().out
    for name in ESTIMATED:
        low, high, actual = getattr(dry, name), dry.estimate_max[name], getattr(real, name)
        assert low * (1 - TOLERANCE) <= actual <= high * (1 + TOLERANCE), (name, low, high, actual)
