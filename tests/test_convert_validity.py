"""What `replayer convert` writes, `replayer run` accepts: every record written passes the
validator with the same line limit, on generated exports of each vendor with hostile
property names and values; what cannot pass is dropped or rejected, and reported."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from replayer import cli
from replayer.commands.convert import convert
from replayer.records import RecordFailure
from replayer.source.checkfile import check_files
from replayer.source.convert.sources import SOURCE_TOML

T = 1767261600  # 2026-01-01 10:00:00 UTC
SECRET = "s3cret-value"
HOSTILE_NAMES = [
    "appId", "clientKey", "ClientKey", "CLIENTKEY", "apiVersion", "APIVERSION", "appid",
    ".appId", "-clientKey", "clientKey/", "appId,", "x appId=1", f"clientKey: {SECRET}",
    "\\u0063lientKey", "{apiVersion", "12", "1e5", "", ".", "-", "/", "a" * 150, "plan",
    "tier", "ok name", "é", "app_id", "client key",
]
HOSTILE_VALUES: list[Any] = [
    "free", f"clientKey={SECRET}", "appId: 42", 'apiVersion="1.0.6"', 12, 1.5, True, None,
    ["a", f"clientKey={SECRET}"], ["x", 1], {"nested": 1}, "x" * 700, 1e300, -0.0,
    "\u0000ctl", "\\u0061ppId=1", "ok",
]
HOSTILE_TEXT = ["Paris", f"clientKey={SECRET}", "appId: 7", "y" * 1500, "", "1.2.3", "iOS"]


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


Pick = Callable[[list[Any], Any], Any]  # a hostile value (at the export's rate) or `benign`


def _properties(rng: random.Random, pick: Pick) -> dict[str, Any]:
    return {pick(HOSTILE_NAMES, f"p{rng.randint(1, 5)}"): pick(HOSTILE_VALUES, "v")
            for _ in range(rng.randint(0, 6))}


def _row(source: str, rng: random.Random, pick: Pick, user: str, t: float,
         session: int) -> Any:
    text = pick(HOSTILE_TEXT, "Paris")
    if source == "amplitude":
        return {"device_id": user, "user_id": f"user-{user}", "event_time": _stamp(t),
                "session_id": session * 1000, "event_type": "e", "city": text,
                "version_name": pick(HOSTILE_TEXT, "1.0"),
                "user_properties": _properties(rng, pick)}
    if source == "mixpanel":
        return {"event": "e", "properties": {
            "time": t, "distinct_id": user, "$city": text, "$os": pick(HOSTILE_TEXT, "iOS"),
            "$app_version_string": pick(HOSTILE_TEXT, "1.0")}}
    if source == "segment":
        return {"type": "track", "event": rng.choice(["Application Opened", "Song Played"]),
                "userId": user, "timestamp": _stamp(t).replace(" ", "T") + "Z",
                "traits": _properties(rng, pick),
                "context": {"app": {"version": text}, "location": {"city": text},
                            "timezone": pick(HOSTILE_TEXT, "Europe/Paris")}}
    kinds = {str: "string_value", int: "int_value", float: "double_value"}
    return {"event_timestamp": str(int(t * 1_000_000)), "event_name": "e",
            "event_params": [{"key": "ga_session_id", "value": {"int_value": str(session)}}],
            "user_pseudo_id": user, "geo": {"city": text},
            "app_info": {"version": pick(HOSTILE_TEXT, "1.0")},
            "user_properties": [
                {"key": name, "value": {kinds.get(type(value), "string_value"): value}}
                for name, value in _properties(rng, pick).items()]}


def _export(source: str, seed: int) -> bytes:
    """A random export of `source`; how hostile depends on the seed (from not at all)."""
    rng = random.Random(seed)
    rate = (0.0, 0.01, 0.1, 0.4)[seed % 4]

    def pick(hostile: list[Any], benign: Any) -> Any:
        return rng.choice(hostile) if rng.random() < rate else benign

    t = float(T)
    lines = []
    for _ in range(rng.randint(10, 40)):
        t += rng.choice([1.5, 30.0, 600.0, 4000.0])
        user = rng.choice("abcdef")
        lines.append(orjson.dumps(_row(source, rng, pick, user, t, int(t) // 3600)))
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("source", sorted(SOURCE_TOML))
def test_every_record_convert_writes_passes_validate_with_the_same_line_limit(
        source: str, tmp_path: Path) -> None:
    for seed in range(25):
        limit = 1024 if seed % 3 == 1 else 1_048_576
        export, out = tmp_path / f"{seed}.json", tmp_path / f"{seed}.ndjson"
        export.write_bytes(_export(source, seed))
        result = CliRunner().invoke(convert, ["--from", source, str(export), "-o", str(out),
                                              "--max-line-bytes", str(limit)])
        summary = orjson.loads(Path(f"{out}.summary.json").read_bytes())
        rejects = [orjson.loads(row) for row in
                   Path(f"{out}.rejects.ndjson").read_bytes().splitlines()]

        invalid: list[RecordFailure] = []
        tally = check_files([str(out)], allow_unknown_fields=False, max_line_bytes=limit,
                            on_invalid=invalid.append)
        assert invalid == [], (seed, invalid[:3])
        assert tally.valid == summary["sessions_written"]
        assert summary["events_read"] == summary["events_in_sessions"] + summary["events_rejected"]
        assert sum(row.get("events", 1) for row in rejects) == summary["events_rejected"]
        lost = summary["events_rejected"] or summary["dropped_attributes"]
        assert result.exit_code == (1 if lost else 0), (seed, result.output)
        for written in (out, Path(f"{out}.summary.json")):
            assert SECRET not in written.read_text(), (seed, written)
        assert SECRET not in result.output
        assert "Traceback" not in result.output


def _convert_amplitude(tmp_path: Path, rows: list[dict[str, Any]],
                       *flags: str) -> tuple[int, str, Path]:
    export, out = tmp_path / "export.json", tmp_path / "out.ndjson"
    export.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    result = CliRunner().invoke(convert, ["--from", "amplitude", str(export), "-o", str(out),
                                          *flags])
    return result.exit_code, result.output, out


def _amp(t: float = T, **fields: Any) -> dict[str, Any]:
    return {"device_id": "d", "user_id": "u", "event_time": _stamp(t), "session_id": 1,
            **fields}


def test_attributes_named_like_settings_are_dropped_reported_and_counted(
        tmp_path: Path) -> None:
    properties = {"appId": "a1", "ClientKey": SECRET, "apiVersion": "1", "plan": "pro",
                  ".clientKey": "x", "note": f"clientKey={SECRET}"}
    code, output, out = _convert_amplitude(tmp_path, [_amp(user_properties=properties)])
    assert code == 1, output
    assert orjson.loads(out.read_bytes())["userAttributes"] == {"plan": "pro"}
    summary = orjson.loads(Path(f"{out}.summary.json").read_bytes())
    assert summary["dropped_attributes"] == {".clientKey": 1, "ClientKey": 1, "apiVersion": 1,
                                             "appId": 1, "note": 1}
    assert summary["events_rejected"] == 0 and summary["renamed_attributes"] == {}
    assert "dropped attribute 'ClientKey' in 1 session(s)" in output
    assert SECRET not in output


def test_a_record_over_the_line_limit_is_rejected_with_its_session_s_events(
        tmp_path: Path) -> None:
    rows = [_amp(user_properties={"bio": "x" * 2000}), _amp(T + 60), _amp(T + 120)]
    code, output, out = _convert_amplitude(tmp_path, rows, "--max-line-bytes", "1024")
    assert code == 1, output
    assert out.read_bytes() == b""
    [row] = [orjson.loads(r) for r in Path(f"{out}.rejects.ndjson").read_bytes().splitlines()]
    assert (row["line"], row["reason"], row["events"]) == (1, "line_too_long", 3)
    assert "start record (" in row["message"]
    summary = orjson.loads(Path(f"{out}.summary.json").read_bytes())
    assert summary["rejects"] == {"line_too_long": 3}
    assert summary["events_read"] == 3 and summary["sessions_written"] == 0
    # The same record within the default limit is written.
    code, output, out = _convert_amplitude(tmp_path, rows)
    assert code == 0, output
    assert len(out.read_bytes().splitlines()) == 1


def test_a_field_that_spells_a_secret_rejects_its_session_with_the_secret_masked(
        tmp_path: Path) -> None:
    code, output, out = _convert_amplitude(tmp_path, [_amp(city=f"clientKey={SECRET}")])
    assert code == 1, output
    [row] = [orjson.loads(r) for r in Path(f"{out}.rejects.ndjson").read_bytes().splitlines()]
    assert row["reason"] == "secret_field" and row["events"] == 1
    assert SECRET not in Path(f"{out}.rejects.ndjson").read_text()


def test_a_mapped_value_the_validator_refuses_is_not_mapped(tmp_path: Path) -> None:
    export, mapping, out = tmp_path / "e.jsonl", tmp_path / "m.toml", tmp_path / "o.ndjson"
    export.write_text('{"who": "a", "ts": 1767261600, "acc": "wifi"}\n'
                      '{"who": "b", "ts": 1767261601, "acc": "GPS"}\n')
    mapping.write_text('[event]\ntime = { path = "ts", unit = "s" }\n'
                       '[start]\nuserId = "who"\nlocationAccuracyType = "acc"\n')
    result = CliRunner().invoke(convert, ["--map", str(mapping), str(export), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == (b'{"userId":"a","time":1767261600}\n'
                                b'{"userId":"b","time":1767261601,"locationAccuracyType":"GPS"}\n')
    assert "not mapped: locationAccuracyType in 1 session(s), e.g. 'wifi'" in result.output


def test_validate_accepts_what_convert_wrote_through_the_cli(tmp_path: Path) -> None:
    export, out = tmp_path / "e.json", tmp_path / "o.ndjson"
    export.write_bytes(_export("segment", 7))
    CliRunner().invoke(convert, ["--from", "segment", str(export), "-o", str(out),
                                 "--max-line-bytes", "1024"])
    result = CliRunner().invoke(cli.main, ["validate", str(out), "--max-line-bytes", "1024"])
    assert result.exit_code == 0, result.output
