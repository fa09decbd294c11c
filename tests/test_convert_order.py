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

from replayer.commands.convert import convert
from tests.test_convert_sessions import BUILD, GAP, T, run

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
    assert "pip install 'duckdb>=1.1'" in result.output
    assert "Traceback" not in result.output and not out.exists()


SESSION = {"amplitude": (1,), "ga4": (5,)}  # the session the rows below are in
# (source, an event with its vendor insert id, the same event as a retry or re-export copy)
DUPLICATES = [
    ("amplitude", amp_row := {**BUILD["amplitude"]("d", T, 1), "insert_id": "i-1"},
     {**amp_row, "server_upload_time": "2026-01-02 23:00:00.000000"}),
    ("amplitude-$insert_id", {**BUILD["amplitude"]("d", T, 1), "$insert_id": "i-1"},
     {**BUILD["amplitude"]("d", T, 1), "$insert_id": "i-1"}),
    ("mixpanel", BUILD["mixpanel"]("d", T, **{"$insert_id": "i-1"}),
     BUILD["mixpanel"]("d", T, **{"$insert_id": "i-1", "mp_processing_time_ms": 1})),
    ("segment", {**BUILD["segment"]("d", T), "messageId": "m-1"},
     {**BUILD["segment"]("d", T), "messageId": "m-1", "sentAt": "2026-01-01T10:00:05Z"}),
    ("ga4", ga4_row := {**BUILD["ga4"]("d", T, 5), "event_bundle_sequence_id": "77"},
     {**ga4_row, "event_server_timestamp_offset": "12"}),
]


@pytest.mark.parametrize(("source", "row", "copy"), [case[:3] for case in DUPLICATES],
                         ids=[case[0] for case in DUPLICATES])
def test_copies_with_the_vendor_insert_id_count_once(source: str, row: dict[str, Any],
                                                     copy: dict[str, Any]) -> None:
    name = source.split("-")[0]
    later = BUILD[name]("d", T + 60, *SESSION.get(name, ()))
    records, refused, summary = run(name, {"a.json": [row, later], "b.json": [copy, copy]})
    assert len(records) == 1 and not refused
    assert summary.events_in_sessions == 2 and summary.duplicates == 2
    assert [(f.file, f.duplicates) for f in summary.files] in (
        [("a.json", 0), ("b.json", 2)], [("a.json", 1), ("b.json", 1)])
    assert "2 duplicates dropped" in summary.lines()[0]
    assert summary.encode()["duplicates"] == 2


def test_events_without_an_insert_id_or_with_different_ones_are_all_kept() -> None:
    rows = [BUILD["mixpanel"]("d", T), BUILD["mixpanel"]("d", T),  # no $insert_id
            BUILD["mixpanel"]("d", T + 1, **{"$insert_id": "x"}),
            BUILD["mixpanel"]("d", T + 1, **{"$insert_id": "y"}),
            BUILD["mixpanel"]("e", T + 1, **{"$insert_id": "x"})]  # another user's id
    records, _, summary = run("mixpanel", {"f": rows})
    assert summary.duplicates == 0 and summary.events_in_sessions == 5 and len(records) == 2


def test_ga4_copies_need_the_same_bundle_event_name_and_timestamp() -> None:
    base = {**BUILD["ga4"]("d", T, 5), "event_bundle_sequence_id": "77"}
    rows = [base, {**base, "event_name": "other"},
            {**base, "event_timestamp": str((T + 1) * 1_000_000)}, dict(base)]
    _, _, summary = run("ga4", {"f": rows})
    assert summary.duplicates == 1 and summary.events_in_sessions == 3


def test_which_copy_is_kept_does_not_depend_on_the_order(tmp_path: Path) -> None:
    seg = BUILD["segment"]
    one = {**seg("d", T, "Application Opened"), "messageId": "m", "context": {"locale": "en-US"}}
    two = {**one, "context": {"locale": "de-DE"}}  # a copy that differs: the same one wins
    outputs = set()
    for order in ([one, two], [two, one]):
        _write(tmp_path / "e.json", order)
        outputs.add(_convert([tmp_path / "e.json"], tmp_path / "o.ndjson", "segment"))
    assert len(outputs) == 1
