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

from replayer.engine import intake
from replayer.engine.control import RunControl
from replayer.engine.replay import replay
from replayer.output.summary import RunSummary
from tests.conftest import REPO, StartEmulator, generated, settings_for

TOLERANCE = 0.10  # the promise the README makes
SMALL_READ_AHEAD = 4_000  # records: an input three times as large crosses it twice over

CASES: dict[str, tuple[str, dict[str, Any], int]] = {
    # (input, settings, read-ahead to use; 0 keeps the run's own)
    "samples": ("samples", {}, 0),
    "generated-batched": ("8000:800", {}, 0),
    "generated-no-batch": ("2000:400", {"batch": False}, 0),
    # A user's records meet in one call only when they are read before it goes: over a
    # read-ahead much smaller than the input, which records meet depends on how answers
    # and reading interleave, which the dry run has to imitate.
    "beyond-the-read-ahead": ("12000:1500", {}, SMALL_READ_AHEAD),
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


@pytest.mark.parametrize(("spec", "overrides", "read_ahead"), CASES.values(), ids=CASES.keys())
async def test_the_dry_run_counts_the_calls_and_lookups_the_real_run_makes(
    start_emulator: StartEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    spec: str, overrides: dict[str, Any], read_ahead: int,
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
    for name in ("requests", "user_lookups"):
        estimate, actual = getattr(dry, name), getattr(real, name)
        assert abs(estimate - actual) <= TOLERANCE * actual, (name, estimate, actual)
