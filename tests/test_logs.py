"""Logs: text or JSON on stderr, each line about a record naming its file, line and user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from replayer.cli import main
from tests.conftest import TEST_KEY, generated


@pytest.mark.parametrize("workers", ["1", "2"])
def test_json_logs_name_file_line_and_user_and_keep_stdout_clean(
    tmp_path: Path, workers: str
) -> None:
    data = tmp_path / "in.ndjson"
    data.write_bytes(
        generated(tmp_path / "g.ndjson", records=20, users=5).read_bytes()
        + b'{"userId":"bad","country":"USA"}\n'
        + b'{"userId":"sneaky","clientKey":"' + TEST_KEY.encode() + b'"}\n'
    )

    # A real process: with two workers the log lines come from child processes.
    result = subprocess.run(
        [sys.executable, "-m", "replayer", "run", str(data), "--out", str(tmp_path / "out"),
         "--log-format", "json", "--log-level", "debug", "--workers", workers],
        capture_output=True, text=True, timeout=120, check=False,
    )

    lines = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    about_records = [d for d in lines if "line" in d]
    assert {d["line"] for d in about_records} >= set(range(1, 23))
    assert all(d["file"] == str(data) and "level" in d and "ts" in d for d in about_records)
    bad = next(d for d in about_records if d["line"] == 21)
    assert (bad["user"], bad["kind"], bad["level"]) == ("bad", "invalid_value", "info")
    assert TEST_KEY not in result.stderr and TEST_KEY not in result.stdout
    assert result.stdout.startswith("finished:"), "stdout holds only the summary"


def test_text_logs_and_levels(tmp_path: Path) -> None:
    data = tmp_path / "in.ndjson"
    data.write_bytes(b'{"userId":"u1","time":1700000000}\n{"userId":"u2","country":"USA"}\n')

    info = CliRunner().invoke(main, ["run", str(data), "--out", str(tmp_path / "a"),
                                     "--workers", "1"])
    warning = CliRunner().invoke(main, ["run", str(data), "--out", str(tmp_path / "b"),
                                        "--workers", "1", "--log-level", "warning"])

    assert f"replayer: {data}:2 [u2] invalid, not sent (invalid_value)" in info.stderr
    assert "delivered after" not in info.stderr, "deliveries are debug lines"
    assert "invalid, not sent" not in warning.stderr
