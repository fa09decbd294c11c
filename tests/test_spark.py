"""`replayer spark` on a local Spark (local[2], retries on): the same rows, summary and per-user
order as `replayer run`, a killed task and a failed job that lose nothing, inputs the
executors cannot read refused before anything is sent. Skipped without pyspark or Java
(CI installs both, and there a missing one fails instead).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from click.testing import CliRunner

from replayer.cli import main
from replayer.config import Settings
from replayer.engine.control import RunControl
from replayer.engine.replay import replay
from replayer.output import summary as s
from replayer.output.layout import FAILURES, RESULTS, RUN, USERS_PART
from replayer.records import ExitCode
from tests.conftest import (
    TEST_KEY,
    StartEmulator,
    generated,
    input_records,
    read_rows,
    settings_for,
)
from tests.test_summary import LAYOUT_FIELDS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_MISSING = [what for what, ok in (("pyspark", importlib.util.find_spec("pyspark") is not None),
                                  ("java", shutil.which("java") is not None)) if not ok]
if _MISSING and os.environ.get("CI") == "true":
    raise RuntimeError(f"CI must run the Spark tests: {', '.join(_MISSING)} missing (.ci/run "
                       "installs them)")
needs_spark = pytest.mark.skipif(bool(_MISSING), reason=f"needs {', '.join(_MISSING)}")
BLOCKED = frozenset({"u000007", "u000042"})
# Fields of a row that depend on the clock or on how requests were grouped.
ROW_TIMING = {"latency_ms", "attempts", "sent_at", "delivered_at", "elapsed_ms", "at",
              "scheduled_latency_ms", "service_ms", "request", "batch_size", "finished_at"}


def test_without_pyspark_spark_exits_2_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)
    data = generated(tmp_path / "in.ndjson", records=3, users=1)
    result = CliRunner().invoke(main, ["spark", str(data), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "pip install 'replayer[spark]'" in result.output


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    if _MISSING:
        pytest.skip(f"needs {', '.join(_MISSING)}")
    from replayer.spark.job import start_session

    session = start_session("local[2,3]", app_name="replayer-tests")
    yield session
    session.stop()


def data_file(tmp_path: Path) -> Path:
    path = generated(tmp_path / "in.ndjson", records=1500, users=120)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[10:10] = [b"\n", b"   \n"]  # blank lines count in every later line number
    lines.append(b"not json\n")
    path.write_bytes(b"".join(lines))
    return path


def key_settings(tmp_path: Path, url: str, **overrides: Any) -> Settings:
    """Settings whose key reaches the executors as a SparkFiles file (a name of its own)."""
    key_file = tmp_path / f"key-{uuid.uuid4().hex}"
    key_file.write_text(TEST_KEY + "\n")
    return dataclasses.replace(settings_for(url, **overrides), client_key_file=key_file)


async def spark_job(spark: SparkSession, paths: list[Path], settings: Settings, out: Path,
                    **kw: Any) -> s.RunSummary:
    from replayer.spark.job import file_source, run_job

    out.mkdir(exist_ok=True)
    source = file_source([str(p) for p in paths])
    return await asyncio.to_thread(run_job, spark, source, settings, out, partitions=3,
                                   say=lambda _: None, **kw)


def rows_by_line(out: Path) -> dict[tuple[str, int], dict[str, Any]]:
    rows = read_rows(out / RESULTS) + read_rows(out / FAILURES)
    keyed = {(r["file"], r["line"]): r for r in rows}
    assert len(keyed) == len(rows), "one row per line"
    return keyed


def assert_order(data: Path, state: dict[str, Any]) -> None:
    """Every user's records reached the emulator in input order (repeats of a re-sent
    record dropped), and none is missing."""
    expected: dict[str, list[float]] = defaultdict(list)
    for _, rec in input_records(data):
        key = rec.get("userId") or rec.get("deviceId")
        if key not in BLOCKED:
            expected[key].append(rec["time"])
    received = {user: list(dict.fromkeys(e["time"] for e in entries))
                for user, entries in state["users"].items() if entries}
    assert received == dict(expected)


@needs_spark
async def test_spark_replays_like_replayer_run(
    spark: SparkSession, start_emulator: StartEmulator, tmp_path: Path
) -> None:
    data = data_file(tmp_path)
    single_emulator = await start_emulator(blocked_users=BLOCKED)
    (tmp_path / "single").mkdir()
    single = await replay(settings_for(single_emulator.url), [str(data)], tmp_path / "single",
                          control=RunControl())
    emulator = await start_emulator(blocked_users=BLOCKED)
    summary = await spark_job(spark, [data], key_settings(tmp_path, emulator.url),
                              tmp_path / "spark")
    assert single.summary.failed > 0 and single.summary.delivered > 0
    for f in dataclasses.fields(s.RunSummary):
        if f.name not in LAYOUT_FIELDS:
            assert getattr(summary, f.name) == getattr(single.summary, f.name), f.name
    ours, theirs = rows_by_line(tmp_path / "spark"), rows_by_line(tmp_path / "single")
    assert ours.keys() == theirs.keys()
    for key, row in ours.items():
        assert {k: v for k, v in row.items() if k not in ROW_TIMING} == {
            k: v for k, v in theirs[key].items() if k not in ROW_TIMING}, key
    assert_order(data, await emulator.state())
    assert (tmp_path / "spark" / "users.ndjson").read_bytes() == (
        tmp_path / "single" / "users.ndjson").read_bytes()
    assert TEST_KEY not in "".join(p.read_text(errors="replace")
                                   for p in (tmp_path / "spark").rglob("*") if p.is_file()
                                   and not p.name.startswith("key-"))


@needs_spark
async def test_a_task_killed_partway_is_retried_and_loses_nothing(
    spark: SparkSession, start_emulator: StartEmulator, tmp_path: Path
) -> None:
    data = data_file(tmp_path)
    emulator = await start_emulator(blocked_users=BLOCKED)
    settings = key_settings(tmp_path, emulator.url, batch=False, concurrency=8)
    summary = await spark_job(spark, [data], settings, tmp_path / "out", exit_after_requests=40)
    rows = rows_by_line(tmp_path / "out")
    non_blank = [n for n, line in enumerate(data.read_bytes().splitlines(), 1) if line.strip()]
    assert sorted(n for _, n in rows) == non_blank
    assert summary.exit_code == ExitCode.FAILURES and summary.unfinished == 0
    marked = sum(1 for r in rows.values() if r.get("possible_duplicate"))
    assert marked == summary.possible_duplicates >= 1
    assert_order(data, await emulator.state())


@needs_spark
async def test_a_failed_job_resumes_when_run_again(
    spark: SparkSession, start_emulator: StartEmulator, tmp_path: Path
) -> None:
    from replayer.spark.job import SparkJobError

    data = data_file(tmp_path)
    emulator = await start_emulator(blocked_users=BLOCKED)
    settings = key_settings(tmp_path, emulator.url, batch=False, concurrency=8)
    with pytest.raises(SparkJobError, match="run the same command again") as failed:
        await spark_job(spark, [data], settings, tmp_path / "out", exit_after_requests=30,
                        exit_attempts=99)
    assert failed.value.code == ExitCode.WORKER
    summary = await spark_job(spark, [data], settings, tmp_path / "out")
    rows = rows_by_line(tmp_path / "out")
    assert len(rows) == summary.records == 1501 and summary.unfinished == 0
    assert summary.resumed is not None and summary.resumed["lines_already_done"] > 0
    assert_order(data, await emulator.state())


@needs_spark
async def test_an_input_the_executors_cannot_read_fails_before_sending(
    spark: SparkSession, start_emulator: StartEmulator, tmp_path: Path
) -> None:
    from replayer.spark.job import SparkJobError, file_source, run_job

    data = data_file(tmp_path)
    gone = generated(tmp_path / "gone.ndjson", records=10, users=2)
    emulator = await start_emulator()
    source = file_source([str(data), str(gone)])  # the driver saw it...
    gone.unlink()  # ...the executors will not
    with pytest.raises(SparkJobError, match=f"cannot read {gone}") as failed:
        await asyncio.to_thread(run_job, spark, source, key_settings(tmp_path, emulator.url),
                                tmp_path / "out", say=lambda _: None)
    assert failed.value.code == ExitCode.INPUT
    assert (await emulator.state())["users"] == {}
    assert not (tmp_path / "out" / "parts").exists()


@needs_spark
async def test_a_dataframe_of_start_records_replays_through_the_api(
    spark: SparkSession, start_emulator: StartEmulator, tmp_path: Path
) -> None:
    from replayer.spark import replay as replay_frame

    data = generated(tmp_path / "in.ndjson", records=200, users=20)
    emulator = await start_emulator()
    df = spark.read.json(str(data))
    summary = await asyncio.to_thread(replay_frame, df, out=tmp_path / "out",
                                      settings=key_settings(tmp_path, emulator.url),
                                      partitions=2)
    assert (summary.records, summary.delivered, summary.exit_code) == (200, 200, 0)
    lines = sorted(r["line"] for r in read_rows(tmp_path / "out" / RESULTS))
    assert lines == list(range(1, 201))
    state = await emulator.state()
    assert sum(len(v) for v in state["users"].values()) == 200


@needs_spark
async def test_a_dry_run_masks_the_keys_text_in_every_file(
    spark: SparkSession, tmp_path: Path
) -> None:
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"".join(orjson.dumps({"userId": f"u{i}", "city": f"at {TEST_KEY}"})
                             + b"\n" for i in range(20)))
    settings = key_settings(tmp_path, "https://api.example.com/api", dry_run=True)
    summary = await spark_job(spark, [data], settings, tmp_path / "out")
    assert (summary.delivered, summary.exit_code) == (20, ExitCode.OK)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.name == "requests.ndjson" for p in files)
    for path in files:
        assert TEST_KEY.encode() not in path.read_bytes(), f"{path} holds the key"


@needs_spark
def test_spark_reads_an_s3_glob_as_run_does(tmp_path: Path) -> None:
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    from tests.test_objects import child_env, records_gz, upload

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        upload(env, "sparkglob", {"in/a.ndjson.gz": records_gz(40, seed=1),
                                  "in/b.ndjson.gz": records_gz(30, seed=2),
                                  "other/c.ndjson.gz": records_gz(5, seed=3)})
        out = tmp_path / "out"
        proc = subprocess.run(
            [sys.executable, "-m", "replayer", "spark", "s3://sparkglob/in/*.gz", "--out",
             str(out), "--master", "local[2]", "--dry-run", "-q"],
            env=child_env(env), capture_output=True, timeout=300, check=False)
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    files = Counter(row["file"] for row in read_rows(out / RESULTS))
    assert files == {"s3://sparkglob/in/a.ndjson.gz": 40, "s3://sparkglob/in/b.ndjson.gz": 30}


def spark_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`replayer spark` in a process of its own (its session must not stop the tests')."""
    return subprocess.run([sys.executable, "-m", "replayer", "spark", *args, "--master",
                           "local[2]", "--dry-run", "-q"],
                          capture_output=True, text=True, timeout=300, check=False)


@needs_spark
def test_spark_refuses_a_folder_replayer_run_wrote_unless_overwrite(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=60, users=10)
    out = tmp_path / "out"
    first = CliRunner().invoke(main, ["run", str(data), "--out", str(out), "--dry-run", "-q",
                                      "--workers", "1"])
    assert first.exit_code == 0, first.output
    rows = (out / RESULTS).read_bytes()

    refused = spark_cli(str(data), "--out", str(out))
    assert refused.returncode == ExitCode.USAGE, refused.stderr[-2000:]
    assert f"{out} holds the outputs of `replayer run`" in refused.stderr
    assert "--overwrite to start over" in refused.stderr and "Traceback" not in refused.stderr
    assert (out / RESULTS).read_bytes() == rows and not (out / "parts").exists()

    overwritten = spark_cli(str(data), "--out", str(out), "--overwrite")
    assert overwritten.returncode == 0, overwritten.stderr[-2000:]
    assert orjson.loads((out / RUN).read_bytes())["writer"] == "spark"
    assert len(read_rows(out / RESULTS)) == 60 and (out / "parts").is_dir()


@needs_spark
def test_replayer_run_refuses_a_spark_folder_unless_overwrite(
    spark: SparkSession, tmp_path: Path
) -> None:
    from replayer.spark.job import file_source, run_job

    data = generated(tmp_path / "in.ndjson", records=60, users=10)
    out = tmp_path / "out"
    out.mkdir()
    run_job(spark, file_source([str(data)]), settings_for("embedded", dry_run=True), out,
            partitions=3, say=lambda _: None)
    assert not list(out.glob(f"parts/*/{USERS_PART}")), "a partition keeps no users' part"
    rows = (out / RESULTS).read_bytes()
    for extra in (["--resume"], []):
        result = CliRunner().invoke(main, ["run", str(data), "--out", str(out), "--dry-run",
                                           "-q", "--workers", "3", *extra])
        assert result.exit_code == ExitCode.USAGE, result.output
        assert f"{out} holds the outputs of `replayer spark`" in result.output
        assert (out / RESULTS).read_bytes() == rows
    result = CliRunner().invoke(main, ["run", str(data), "--out", str(out), "--dry-run", "-q",
                                       "--workers", "1", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert not (out / "parts").exists() and len(read_rows(out / RESULTS)) == 60
    assert orjson.loads((out / RUN).read_bytes())["writer"] == "run"


@pytest.mark.parametrize("has_parts", [True, False], ids=["spark", "run"])
def test_a_folder_from_before_run_json_named_its_writer(tmp_path: Path, has_parts: bool) -> None:
    from replayer.output.runfile import RunRecord, check_writer, fingerprints, read_run

    data = generated(tmp_path / "in.ndjson", records=5, users=2)
    out = tmp_path / "out"
    (out / "parts" if has_parts else out).mkdir(parents=True)
    doc = orjson.loads(RunRecord(state="finished", endpoint="embedded", dry_run=True,
                                 loop=False, inputs=fingerprints([str(data)])).encode())
    del doc["writer"]
    (out / RUN).write_bytes(orjson.dumps(doc))
    assert read_run(out).writer is None
    check_writer(out, "spark" if has_parts else "run")  # its own writer: it may go on
    result = CliRunner().invoke(main, ["run", str(data), "--out", str(out), "--dry-run", "-q",
                                       "--workers", "1", "--resume"])
    if has_parts:  # only `replayer spark` makes parts/: a Spark job's folder
        assert result.exit_code == ExitCode.USAGE, result.output
        assert "holds the outputs of `replayer spark`" in result.output
    else:
        assert result.exit_code == 0, result.output
