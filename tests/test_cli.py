"""The CLI end to end: exit codes, configuration precedence, inputs, and key hygiene."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from replayer.cli import main
from replayer.output.layout import FAILURES, RESULTS, SUMMARY
from tests.conftest import REPO, TEST_APP_ID, TEST_KEY, generated, read_rows

CLEAN_ENV = {k: None for k in ("LEANPLUM_APP_ID", "LEANPLUM_CLIENT_KEY", "REPLAYER_CONFIG",
                               "REPLAYER_ENDPOINT", "REPLAYER_CONCURRENCY")}


def invoke(*args: str, env: dict[str, Any] | None = None, stdin: bytes | None = None) -> Any:
    runner = CliRunner()
    return runner.invoke(main, list(args), env={**CLEAN_ENV, **(env or {})}, input=stdin,
                         catch_exceptions=False)


def summary(out: Path) -> dict[str, Any]:
    return orjson.loads((out / SUMMARY).read_bytes())  # type: ignore[no-any-return]


def test_demo_on_the_samples_accounts_for_every_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    samples = REPO / "samples" / "sessions.ndjson"

    result = invoke("run", str(samples), "--out", str(out))

    non_blank = sum(1 for line in samples.read_bytes().splitlines() if line.strip())
    rows = read_rows(out / RESULTS) + read_rows(out / FAILURES)
    assert result.exit_code == 1, result.output  # the samples hold a few invalid lines on purpose
    assert len(rows) == non_blank
    assert len({(r["file"], r["line"]) for r in rows}) == non_blank
    assert summary(out)["delivered"] == len(read_rows(out / RESULTS))
    assert "delivered" in result.output
    for file in (f for f in out.rglob("*") if f.is_file()):
        assert b"sample-secret-do-not-echo" not in file.read_bytes()


def test_all_valid_exits_0_and_reads_stdin_and_gzip(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=100, users=10)
    packed = tmp_path / "in2.ndjson.gz"
    packed.write_bytes(gzip.compress(generated(tmp_path / "b.ndjson", records=50, users=5,
                                               seed=9).read_bytes()))
    out = tmp_path / "out"

    result = invoke("run", "-", str(packed), "--out", str(out), stdin=data.read_bytes())

    assert result.exit_code == 0, result.output
    rows = read_rows(out / RESULTS)
    assert {r["file"] for r in rows} == {"<stdin>", str(packed)}
    assert len(rows) == 150


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no-such-file.ndjson"], "no such file"),
        (["run", "-", "-"], "once"),
        (["run", "IN", "--client-key", "x"], "No such option"),
        (["run", "-", "--resume"], "--resume needs --out"),
        (["run", "IN", "--concurrency", "0"], "concurrency"),
        (["run", "IN", "--endpoint", "http://api.example.com/api"], "http"),
        (["run", "IN", "--endpoint", "https://api.leanplum.com/api"], "app id"),
    ],
    ids=["missing-file", "stdin-twice", "no-key-flag", "resume-without-out", "bad-concurrency",
         "insecure-http", "real-api-without-credentials"],
)
def test_usage_and_configuration_errors_exit_2(tmp_path: Path, args: list[str],
                                               message: str) -> None:
    data = generated(tmp_path / "in.ndjson", records=5, users=2)
    args = [str(data) if a == "IN" else a for a in args]

    out = [] if "--resume" in args else ["--out", str(tmp_path / "out")]

    result = invoke(*args, *out)

    assert result.exit_code == 2
    assert message.lower() in result.output.lower()
    assert not (tmp_path / "out" / RESULTS).exists(), "nothing was sent"


def test_non_empty_out_is_refused_unless_overwrite(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=5, users=2)
    out = tmp_path / "out"
    assert invoke("run", str(data), "--out", str(out)).exit_code == 0

    refused = invoke("run", str(data), "--out", str(out))
    again = invoke("run", str(data), "--out", str(out), "--overwrite")

    assert refused.exit_code == 2 and "not empty" in refused.output
    assert again.exit_code == 0
    assert len(read_rows(out / RESULTS)) == 5, "overwrite started the files over"


@pytest.mark.parametrize(
    ("flag", "env", "file", "expected"),
    [
        (None, None, None, 64),
        (None, None, 5, 5),
        (None, 6, 5, 6),
        (7, 6, 5, 7),
        (7, None, None, 7),
    ],
    ids=["default", "file", "env-over-file", "flag-over-env", "flag-alone"],
)
def test_configuration_precedence(tmp_path: Path, flag: int | None, env: int | None,
                                  file: int | None, expected: int) -> None:
    data = generated(tmp_path / "in.ndjson", records=3, users=1)
    out = tmp_path / "out"
    args = ["run", str(data), "--out", str(out)]
    if file is not None:
        config = tmp_path / "config.toml"
        config.write_text(f"[send]\nconcurrency = {file}\n")
        args += ["--config", str(config)]
    if flag is not None:
        args += ["--concurrency", str(flag)]
    environ = {"REPLAYER_CONCURRENCY": str(env)} if env is not None else {}

    result = invoke(*args, env=environ)

    assert result.exit_code == 0, result.output
    assert summary(out)["settings"]["concurrency"] == expected


def test_key_from_env_reaches_the_server_and_no_output(tmp_path: Path,
                                                      threaded_emulator: str) -> None:
    data = generated(tmp_path / "in.ndjson", records=40, users=8)
    out = tmp_path / "out"
    env = {"LEANPLUM_APP_ID": TEST_APP_ID, "LEANPLUM_CLIENT_KEY": TEST_KEY}

    result = invoke("run", str(data), "--out", str(out), "--endpoint", threaded_emulator,
                    env=env)

    assert result.exit_code == 0, result.output
    assert TEST_KEY not in result.output
    for file in (f for f in out.rglob("*") if f.is_file()):
        assert TEST_KEY.encode() not in file.read_bytes(), file.name


def test_key_file_and_wrong_key_exits_3(tmp_path: Path, threaded_emulator: str) -> None:
    data = generated(tmp_path / "in.ndjson", records=40, users=8)
    key_file = tmp_path / "key"
    key_file.write_text("not-the-right-key\n")
    out = tmp_path / "out"

    result = invoke("run", str(data), "--out", str(out), "--endpoint", threaded_emulator,
                    "--app-id", TEST_APP_ID, "--client-key-file", str(key_file))

    assert result.exit_code == 3, result.output
    assert "invalid access key" in result.output.lower()
    assert "not-the-right-key" not in result.output
    for file in (f for f in out.rglob("*") if f.is_file()):
        assert b"not-the-right-key" not in file.read_bytes(), file.name


def test_failures_re_send_through_stdin(tmp_path: Path, threaded_emulator: str) -> None:
    """`jq -c .record failures.ndjson | replayer run -` works: records are re-sendable."""
    data = tmp_path / "in.ndjson"
    data.write_bytes(b'{"userId":"a","time":1700000000}\n{"userId":"b","time":1700000001}\n')
    env = {"LEANPLUM_APP_ID": TEST_APP_ID, "LEANPLUM_CLIENT_KEY": "wrong"}
    first = tmp_path / "first"
    invoke("run", str(data), "--out", str(first), "--endpoint", threaded_emulator, env=env)
    rerun_input = b"".join(orjson.dumps(r["record"]) + b"\n"
                           for r in read_rows(first / FAILURES) if "record" in r)
    ok = tmp_path / "ok"
    data_bad = tmp_path / "bad.ndjson"
    data_bad.write_bytes(b'{"userId":"c","time":1700000002,"country":"USA"}\n')
    invoke("run", str(data_bad), "--out", str(ok), "--endpoint", threaded_emulator,
           env={**env, "LEANPLUM_CLIENT_KEY": TEST_KEY})
    rerun_input += b"".join(orjson.dumps(r["record"]) + b"\n" for r in read_rows(ok / FAILURES))

    result = invoke("run", "-", "--out", str(tmp_path / "again"), "--endpoint",
                    threaded_emulator, env={**env, "LEANPLUM_CLIENT_KEY": TEST_KEY},
                    stdin=rerun_input)

    assert result.exit_code == 1  # the record with a bad country fails again, the rest pass
    assert len(read_rows(tmp_path / "again" / FAILURES)) == 1


def test_help_documents_exit_codes() -> None:
    result = invoke("run", "--help")
    assert result.exit_code == 0
    for code in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert code in result.output


def test_a_named_pipe_is_read_once_by_one_worker(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=120, users=30).read_bytes()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(data,), daemon=True)
    writer.start()
    out = tmp_path / "out"

    result = invoke("run", str(fifo), "--out", str(out), "--workers", "2")

    writer.join(10)
    assert result.exit_code == 0, result.output
    assert sorted(r["line"] for r in read_rows(out / RESULTS)) == list(range(1, 121))
    assert not (out / "workers").exists(), "a pipe can be read once: one worker"
    assert orjson.loads((out / "run.json").read_bytes())["inputs"] is None, "cannot resume"


def test_the_resume_command_repeats_every_flag_given(tmp_path: Path,
                                                     threaded_emulator: str) -> None:
    data = generated(tmp_path / "in.ndjson", records=10, users=2)
    out = tmp_path / "out"
    env = {"LEANPLUM_APP_ID": TEST_APP_ID, "LEANPLUM_CLIENT_KEY": TEST_KEY}

    invoke("run", str(data), "--out", str(out), "--endpoint", threaded_emulator, "--no-batch",
           "--rate", "50", "--fail-if", "p99>1s", "--fail-if", "failed>3", "--workers", "1",
           env=env)

    command = orjson.loads((out / "run.json").read_bytes())["resume_with"]
    assert command == (f"replayer run {data} --out {out} --resume --endpoint {threaded_emulator} "
                       "--rate 50 --no-batch --workers 1 --fail-if 'p99>1s' --fail-if 'failed>3'")
    assert TEST_KEY not in command


def test_a_resume_aimed_at_another_endpoint_is_refused(tmp_path: Path,
                                                      threaded_emulator: str) -> None:
    data = generated(tmp_path / "in.ndjson", records=10, users=2)
    out = tmp_path / "out"
    env = {"LEANPLUM_APP_ID": TEST_APP_ID, "LEANPLUM_CLIENT_KEY": TEST_KEY}
    invoke("run", str(data), "--out", str(out), "--endpoint", threaded_emulator, env=env)

    result = invoke("run", str(data), "--out", str(out), "--resume", "--endpoint", "embedded",
                    env=env)

    assert result.exit_code == 2
    assert f"was sending to {threaded_emulator}, not embedded" in result.output
