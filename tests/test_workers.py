"""--workers N as real processes: the key never in a worker's argv or environment, signals
(two in a row, SIGHUP), a worker that dies, stale summaries and torn metrics rows."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest

from replayer.emulator import LatencyModel
from replayer.output.layout import (
    FAILURES,
    METRICS,
    RESULTS,
    SUMMARY,
    USERS,
    USERS_PART,
    WORKERS_DIR,
)
from replayer.output.metrics import MetricsRow, encode_row, merge_by_second
from replayer.output.metrics import read_rows as metrics
from replayer.output.summary import Counts, build, encode
from replayer.output.users import write_users
from replayer.workers.parent import read_part
from tests.conftest import TEST_APP_ID, TEST_KEY, StartEmulator, generated, input_records
from tests.conftest import read_rows as rows_of

ENV = {**os.environ, "LEANPLUM_APP_ID": TEST_APP_ID, "LEANPLUM_CLIENT_KEY": TEST_KEY}
RECORDS = 3000


async def spawn(data: Path, out: Path, url: str, *extra: str,
                env: Mapping[str, str] = ENV) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "replayer", "run", str(data), "--out", str(out),
        "--endpoint", url, "--workers", "2", "--concurrency", "8", "--no-batch", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(env),
    )


def worker_pid(parent: int, index: int) -> int | None:
    """Worker `index` of a parent run once it runs the worker's code: a child just forked
    still shows the parent's command line, so counting children is not enough."""
    for pid in children(parent):
        try:
            if f"{WORKERS_DIR}/{index}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


async def until(predicate: object, *, timeout_s: float = 15.0) -> None:
    """Polls a condition on files and processes the child makes (our only window into it)."""
    assert callable(predicate)
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, stderr.decode()


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (the workers of a parent run)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def worker_rows(out: Path, index: int) -> int:
    path = out / WORKERS_DIR / str(index) / RESULTS
    return path.stat().st_size if path.exists() else 0


def summary_of(out: Path) -> dict[str, object]:
    doc = orjson.loads((out / SUMMARY).read_bytes())
    assert isinstance(doc, dict)
    return doc


def assert_every_line_once(data: Path, out: Path) -> None:
    rows = rows_of(out / RESULTS) + rows_of(out / FAILURES)
    assert sorted(r["line"] for r in rows) == [n for n, _ in input_records(data)]


async def slow_setup(start_emulator: StartEmulator, tmp_path: Path) -> tuple[str, Path, Path]:
    """An emulator slow enough to signal a run midway, an input, and the run's folder."""
    emulator = await start_emulator(latency_ms=LatencyModel(5.0))
    data = generated(tmp_path / "in.ndjson", records=RECORDS, users=150)
    return emulator.url, data, tmp_path / "out"


def assert_users_of_the_rows(data: Path, out: Path) -> None:
    """users.ndjson (the workers' parts merged, or derived) is what the folder's rows give."""
    rows = out.parent / f"{out.name}-rows"
    shutil.rmtree(rows, ignore_errors=True)
    rows.mkdir()
    for name in (RESULTS, FAILURES):
        shutil.copy(out / name, rows / name)
    write_users(rows, inputs=[str(data)])
    assert (out / USERS).read_bytes() == (rows / USERS).read_bytes()
    assert not list((out / WORKERS_DIR).glob(f"*/{USERS_PART}")), "parts are removed"


async def interrupted_run(data: Path, out: Path, url: str) -> None:
    """A first session stopped by SIGTERM once both workers wrote rows (exit 143)."""
    proc = await spawn(data, out, url)
    await until(lambda: worker_rows(out, 0) and worker_rows(out, 1))
    proc.send_signal(signal.SIGTERM)
    code, err = await finish(proc)
    assert code == 143, err
    assert_users_of_the_rows(data, out)


async def resume_completes(data: Path, out: Path, url: str) -> None:
    code, err = await finish(await spawn(data, out, url, "--resume"))
    assert code == 0, err
    assert summary_of(out)["delivered"] == RECORDS
    assert_every_line_once(data, out)
    assert_users_of_the_rows(data, out)


@pytest.mark.parametrize("key_from", ["env", "file"])
async def test_the_key_is_in_no_worker_argv_or_environment(
    start_emulator: StartEmulator, tmp_path: Path, key_from: str
) -> None:
    url, data, out = await slow_setup(start_emulator, tmp_path)
    env, extra = dict(ENV), []
    if key_from == "file":
        del env["LEANPLUM_CLIENT_KEY"]
        (tmp_path / "key").write_text(TEST_KEY + "\n")
        (tmp_path / "key").chmod(0o600)
        extra = ["--client-key-file", str(tmp_path / "key")]
    proc = await spawn(data, out, url, *extra, env=env)
    await until(lambda: worker_rows(out, 0) and worker_rows(out, 1))

    workers = children(proc.pid)
    seen = {pid: Path(f"/proc/{pid}/environ").read_bytes()
            + Path(f"/proc/{pid}/cmdline").read_bytes() for pid in workers}
    proc.send_signal(signal.SIGTERM)
    code, err = await finish(proc)

    assert len(workers) == 2, err
    for pid, text in seen.items():
        assert TEST_KEY.encode() not in text, pid
    assert code == 143, err


async def test_a_worker_killed_in_a_resumed_run_is_exit_5_then_resume_completes(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    url, data, out = await slow_setup(start_emulator, tmp_path)
    await interrupted_run(data, out, url)
    before = worker_rows(out, 1)

    proc = await spawn(data, out, url, "--resume")
    await until(lambda: worker_rows(out, 1) > before and worker_pid(proc.pid, 1))
    victim = worker_pid(proc.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    code, err = await finish(proc)

    assert code == 5, err
    assert summary_of(out)["state"] == "aborted"
    assert "resume_with" in summary_of(out)
    assert_users_of_the_rows(data, out)  # derived: a resume's earlier rows, a dead worker
    await resume_completes(data, out, url)


@pytest.mark.parametrize("moment", ["mid-run", "at-worker-start"])
async def test_two_sigterms_5_ms_apart_exit_143_resumable(
    start_emulator: StartEmulator, tmp_path: Path, moment: str
) -> None:
    url, data, out = await slow_setup(start_emulator, tmp_path)
    if moment == "mid-run":
        proc = await spawn(data, out, url)
        await until(lambda: worker_rows(out, 0) and worker_rows(out, 1))
    else:  # a resumed run (earlier summaries on disk), workers still starting up
        await interrupted_run(data, out, url)
        proc = await spawn(data, out, url, "--resume")
        await until(lambda: len(children(proc.pid)) == 2)

    proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.005)  # the point of the test: the second comes right after
    proc.send_signal(signal.SIGTERM)
    code, err = await finish(proc)

    assert code == 143, err
    summary = summary_of(out)
    assert summary["state"] == "interrupted"
    assert "--resume" in str(summary["resume_with"])
    assert "Traceback" not in err
    await resume_completes(data, out, url)


async def test_sighup_stops_gracefully_with_129_and_resumes(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    url, data, out = await slow_setup(start_emulator, tmp_path)
    proc = await spawn(data, out, url)
    await until(lambda: worker_rows(out, 0) and worker_rows(out, 1))

    proc.send_signal(signal.SIGHUP)
    code, err = await finish(proc)

    assert code == 129, err
    summary = summary_of(out)
    assert summary["state"] == "interrupted"
    assert "--resume" in str(summary["resume_with"])
    await resume_completes(data, out, url)


def _foreign_summary(run_id: str) -> bytes:
    """A summary.json of a finished, all-delivered run of another invocation."""
    from replayer.records import ExitCode

    return encode(build(Counts(delivered=10), {}, exit_code=ExitCode.OK, started_wall=0.0,
                        elapsed_s=1.0, settings={}, inputs=[], run_id=run_id))


async def test_a_stale_summary_of_a_dead_worker_is_not_merged(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    url, data, out = await slow_setup(start_emulator, tmp_path)
    await interrupted_run(data, out, url)
    (out / WORKERS_DIR / "1" / SUMMARY).write_bytes(_foreign_summary("an-earlier-session"))

    proc = await spawn(data, out, url, "--resume")
    await until(lambda: worker_pid(proc.pid, 1))
    victim = worker_pid(proc.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    code, err = await finish(proc)

    assert code == 5, err
    assert summary_of(out)["state"] == "aborted"
    await resume_completes(data, out, url)


@pytest.mark.parametrize(
    ("content", "run_id", "merged"),
    [(None, "r1", False), (b"{not json", "r1", False), (b'{"version": 2}', "r1", False),
     ("foreign", "r1", False), ("own", "r1", True)],
    ids=["missing", "corrupt", "not-a-summary", "foreign-run-id", "this-run"],
)
def test_read_part_takes_only_this_invocations_summary(
    tmp_path: Path, content: bytes | str | None, run_id: str, merged: bool
) -> None:
    if content == "foreign":
        (tmp_path / SUMMARY).write_bytes(_foreign_summary("r0"))
    elif content == "own":
        (tmp_path / SUMMARY).write_bytes(_foreign_summary(run_id))
    elif isinstance(content, bytes):
        (tmp_path / SUMMARY).write_bytes(content)
    assert (read_part(tmp_path, run_id=run_id) is not None) is merged


async def test_torn_and_garbage_metrics_lines_do_not_break_the_merge(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    url, data, out = await slow_setup(start_emulator, tmp_path)
    await interrupted_run(data, out, url)
    path = out / WORKERS_DIR / "0" / METRICS
    # A line that is not JSON, one that is not a row, and a torn last one.
    path.write_bytes(path.read_bytes() + b"garbage, not a row\n" + b"[1, 2]\n" + b'{"t": 17000')

    await resume_completes(data, out, url)
    merged = metrics(out / METRICS)
    readable = [row for i in (0, 1) for row in metrics(out / WORKERS_DIR / str(i) / METRICS).rows]
    assert merged.skipped == 0
    assert merged.rows == merge_by_second(readable) != []  # only the unreadable lines left out


def test_read_rows_skips_and_counts_undecodable_lines(tmp_path: Path) -> None:
    row = MetricsRow(t=100.2, elapsed_s=1.0, requests=3, delivered=2, failed=1,
                     failed_by_kind={"timeout": 1})
    path = tmp_path / METRICS
    path.write_bytes(encode_row(row) + b'{"t": "x"}\n' + b"[]\n" + encode_row(row)
                     + b'{"t": 101.0, "req')

    read = metrics(path)

    assert read.rows == [row, row]
    assert read.skipped == 3


def test_merge_by_second_sums_counts_and_keeps_the_worst_latency() -> None:
    a = MetricsRow(t=100.2, elapsed_s=1.0, requests=3, delivered=3, lines_read=50,
                   latency_ms={"p50": 5.0, "p99": 9.0}, latency_buckets_ms=[[5.0, 3]])
    b = MetricsRow(t=100.7, elapsed_s=1.1, requests=2, delivered=1, failed=1,
                   failed_by_kind={"timeout": 1}, lines_read=60, outage=True,
                   latency_ms={"p50": 7.0, "p99": None}, latency_buckets_ms=[[5.0, 1], [9.0, 1]])
    c = MetricsRow(t=101.1, elapsed_s=2.0, requests=1, delivered=1)

    merged = merge_by_second([a, b, c])

    assert [int(r.t) for r in merged] == [100, 101]
    first = merged[0]
    assert (first.t, first.requests, first.delivered, first.failed) == (100.7, 5, 4, 1)
    assert first.failed_by_kind == {"timeout": 1} and first.outage
    assert first.lines_read == 60  # every worker reads every line: the furthest one
    assert first.latency_ms == {"p50": 7.0, "p99": 9.0}
    assert first.latency_buckets_ms == [[5.0, 4], [9.0, 1]]
    assert merged[1] == c
