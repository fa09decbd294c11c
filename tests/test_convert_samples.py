"""`replayer convert` end to end on samples/exports: expected files, accounting, validity,
determinism, replay into the embedded emulator, exit codes and --map."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from replayer import cli
from replayer.commands.convert import convert
from replayer.records import RawLine, Session
from replayer.source.convert.sources import SOURCE_TOML
from replayer.source.validate import parse_line

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ROOT / "tests" / "data" / "convert"
SOURCES = sorted(SOURCE_TOML)


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # sample paths in rejects rows are relative to the repository


def _convert(source: str, out: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(convert, ["--from", source, f"samples/exports/{source}",
                                          "-o", str(out), *extra])
    return result.exit_code, result.output


@pytest.mark.parametrize("source", SOURCES)
def test_each_sample_converts_to_its_hand_checked_expected_files(source: str,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "s.ndjson"
    code, output = _convert(source, out)
    assert code == 1, output  # every sample holds events that must be rejected
    assert out.read_bytes() == (EXPECTED / f"{source}.ndjson").read_bytes()
    rejects = [orjson.loads(line) for line in Path(f"{out}.rejects.ndjson").read_bytes().splitlines()]
    expected = [orjson.loads(line) for line in
                (EXPECTED / f"{source}.rejects.ndjson").read_bytes().splitlines()]
    assert [{k: r[k] for k in ("file", "line", "reason")} for r in rejects] == expected
    assert all(r["message"] and r["raw"] for r in rejects)


@pytest.mark.parametrize("source", SOURCES)
def test_every_event_of_each_sample_is_accounted_for(source: str, tmp_path: Path) -> None:
    out = tmp_path / "s.ndjson"
    _convert(source, out)
    summary = orjson.loads(Path(f"{out}.summary.json").read_bytes())
    rejected = sum(summary["rejects"].values())
    assert summary["events_read"] == (summary["events_in_sessions"] + rejected
                                      + summary["duplicates"])
    assert sum(f["duplicates"] for f in summary["files"]) == summary["duplicates"]
    assert rejected == summary["events_rejected"] > 0
    assert summary["sessions_written"] == len(out.read_bytes().splitlines())
    assert sum(f["events_read"] for f in summary["files"]) == summary["events_read"]
    assert sum(f["sessions"] for f in summary["files"]) == summary["sessions_written"]
    # GA4's sample maps every value since CLDR's names ("Russia") are known.
    assert summary["unmapped"] or source == "ga4", "a sample has a value that cannot be mapped"


@pytest.mark.parametrize("source", SOURCES)
def test_each_sample_output_passes_the_validator(source: str) -> None:
    lines = (EXPECTED / f"{source}.ndjson").read_bytes().splitlines()
    assert lines
    for no, line in enumerate(lines, start=1):
        parsed = parse_line(RawLine("x", no, line))
        assert isinstance(parsed, Session), parsed


@pytest.mark.parametrize("source", SOURCES)
def test_the_output_is_deterministic_and_gzipped_by_suffix(source: str, tmp_path: Path) -> None:
    first, second = tmp_path / "a.ndjson.gz", tmp_path / "b.ndjson.gz"
    _convert(source, first)
    _convert(source, second)
    assert first.read_bytes() == second.read_bytes()
    assert gzip.decompress(first.read_bytes()) == (EXPECTED / f"{source}.ndjson").read_bytes()
    assert not list(tmp_path.glob("*.part"))


def test_stdout_output_and_the_stderr_summary(tmp_path: Path) -> None:
    result = CliRunner().invoke(convert, [
        "--from", "ga4", "samples/exports/ga4/events_20260101.json", "-o", "-",
        "--rejects", str(tmp_path / "r.ndjson"), "--summary", str(tmp_path / "s.json")])
    assert result.stdout.encode() == (EXPECTED / "ga4.ndjson").read_bytes()
    assert "ga4: 11 events read from 1 file(s): 9 in 6 sessions, 2 rejected" in result.stderr
    assert "not mapped" not in result.stderr  # "Russia" is CLDR's name of RU
    assert (tmp_path / "r.ndjson").exists() and (tmp_path / "s.json").exists()


def test_a_converted_sample_replays_into_the_emulator(tmp_path: Path) -> None:
    converted = tmp_path / "segment.ndjson"
    _convert("segment", converted)
    result = CliRunner().invoke(cli.main, ["run", str(converted), "--out", str(tmp_path / "run")])
    rows = [orjson.loads(line) for line in (tmp_path / "run" / "results.ndjson").read_bytes()
            .splitlines()]
    assert sorted(row["line"] for row in rows) == [1, 2, 3, 4, 5]
    assert {row["status"] for row in rows} == {"delivered"}
    assert result.exit_code == 0, result.output


def test_a_map_file_converts_any_json_lines_export(tmp_path: Path) -> None:
    export = tmp_path / "events.jsonl"
    export.write_text(
        '{"who": "a", "ts_ms": 1767261600000, "geo": {"cc": "Japan"}, "lang": "ja-jp"}\n'
        '{"who": "a", "ts_ms": 1767261660000}\n{"who": "b"}\n')
    mapping = tmp_path / "m.toml"
    mapping.write_text('[event]\ntime = { path = "ts_ms", unit = "ms" }\n'
                       '[start]\nuserId = "who"\n'
                       'country = { path = "geo.cc", transform = "country" }\n'
                       'locale = { path = "lang", transform = "locale" }\n')
    out = tmp_path / "o.ndjson"
    result = CliRunner().invoke(convert, ["--map", str(mapping), str(export), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert out.read_bytes() == (b'{"userId":"a","time":1767261600,"country":"JP",'
                                b'"locale":"ja_JP"}\n')


@pytest.mark.parametrize("source", SOURCES)
def test_print_map_gives_a_map_file_that_converts_the_same(source: str, tmp_path: Path) -> None:
    printed = CliRunner().invoke(convert, ["--print-map", source]).output
    (tmp_path / "m.toml").write_text(printed)
    out = tmp_path / "o.ndjson"
    CliRunner().invoke(convert, ["--map", str(tmp_path / "m.toml"), f"samples/exports/{source}",
                                 "-o", str(out)])
    assert out.read_bytes() == (EXPECTED / f"{source}.ndjson").read_bytes()


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--from", "mixpanel", "nowhere.json", "-o", "{out}"], 4, "no such file"),
    (["--from", "mixpanel", "samples/exports/nothing-*.json", "-o", "{out}"], 4, "no file matches"),
    (["--from", "mixpanel", "{bad_gz}", "-o", "{out}"], 4, "cannot read"),
    (["--map", "{bad_map}", "samples/exports/mixpanel", "-o", "{out}"], 2, "--map"),
    (["samples/exports/mixpanel", "-o", "{out}"], 2, "--from"),
    (["--from", "mixpanel", "samples/exports/mixpanel", "--session-gap", "soon", "-o", "{out}"],
     2, "duration"),
], ids=["missing", "empty-glob", "corrupt-gz", "bad-map", "no-source", "bad-gap"])
def test_unusable_inputs_and_flags_exit_with_one_clear_line(args: list[str], code: int,
                                                            message: str, tmp_path: Path) -> None:
    (tmp_path / "bad.json.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    (tmp_path / "bad.toml").write_text("[start]\nuserId = 'u'\n")
    values = {"out": str(tmp_path / "o.ndjson"), "bad_gz": str(tmp_path / "bad.json.gz"),
              "bad_map": str(tmp_path / "bad.toml")}
    result = CliRunner().invoke(convert, [a.format(**values) for a in args])
    assert result.exit_code == code
    assert message in result.output
    assert not (tmp_path / "o.ndjson").exists() and not list(tmp_path.glob("*.part"))
