"""Output failures stop a run cleanly: a full disk, a read-only folder, short writes, a busy port.

Each ends with one line naming the cause and exit 7, never a traceback, and a resume
finishes the run once the cause is gone. The disk tests mount a small tmpfs (root only;
skipped with the reason elsewhere).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from replayer.output.layout import FAILURES, RESULTS, SUMMARY
from replayer.output.sinks import NdjsonSink, OutputError, write_all
from replayer.records import ExitCode
from tests.conftest import generated, input_records, read_rows

ENV = {k: v for k, v in os.environ.items() if not k.startswith(("LEANPLUM_", "REPLAYER_"))}


def _mount(target: Path, options: str) -> None:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 192 KiB tmpfs: too small for the rows of a few thousand records."""
    target = tmp_path / "disk"
    target.mkdir()
    _mount(target, "size=192k")
    yield target
    subprocess.run(["umount", "-l", str(target)], check=False)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replayer", "run", *args, "--quiet"],
                          capture_output=True, text=True, env=ENV, timeout=120, check=False)


def assert_one_line_error(done: subprocess.CompletedProcess[str], needle: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert needle in done.stderr, done.stderr


def test_short_writes_are_completed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_write = os.write

    def one_byte(fd: int, data: bytes | memoryview) -> int:
        return real_write(fd, bytes(data[:1]))

    path = tmp_path / "rows.ndjson"
    sink = NdjsonSink(path)
    monkeypatch.setattr(os, "write", one_byte)
    for n in range(50):
        sink.write({"n": n})
    sink.close()
    monkeypatch.undo()
    assert [r["n"] for r in read_rows(path)] == list(range(50))


def test_a_write_that_makes_no_progress_is_an_output_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "rows.ndjson"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    monkeypatch.setattr(os, "write", lambda fd, data: 0)
    with pytest.raises(OutputError, match="rows.ndjson"):
        write_all(fd, b"x\n", path)
    os.close(fd)


def test_an_unopenable_output_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot open"):
        NdjsonSink(tmp_path / "missing-folder" / RESULTS)


def test_disk_full_stops_with_exit_7_and_a_resume_finishes(
    small_disk: Path, tmp_path: Path
) -> None:
    data = generated(tmp_path / "in.ndjson", records=6000, users=600)
    out = small_disk / "out"
    done = run_cli(str(data), "--out", str(out), "--workers", "1", "--no-batch")
    assert done.returncode == ExitCode.OUTPUT, done.stderr
    assert_one_line_error(done, "No space left on device")
    # The cause goes away; the same folder resumes and every line ends with one row.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = run_cli(str(data), "--out", str(out), "--workers", "1", "--no-batch", "--resume")
    assert again.returncode == ExitCode.OK, again.stderr
    rows = read_rows(out / RESULTS) + read_rows(out / FAILURES)
    assert sorted(r["line"] for r in rows) == [n for n, _ in input_records(data)]
    assert (out / SUMMARY).exists()


def test_read_only_folder_is_exit_7_not_a_traceback(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=10, users=2)
    target = tmp_path / "ro"
    target.mkdir()
    _mount(target, "size=1m,ro")
    try:
        done = run_cli(str(data), "--out", str(target / "out"))
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)
    assert done.returncode == ExitCode.OUTPUT, done.stderr
    assert_one_line_error(done, "Read-only file system")


def test_metrics_port_in_use_is_exit_7_with_one_line(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=10, users=2)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_cli(str(data), "--out", str(tmp_path / "out"), "--metrics-port", str(port))
    assert done.returncode == ExitCode.OUTPUT, done.stderr
    assert_one_line_error(done, f"port {port}")
