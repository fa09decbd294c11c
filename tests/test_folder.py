"""The output folder: inputs are never harmed, and one run per folder (a lock that dies with it)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path, PurePath
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from replayer.cli import main
from replayer.emulator import LatencyModel
from replayer.output.layout import (
    LOCK,
    RESULTS,
    SUMMARY,
    USERS,
    OutDirError,
    check_inputs,
    is_ours,
    repeated_input,
)
from replayer.output.lock import FolderBusy, FolderLock
from tests.conftest import StartEmulator, generated, read_rows
from tests.test_signals import finish, has_rows, spawn, until

CLEAN_ENV = {k: None for k in ("LEANPLUM_APP_ID", "LEANPLUM_CLIENT_KEY", "REPLAYER_CONFIG",
                               "REPLAYER_ENDPOINT", "REPLAYER_CONCURRENCY")}
LIST_OPEN_FILES = """
import os
for n in os.listdir("/proc/self/fd"):
    if os.path.exists(f"/proc/self/fd/{n}"):
        print(os.readlink(f"/proc/self/fd/{n}"))
"""


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, ["run", *args, "--workers", "1", "-q"], env=CLEAN_ENV,
                              catch_exceptions=False)


def holder_pid(out: Path) -> int | None:
    """The pid the lock file names (None while it is being written)."""
    try:
        doc = orjson.loads((out / LOCK).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    return doc.get("pid") if isinstance(doc, dict) else None


# ---- inputs are never harmed ---------------------------------------------------------------


@pytest.mark.parametrize("name", [RESULTS, "workers/0/in.ndjson", "report.html", LOCK,
                                  SUMMARY + ".tmp"],
                         ids=["results", "in-workers", "report", "lock", "tmp"])
@pytest.mark.parametrize("mode", ["--overwrite", "--resume"])
def test_an_input_among_replayers_files_is_refused_and_kept(
    tmp_path: Path, name: str, mode: str
) -> None:
    out = tmp_path / "out"
    data = out / name
    data.parent.mkdir(parents=True)
    generated(data, records=5, users=2)
    before = data.read_bytes()

    result = invoke(str(data), "--out", str(out), mode)

    assert result.exit_code == 2, result.output
    assert str(data) in result.output and "move the input out" in result.output
    assert data.read_bytes() == before


@pytest.mark.parametrize(
    ("relative", "ours"),
    [(RESULTS, True), (SUMMARY + ".tmp", True), (USERS, True), (LOCK, True),
     ("workers/0/anything", True), ("report.html", True), ("report-latency.png", True),
     (".users-part-0.tmp", True), (".report.html.tmp", True), (".replayer-spill-x1", True),
     ("notes.txt", False), ("in.ndjson", False), ("sub/" + RESULTS, False),
     ("report.txt", False), (".notes.tmp", False)],
    ids=lambda v: str(v),
)
def test_which_files_of_the_folder_are_replayers(relative: str, ours: bool) -> None:
    assert is_ours(PurePath(relative)) is ours


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_an_input_linked_as_one_of_replayers_files_is_refused(tmp_path: Path, link: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    data = generated(tmp_path / "in.ndjson", records=5, users=2)
    (os.symlink if link == "symlink" else os.link)(data, out / RESULTS)

    with pytest.raises(OutDirError, match="in.ndjson"):
        check_inputs(out, [str(data)])
    check_inputs(out, ["-", str(generated(tmp_path / "other.ndjson", records=1, users=1))])


def test_overwrite_removes_replayers_files_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    data = generated(tmp_path / "in.ndjson", records=5, users=2)
    assert invoke(str(data), "--out", str(out)).exit_code == 0
    (out / "notes.txt").write_text("mine")
    (out / "workers" / "0").mkdir(parents=True)
    (out / "workers" / "0" / RESULTS).write_text("{}\n")
    (out / "workers" / "0" / "keep.txt").write_text("mine too")

    result = invoke(str(data), "--out", str(out), "--overwrite")

    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "workers" / "0" / "keep.txt").read_text() == "mine too"
    assert not (out / "workers" / "0" / RESULTS).exists()
    assert (out / LOCK).exists(), "the lock file is never removed"
    assert len(read_rows(out / RESULTS)) == 5


@pytest.mark.parametrize("spelling", ["dot-slash", "symlink", "hardlink"])
def test_the_same_input_twice_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    monkeypatch.chdir(tmp_path)
    generated(tmp_path / "a.ndjson", records=5, users=2)
    other = {"dot-slash": "./a.ndjson", "symlink": "b.ndjson", "hardlink": "c.ndjson"}[spelling]
    if spelling == "symlink":
        os.symlink("a.ndjson", "b.ndjson")
    elif spelling == "hardlink":
        os.link("a.ndjson", "c.ndjson")

    result = invoke("a.ndjson", other, "--out", "out")

    assert result.exit_code == 2, result.output
    assert "a.ndjson" in result.output and other in result.output
    assert "same file" in result.output
    assert not (tmp_path / "out").exists(), "refused before the folder was made"


def test_distinct_inputs_and_stdin_are_not_repeats(tmp_path: Path) -> None:
    a = generated(tmp_path / "a.ndjson", records=1, users=1)
    b = generated(tmp_path / "b.ndjson", records=1, users=1)  # same bytes, another file
    (tmp_path / "x").mkdir()
    around = str(tmp_path / "x" / ".." / "a.ndjson")

    assert repeated_input(["-", str(a), str(b)]) is None
    assert repeated_input([str(a), str(b), around]) == (str(a), around)


# ---- one run per folder --------------------------------------------------------------------


def test_lock_is_exclusive_names_its_holder_and_is_not_inherited(tmp_path: Path) -> None:
    (tmp_path / LOCK).write_text("left by a killed run")  # a stale file never blocks
    with FolderLock(tmp_path, host="here") as lock:
        assert lock.held and (lock.holder() or {}).get("pid") == os.getpid()
        with pytest.raises(FolderBusy, match=f"pid {os.getpid()} on here"):
            FolderLock(tmp_path).acquire()
        child = subprocess.run(  # a child keeps no descriptor of the lock file
            [sys.executable, "-c", LIST_OPEN_FILES],
            close_fds=False, capture_output=True, text=True, timeout=30, check=True)
        assert str(tmp_path / LOCK) not in child.stdout
    assert not lock.held
    with FolderLock(tmp_path):
        pass


@pytest.mark.parametrize("workers", ["1", "2"], ids=["one-process", "workers"])
async def test_a_second_run_on_a_busy_folder_exits_2_and_a_killed_run_resumes(
    start_emulator: StartEmulator, tmp_path: Path, workers: str
) -> None:
    emulator = await start_emulator(latency_ms=LatencyModel(5.0))
    data = generated(tmp_path / "in.ndjson", records=300, users=30)
    out = tmp_path / "out"
    first = await spawn(data, out, emulator.url, "--workers", workers, "--rate", "40",
                        "--no-batch")
    try:
        await until(lambda: holder_pid(out) == first.pid and has_rows(out))
        files_before = {p: p.stat().st_size for p in out.rglob("*") if p.is_file()}

        seconds = [await spawn(data, out, emulator.url, "--workers", workers, extra)
                   for extra in ("--overwrite", "--resume")]
        for code, _, stderr in await asyncio.gather(*map(finish, seconds)):
            assert code == 2, stderr
            assert f"pid {first.pid}" in stderr and "in use by another run" in stderr
        assert all(p.exists() for p in files_before), "the busy run's files are untouched"
        assert first.returncode is None
    finally:
        if first.returncode is None:
            first.send_signal(signal.SIGKILL)
        await finish(first)

    assert (out / LOCK).exists() and holder_pid(out) == first.pid  # stale, and harmless
    resumed = await spawn(data, out, emulator.url, "--workers", workers, "--resume",
                          "--no-batch", "-q")
    code, _, stderr = await finish(resumed)
    assert code == 0, stderr
    assert orjson.loads((out / SUMMARY).read_bytes())["delivered"] == 300
