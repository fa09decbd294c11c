"""Operator commands: validate, dry run, and the confirmation before a large real run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from replayer.cli import main
from replayer.output.layout import RESULTS, SUMMARY
from tests.conftest import REPO, generated, read_rows

REAL = {"LEANPLUM_APP_ID": "app", "LEANPLUM_CLIENT_KEY": "real-key-do-not-leak-42"}


def invoke(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env or {}, input=stdin,
                              catch_exceptions=False)


def test_validate_lists_each_invalid_line_then_a_table_and_exits_1() -> None:
    samples = REPO / "samples" / "sessions.ndjson"

    result = invoke("validate", str(samples))

    listed = [line for line in result.output.splitlines() if line.startswith(str(samples))]
    assert result.exit_code == 1
    assert len(listed) == 12
    assert f"{samples}:22: secret_field: " in result.output
    assert "sample-secret-do-not-echo" not in result.output
    assert "288 valid records for 60 distinct users, 12 invalid" in result.output
    assert result.output.rstrip().endswith("total                      12")


def test_validate_exits_0_on_a_clean_file(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=50, users=10)
    result = invoke("validate", str(data))
    assert result.exit_code == 0
    assert "50 valid records for 10 distinct users, 0 invalid" in result.output


@pytest.mark.parametrize("workers", ["1", "2"])
def test_dry_run_writes_bodies_with_the_key_redacted_and_prints_the_cost(
    tmp_path: Path, workers: str
) -> None:
    data = generated(tmp_path / "in.ndjson", records=300, users=120)
    out = tmp_path / "out"

    result = invoke("run", str(data), "--out", str(out), "--dry-run", "--workers", workers,
                    "--endpoint", "https://api.leanplum.com/api", env=REAL)

    assert result.exit_code == 0, result.output
    bodies = [orjson.loads(line) for line in (out / "requests.ndjson").read_bytes().splitlines()]
    actions = [a for b in bodies for a in b["body"]["data"]]
    assert len(actions) == 300
    assert {b["body"]["clientKey"] for b in bodies} == {"[redacted]"}
    lookups = sum(len({a.get("userId") or a["deviceId"] for a in b["body"]["data"]})
                  for b in bodies)
    summary = orjson.loads((out / SUMMARY).read_bytes())
    assert (summary["requests"], summary["user_lookups"]) == (len(bodies), lookups)
    assert f"{len(bodies)} API calls carrying {lookups} user lookups" in result.output
    assert {r["status"] for r in read_rows(out / RESULTS)} == {"dry_run"}
    for file in (f for f in out.rglob("*") if f.is_file()):
        assert b"real-key-do-not-leak-42" not in file.read_bytes()


def test_a_large_real_run_needs_a_yes(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=30, users=10)
    args = ["run", str(data), "--out", str(tmp_path / "out"), "--confirm-over", "20",
            "--endpoint", "https://api.leanplum.com/api"]

    refused = invoke(*args, env=REAL)  # CliRunner's stdin is not a terminal

    assert refused.exit_code == 2
    assert "About to replay 30 records" in refused.output and "--yes" in refused.output
    assert not (tmp_path / "out" / RESULTS).exists(), "nothing was sent"


def test_a_declined_confirmation_sends_nothing(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data = generated(tmp_path / "in.ndjson", records=30, users=10)
    monkeypatch.setattr("replayer.commands.run_setup.interactive", lambda: True)

    result = CliRunner().invoke(main, ["run", str(data), "--out", str(tmp_path / "out"),
                                       "--confirm-over", "20", "--endpoint",
                                       "https://api.leanplum.com/api"], env=REAL, input="n\n")

    assert result.exit_code == 2
    assert "Go on?" in result.output and "not confirmed" in result.output
    assert not (tmp_path / "out" / RESULTS).exists()


@pytest.mark.parametrize("args", [["--yes", "--dry-run"], ["--dry-run"]],
                         ids=["yes", "dry-run"])
def test_no_question_when_small_confirmed_or_dry(tmp_path: Path, args: list[str]) -> None:
    data = generated(tmp_path / "in.ndjson", records=30, users=10)
    result = invoke("run", str(data), "--out", str(tmp_path / "out"), "--confirm-over", "20",
                    "--endpoint", "http://127.0.0.1:9/api", *args, env=REAL)
    assert "About to replay" not in result.output, "loopback endpoints never ask"
