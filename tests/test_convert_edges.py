"""`replayer convert` at the edges of its inputs: BOMs."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from replayer.source.convert.command import convert

T = 1767261600  # 2026-01-01 10:00:00 UTC
ROWS = b"".join(orjson.dumps({"event": "e", "properties": {"time": T + i, "distinct_id": u}})
                + b"\n" for i, u in enumerate(["a", "b", "a"]))
RECORDS = b'{"userId":"a","time":1767261600}\n{"userId":"b","time":1767261601}\n'


def _convert(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(convert, ["--from", "mixpanel", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("name", ["export.json", "export.json.gz"])
def test_a_bom_at_the_start_of_an_export_is_skipped_as_run_skips_it(name: str,
                                                                    tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + ROWS
    export = tmp_path / name
    export.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    out = tmp_path / "o.ndjson"
    code, output = _convert(str(export), "-o", str(out))
    assert code == 0, output
    assert out.read_bytes() == RECORDS
    assert Path(f"{out}.rejects.ndjson").read_bytes() == b""
