"""A run on a terminal (a pseudo-terminal), against an emulator with faults: log lines print
above the live display and never into it, the percent stays below 100 until the last row,
and the final screen's counts are summary.json's. Off a terminal with --log-format json,
stderr carries JSON lines only, and a resume counts its earlier sessions."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import signal
import struct
import sys
import termios
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from replayer.emulator import FaultConfig, LatencyModel
from replayer.output.layout import RESULTS, SUMMARY
from tests.conftest import TEST_APP_ID, TEST_KEY, gated_emulator, generated

WIDTH, HEIGHT = 160, 40
HELD_AFTER = 100  # requests answered before the gate holds the rest
# The emulator behind the gate: a fifth of the requests answered 503.
GATED: dict[str, Any] = {"latency_ms": LatencyModel(1.0), "faults": FaultConfig.parse("503=0.2"),
                         "seed": 3}
INVALID = 8  # lines that are not JSON: five shown, then a count

_CSI = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])|\r|\n|[^\x1b\r\n]+")


class Screen:
    """Just enough of a terminal for rich's live display: text, CR, LF, cursor moves and
    erasing a line. Every line ever written stays (the scrollback with the screen)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.lines: list[list[str]] = [[]]
        self.row = self.col = 0

    def feed(self, text: str) -> None:
        for m in _CSI.finditer(text):
            token = m.group(0)
            if token == "\r":
                self.col = 0
            elif token == "\n":
                self._down()
            elif m.group(2) is not None:
                self._control(m.group(1), m.group(2))
            else:
                for char in token:
                    if self.col >= self.width:  # the terminal wraps a long line
                        self._down()
                        self.col = 0
                    line = self.lines[self.row]
                    line.extend(" " * (self.col + 1 - len(line)))
                    line[self.col] = char
                    self.col += 1

    def _down(self) -> None:
        self.row += 1
        if self.row == len(self.lines):
            self.lines.append([])

    def _control(self, args: str, op: str) -> None:
        n = int(args) if args.isdigit() else 1
        if op == "A":
            self.row = max(0, self.row - n)
        elif op == "K":
            line = self.lines[self.row]
            del line[0 if args == "2" else self.col:]
        elif op == "G":
            self.col = n - 1
        elif op not in "mhl":  # colours, showing and hiding the cursor
            raise AssertionError(f"a control this screen does not know: {args}{op}")

    def text(self) -> list[str]:
        return ["".join(line).rstrip() for line in self.lines]


def _input(tmp_path: Path) -> Path:
    lines = generated(tmp_path / "g.ndjson", records=400, users=100).read_bytes().splitlines()
    for i in range(INVALID):  # spread through the file
        lines.insert(40 * i + 7, b"id,name,country")
    path = tmp_path / "in.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


ENV = {**os.environ, "LEANPLUM_APP_ID": TEST_APP_ID, "LEANPLUM_CLIENT_KEY": TEST_KEY,
       "REPLAYER_BACKOFF_BASE_S": "0.5", "REPLAYER_BACKOFF_MAX_S": "0.5"}
FLAGS = ("--no-preflight", "--no-batch", "--concurrency", "4", "--max-attempts", "2")


async def _run_on_a_terminal(data: Path, out: Path, workers: str) -> tuple[str, int]:
    """Runs replayer with its stderr on a pseudo-terminal; returns all it drew, and its code."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", HEIGHT, WIDTH, 0, 0))
    env = {**ENV, "COLUMNS": str(WIDTH), "LINES": str(HEIGHT), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    async with gated_emulator(held_after=HELD_AFTER, **GATED) as (url, release):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "replayer", "run", str(data), "--out", str(out),
            "--endpoint", url, *FLAGS, "--workers", workers,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=slave,
            env=env,
        )
        os.close(slave)
        drawn = bytearray()
        ended = asyncio.Event()
        loop = asyncio.get_running_loop()

        def take() -> None:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the last holder of the terminal closed it
                chunk = b""
            if not chunk:
                loop.remove_reader(master)
                ended.set()
                return
            drawn.extend(chunk)
            # Held at HELD_AFTER requests, no run can end: release once a display shows it.
            if not release.is_set() and re.search(rb"\d+\.\d%", drawn):
                release.set()

        loop.add_reader(master, take)
        try:
            async with asyncio.timeout(120):
                await proc.communicate()
                await ended.wait()
        finally:
            loop.remove_reader(master)
            os.close(master)
    assert proc.returncode is not None
    return drawn.decode(), proc.returncode


_PANEL = ("records/s", "records finished", "latency p50", "━", "users waiting to retry")
_FAILURE = re.compile(r"^replayer: \S+:\d+ (?:\[[^\]]*\] )?[^(]*\((\w+)\)")
_MORE = re.compile(r"^replayer: \(\+([\d,]+) more (\w+); see failures\.ndjson\)$")
_ANSI = re.compile(r"\x1b\[[?0-9;]*[A-Za-z]")


def _number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_run_on_a_terminal_tells_the_truth(tmp_path: Path, workers: str) -> None:
    data, out = _input(tmp_path), tmp_path / "out"
    drawn, code = await _run_on_a_terminal(data, out, workers)
    summary = orjson.loads((out / SUMMARY).read_bytes())
    records = summary["records"]
    assert records == 400 + INVALID and code == 1, drawn  # the invalid lines fail the run

    # The percent stays below 100 until every record has its row: each draw, in order.
    plain = _ANSI.sub("", drawn)
    draws = re.findall(r"(\d+\.\d)%.*?([\d,]+) of (~?)([\d,]+) records finished", plain,
                       re.DOTALL)
    assert draws, plain
    for pct, done, estimate, known in draws:
        if pct == "100.0":
            assert (_number(done), estimate, _number(known)) == (records, "", records)
        else:
            assert float(pct) < 100.0
    assert any(_number(done) < records for _, done, _, _ in draws), "seen while unfinished"
    assert draws[-1][0] == "100.0"

    screen = Screen(WIDTH)
    screen.feed(drawn)
    lines = [line for line in screen.text() if line]
    # Log lines never share a line with the display, and no stale display stays behind.
    for line in lines:
        if "replayer:" in line:
            assert line.startswith("replayer: ") and not any(p in line for p in _PANEL), line
    panel = [line for line in lines if any(p in line for p in _PANEL)]
    assert sum("records/s" in line for line in panel) == 1, "\n".join(lines)

    # The final display counts what summary.json counts.
    text = "\n".join(panel)
    assert f"{records:,} of {records:,} records finished" in text
    found = re.search(r"delivered ([\d,]+) failed ([\d,]+)", text)
    assert found is not None, text
    assert (_number(found.group(1)), _number(found.group(2))) == (
        summary["delivered"], summary["failed"])

    # Every failure is on the screen: its line, or within a count of lines held back.
    shown: Counter[str] = Counter()
    for line in lines:
        if (more := _MORE.match(line)) is not None:
            shown[more.group(2)] += _number(more.group(1))
        elif (failure := _FAILURE.match(line)) is not None:
            shown[failure.group(1)] += 1
    assert dict(shown) == summary["failures_by_kind"], "\n".join(lines)
    assert shown["invalid_json"] == INVALID
    if workers == "1":  # one process takes them all at once: five lines, then a count
        assert sum(1 for line in lines if _FAILURE.match(line) and "invalid_json" in line) == 5


async def _until_rows(out: Path) -> None:
    """Polls the folder until some result row is on disk (the only window into the child)."""
    async with asyncio.timeout(60):
        while not any(p.stat().st_size for p in out.rglob(RESULTS)):
            await asyncio.sleep(0.01)


def _json_lines(stderr: bytes) -> list[dict[str, object]]:
    docs = [orjson.loads(line) for line in stderr.splitlines()]  # raises on any other line
    assert all(isinstance(d, dict) and {"ts", "level", "msg"} <= d.keys() for d in docs)
    return docs


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_json_logs_off_a_terminal_and_a_resume_counts_its_earlier_sessions(
    tmp_path: Path, workers: str
) -> None:
    data, out = _input(tmp_path), tmp_path / "out"
    run = ("-m", "replayer", "run", str(data), "--out", str(out), *FLAGS, "--workers", workers,
           "--log-format", "json", "--progress-interval", "0.2")
    async with gated_emulator(held_after=HELD_AFTER, **GATED) as (url, release):
        first = await asyncio.create_subprocess_exec(
            sys.executable, *run, "--endpoint", url, env=ENV,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await _until_rows(out)
        first.send_signal(signal.SIGTERM)  # held at HELD_AFTER requests: surely unfinished
        release.set()
        _, first_err = await asyncio.wait_for(first.communicate(), 60)
        before = orjson.loads((out / SUMMARY).read_bytes())
        assert first.returncode == 143 and before["state"] == "interrupted"
        assert 0 < before["delivered"] and before["records"] < 400 + INVALID
        second = await asyncio.create_subprocess_exec(
            sys.executable, *run, "--endpoint", url, "--resume", env=ENV,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, second_err = await asyncio.wait_for(second.communicate(), 60)
    summary = orjson.loads((out / SUMMARY).read_bytes())
    assert second.returncode == 1 and summary["records"] == 400 + INVALID

    _json_lines(first_err)
    docs = _json_lines(second_err)
    progress = [d["progress"] for d in docs if "progress" in d]
    assert isinstance(progress[-1], dict)
    last = progress[-1]
    assert (last["delivered"], last["failed"]) == (summary["delivered"], summary["failed"])
    assert (last["delivered_before"], last["failed_before"]) == (before["delivered"],
                                                                before["failed"])
    assert (last["percent"], last["records_finished"]) == (100.0, summary["records"])
    for p in progress:  # 100% only once every record has its row
        assert isinstance(p, dict)
        assert p["percent"] != 100.0 or p["records_finished"] == summary["records"]
    line = next(str(d["msg"]) for d in reversed(docs) if "progress" in d)
    assert f"delivered {summary['delivered']:,} ({before['delivered']:,} before this session)" \
        in line
