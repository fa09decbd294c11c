"""Exports as they really come: Amplitude zips of hourly files in any member order, JSON
arrays (BigQuery, pretty-printed or on one line), Parquet (GA4 to a bucket, Segment warehouse
dumps); and bad ones (foreign columns, a zip with no export) as one line and exit 4."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from click.testing import CliRunner

from replayer.commands.convert import convert
from tests.test_convert_sessions import BUILD, T


def _lines(rows: list[Any]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def _convert(source: str, *paths: Path, out: Path) -> tuple[int, str]:
    result = CliRunner().invoke(convert, ["--from", source, *map(str, paths), "-o", str(out)])
    return result.exit_code, result.output


def _ga4_rows() -> list[dict[str, Any]]:
    rows = [BUILD["ga4"](f"p{i % 3}", T + 600 * i, i // 4, geo={"country": "Germany"},
                         device={"language": "de-de"}) for i in range(12)]
    return [{**row, "event_bundle_sequence_id": str(n)} for n, row in enumerate(rows)]


def _parquet(path: Path, rows: list[dict[str, Any]], tmp_path: Path) -> None:
    source = tmp_path / f"{path.stem}.source.json"
    source.write_bytes(_lines(rows))
    db = duckdb.connect()
    db.execute(f"COPY (SELECT * FROM read_json('{source}')) TO '{path}' (FORMAT parquet)")
    db.close()


def test_amplitude_zip_members_in_any_order_give_the_events_in_time_order(
        tmp_path: Path) -> None:
    # Amplitude does not zero-pad the hour: by name, hour 10 comes before hour 9.
    amp = BUILD["amplitude"]
    hour9 = [amp("d", T - 3600 + 60 * i, 1) for i in range(3)]
    hour10 = [amp("d", T + 60 * i, 1) for i in range(3)] + [amp("e", T + 7200, 2)]
    single = tmp_path / "all.json"
    single.write_bytes(_lines(hour9 + hour10))
    code, output = _convert("amplitude", single, out=tmp_path / "expected.ndjson")
    assert code == 0, output
    archive = tmp_path / "export-1.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("1/1_2026-01-01_10#627.json.gz", gzip.compress(_lines(hour10)))
        zipped.writestr("1/1_2026-01-01_9#627.json.gz", gzip.compress(_lines(hour9)))
    out = tmp_path / "zip.ndjson"
    code, output = _convert("amplitude", archive, out=out)
    assert code == 0, output
    assert out.read_bytes() == (tmp_path / "expected.ndjson").read_bytes()
    assert orjson.loads(out.read_bytes().splitlines()[0])["time"] == T - 3600


@pytest.mark.parametrize("shape", ["pretty", "one-line", "gzipped"])
def test_a_bigquery_json_array_converts_as_its_json_lines_do(shape: str,
                                                             tmp_path: Path) -> None:
    rows = _ga4_rows()
    (tmp_path / "lines.json").write_bytes(_lines(rows))
    code, _ = _convert("ga4", tmp_path / "lines.json", out=tmp_path / "expected.ndjson")
    assert code == 0
    option = orjson.OPT_INDENT_2 if shape == "pretty" else 0
    data = orjson.dumps([*rows, 7], option=option)  # one element that is no object
    array = tmp_path / ("array.json.gz" if shape == "gzipped" else "array.json")
    array.write_bytes(gzip.compress(data) if shape == "gzipped" else data)
    out = tmp_path / "array.ndjson"
    code, output = _convert("ga4", array, out=out)
    assert code == 1, output
    assert out.read_bytes() == (tmp_path / "expected.ndjson").read_bytes()
    [reject] = [orjson.loads(r) for r in Path(f"{out}.rejects.ndjson").read_bytes().splitlines()]
    assert (reject["line"], reject["reason"]) == (len(rows) + 1, "not_an_object")


def test_a_ga4_parquet_export_converts_as_its_json_lines_do(tmp_path: Path) -> None:
    rows = _ga4_rows()
    (tmp_path / "lines.json").write_bytes(_lines(rows))
    code, _ = _convert("ga4", tmp_path / "lines.json", out=tmp_path / "expected.ndjson")
    assert code == 0
    _parquet(tmp_path / "events.parquet", rows, tmp_path)
    out = tmp_path / "parquet.ndjson"
    code, output = _convert("ga4", tmp_path / "events.parquet", out=out)
    assert code == 0, output
    assert out.read_bytes() == (tmp_path / "expected.ndjson").read_bytes()


def test_a_segment_warehouse_dump_in_parquet_maps_its_snake_case_columns(
        tmp_path: Path) -> None:
    rows = [{"id": f"m{i}", "user_id": "u1", "anonymous_id": "a1", "event": "Song Played",
             "timestamp": f"2026-01-01T10:0{i}:00Z", "context_app_version": "1.4.0",
             "context_os_name": "iOS", "context_locale": "en-US",
             "context_timezone": "America/New_York"} for i in range(3)]
    _parquet(tmp_path / "tracks.parquet", [*rows, rows[0]], tmp_path)  # a retried call
    out = tmp_path / "o.ndjson"
    code, output = _convert("segment", tmp_path / "tracks.parquet", out=out)
    assert code == 0, output
    assert orjson.loads(out.read_bytes()) == {
        "userId": "u1", "deviceId": "a1", "time": T, "appVersion": "1.4.0",
        "systemName": "iOS", "locale": "en_US", "timezone": "EST",
        "timezoneOffsetSeconds": -18000}
    summary = orjson.loads(Path(f"{out}.summary.json").read_bytes())
    assert summary["duplicates"] == 1 and summary["events_in_sessions"] == 3


def _foreign_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "mixpanel.parquet"
    _parquet(path, [BUILD["mixpanel"]("u", T)], tmp_path)
    return path


def _empty_zip(tmp_path: Path) -> Path:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("README.txt", "no export here")
    return path


def _broken(name: str, data: bytes) -> Any:
    def write(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path
    return write


@pytest.mark.parametrize(("make", "message"), [
    (_foreign_parquet, "no column event_timestamp: the columns are not this export's"),
    (_empty_zip, "a zip with no export member"),
    (_broken("bad.parquet", b"PAR1 not really"), "not a Parquet file"),
    (_broken("bad.json", b'[{"event_timestamp": "1", {'), "not a JSON array"),
], ids=["foreign-columns", "zip-without-export", "corrupt-parquet", "broken-array"])
def test_inputs_that_are_not_the_export_exit_4_with_one_line(make: Any, message: str,
                                                            tmp_path: Path) -> None:
    path = make(tmp_path)
    out = tmp_path / "o.ndjson"
    code, output = _convert("ga4", path, out=out)
    assert code == 4, output
    assert message in output and len(output.strip().splitlines()) == 1, output
    assert "Traceback" not in output and not out.exists()
