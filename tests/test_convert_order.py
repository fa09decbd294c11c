"""Order-free conversion: the same events in any order, split over any files, give the same
bytes; a small memory limit spills instead of refusing; duplicates count once."""

from __future__ import annotations

import gzip
import random
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from replayer.source.convert.command import convert
from tests.test_convert_sessions import BUILD, GAP, T

SOURCES = sorted(BUILD)


def _events(source: str, *, count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` events of 40 users over a day, sessions and pauses mixed, in time order."""
    rng = random.Random(seed)
    build = BUILD[source]
    rows = []
    for i in range(count):
        user = f"u{rng.randrange(40)}"
        t = T + i * 37 + rng.random()
        session = int(t // (3 * GAP))
        rows.append(build(user, t, session) if source in ("amplitude", "ga4") else build(user, t))
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    data = b"".join(orjson.dumps(row) + b"\n" for row in rows)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def _convert(paths: list[Path], out: Path, source: str, *flags: str) -> bytes:
    result = CliRunner().invoke(convert, ["--from", source, *map(str, paths), "-o", str(out),
                                          *flags])
    assert result.exit_code == 0, result.output
    return out.read_bytes()


@pytest.mark.parametrize("source", SOURCES)
def test_shuffled_lines_split_over_files_give_the_same_bytes(source: str,
                                                             tmp_path: Path) -> None:
    rows = _events(source, count=600)
    _write(tmp_path / "sorted.json", rows)
    expected = _convert([tmp_path / "sorted.json"], tmp_path / "a.ndjson", source)
    assert len(expected.splitlines()) > 20
    for seed in (1, 2):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        parts = [tmp_path / f"s{seed}-{n}.json{'.gz' if n % 2 else ''}" for n in range(3)]
        cuts = sorted(random.Random(seed).sample(range(1, len(rows)), 2))
        for part, chunk in zip(parts, (shuffled[:cuts[0]], shuffled[cuts[0]:cuts[1]],
                                       shuffled[cuts[1]:]), strict=True):
            _write(part, chunk)
        got = _convert(parts[::-1], tmp_path / f"b{seed}.ndjson", source)
        assert got == expected


def test_an_event_uploaded_long_after_it_happened_still_joins_its_session(
        tmp_path: Path) -> None:
    # As in a real Amplitude export: ordered by upload, one event 37.7 h late.
    amp = BUILD["amplitude"]
    rows = [amp("d", T + 60 * i, 1) for i in range(1, 5)] + [amp("e", T + 40 * 3600, 2),
                                                             amp("d", T, 1)]
    _write(tmp_path / "e.json", rows)
    out = tmp_path / "o.ndjson"
    records = [orjson.loads(r) for r in _convert([tmp_path / "e.json"], out, "amplitude")
               .splitlines()]
    assert [(r["deviceId"], r["time"]) for r in records] == [("d", T), ("e", T + 40 * 3600)]
    summary = orjson.loads(Path(f"{out}.summary.json").read_bytes())
    assert summary["rejects"] == {} and summary["events_in_sessions"] == 6


def test_a_small_memory_limit_spills_to_the_temp_dir_and_changes_nothing(
        tmp_path: Path) -> None:
    rows = _events("mixpanel", count=3000)
    random.Random(3).shuffle(rows)
    _write(tmp_path / "e.json", rows)
    wide = _convert([tmp_path / "e.json"], tmp_path / "a.ndjson", "mixpanel")
    temp = tmp_path / "spill"
    temp.mkdir()
    narrow = _convert([tmp_path / "e.json"], tmp_path / "b.ndjson", "mixpanel",
                      "--memory-limit", "64MB", "--temp-dir", str(temp))
    assert narrow == wide
    assert list(temp.iterdir()) == []  # the spooled events and any spill are removed


def test_a_memory_limit_too_small_to_sort_is_one_line_and_exit_7(tmp_path: Path) -> None:
    _write(tmp_path / "e.json", _events("mixpanel", count=50))
    out = tmp_path / "o.ndjson"
    result = CliRunner().invoke(convert, ["--from", "mixpanel", str(tmp_path / "e.json"),
                                          "-o", str(out), "--memory-limit", "1KB"])
    assert result.exit_code == 7, result.output
    assert "--memory-limit 1KB is too small" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_without_the_engine_convert_says_what_to_install(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "duckdb", None)  # as if not installed
    _write(tmp_path / "e.json", _events("mixpanel", count=5))
    out = tmp_path / "o.ndjson"
    result = CliRunner().invoke(convert, ["--from", "mixpanel", str(tmp_path / "e.json"),
                                          "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "pip install 'replayer[convert]'" in result.output
    assert "Traceback" not in result.output and not out.exists()
