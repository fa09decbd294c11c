"""Failure lines within a budget per kind, lines said to the operator, a worker's lines relayed,
and JSON progress lines: the log stream stays readable, and JSON when asked for."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from replayer.observe.live import Totals
from replayer.observe.loglimit import Held, LineBudget, more_text
from replayer.observe.logs import (
    FailureLines,
    JsonFormatter,
    TextFormatter,
    about,
    flush_held,
    log,
    relay,
    say,
    setup_logging,
)
from replayer.observe.progress import Progress

# (kind, seconds) of each line -> whether it is shown, and the counts told before it.
_BURST = [("timeout", 0.0)] * 7
_CASES = [
    pytest.param(_BURST, [True] * 5 + [False] * 2, [], [Held("timeout", 2)], id="a-burst"),
    pytest.param([("timeout", 0.0)] * 6 + [("timeout", 10.0)], [True] * 5 + [False, True],
                 [Held("timeout", 1)], [], id="next-interval-tells-the-last"),
    pytest.param([("a", 0.0)] * 6 + [("b", 1.0)] * 6, [True] * 5 + [False] + [True] * 5 + [False],
                 [], [Held("a", 1), Held("b", 1)], id="each-kind-its-own-budget"),
    pytest.param([("a", 0.0)] * 3 + [("a", 10.0)] * 3, [True] * 6, [], [],
                 id="under-budget-nothing-to-tell"),
]


@pytest.mark.parametrize(("lines", "shown", "told_on_the_way", "told_at_end"), _CASES)
def test_line_budget(lines: list[tuple[str, float]], shown: list[bool],
                     told_on_the_way: list[Held], told_at_end: list[Held]) -> None:
    budget = LineBudget(per_kind=5, window_s=10.0)
    seen, told = [], []
    for kind, now_s in lines:
        ok, over = budget.take(kind, now_s)
        seen.append(ok)
        told += over
    assert seen == shown
    assert told == told_on_the_way
    assert budget.due(lines[-1][1], every=True) == told_at_end
    assert budget.due(1e9, every=True) == [], "each count is told once"


@pytest.mark.parametrize(
    ("held", "expected"),
    [(Held("timeout", 1), "(+1 more timeout; see failures.ndjson)"),
     (Held("invalid_json", 199_995), "(+199,995 more invalid_json; see failures.ndjson)")],
    ids=["one", "thousands"],
)
def test_more_text(held: Held, expected: str) -> None:
    assert more_text(held) == expected


class _Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


class _Stderr:
    """What the log wrote to stderr, read once at the end of a test."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def getvalue(self) -> str:
        return self._capsys.readouterr().err


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[_Stderr]:
    handlers, level = log.handlers[:], log.level
    yield _Stderr(capsys)
    log.handlers[:] = handlers
    log.setLevel(level)


class _Limited(_Clock):
    """A clock the test moves, and the lines logged within a budget on it."""

    def __init__(self) -> None:
        super().__init__()
        self.out = io.StringIO()
        self.inner = logging.StreamHandler(self.out)

    def getvalue(self) -> str:
        return self.out.getvalue()


@pytest.fixture
def limited() -> Iterator[_Limited]:
    limited = _Limited()
    limited.inner.setFormatter(TextFormatter())
    handlers, level = log.handlers[:], log.level
    log.handlers[:] = [FailureLines(limited.inner, LineBudget(), now=limited)]
    log.setLevel(logging.INFO)
    yield limited
    log.handlers[:] = handlers
    log.setLevel(level)


def _failure(line: int, kind: str = "timeout") -> None:
    log.info("failed (%s) after 1 attempt(s): no answer", kind,
             extra=about("in.ndjson", line, "u1", kind))


def test_a_dead_endpoint_prints_a_few_lines_and_a_count(limited: _Limited) -> None:
    for line in range(1, 1001):
        _failure(line)
    log.warning("outage: waiting")  # a line about no record is never held back
    limited.now_s = 9.9
    flush_held()
    _failure(1001)
    limited.now_s = 10.0
    flush_held()  # the interval is over: its count is told
    _failure(1002, "rejected")
    flush_held(every=True)
    lines = limited.getvalue().splitlines()
    assert lines == [f"replayer: in.ndjson:{n} [u1] failed (timeout) after 1 attempt(s): "
                     "no answer" for n in range(1, 6)] + [
        "replayer: outage: waiting", "replayer: (+996 more timeout; see failures.ndjson)",
        "replayer: in.ndjson:1002 [u1] failed (rejected) after 1 attempt(s): no answer"]


def test_debug_shows_every_record(stderr: _Stderr) -> None:
    setup_logging(fmt="text", level="debug")
    for line in range(1, 21):
        _failure(line)
    flush_held(every=True)
    assert len(stderr.getvalue().splitlines()) == 20


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_say_and_a_relayed_worker_line_follow_the_log_format(stderr: _Stderr,
                                                             fmt: str) -> None:
    setup_logging(fmt=fmt, level="warning")  # say is heard whatever the level
    say("replaying in.ndjson into the emulator")
    worker = orjson.dumps({"ts": "2026-01-02T03:04:05.678+00:00", "level": "warning",
                           "msg": "outage: waiting", "kind": None})
    relay(worker + b"\n")
    relay(b"Traceback (most recent call last):\n")
    relay(orjson.dumps({"ts": "2026-01-02T03:04:05.678+00:00", "level": "info", "msg": "x"}))
    lines = stderr.getvalue().splitlines()
    if fmt == "text":
        assert lines == ["replaying in.ndjson into the emulator", "replayer: outage: waiting",
                         "Traceback (most recent call last):", "replayer: x"]
        return
    docs = [orjson.loads(line) for line in lines]  # JSON lines only
    assert [d["msg"] for d in docs] == ["replaying in.ndjson into the emulator",
                                        "outage: waiting", "Traceback (most recent call last):",
                                        "x"]
    assert docs[1]["ts"] == "2026-01-02T03:04:05.678+00:00", "the worker's own time"


def test_relayed_failure_lines_share_one_budget(limited: _Limited) -> None:
    limited.inner.setFormatter(JsonFormatter())
    for line in range(1, 13):  # two workers' lines, one budget
        relay(orjson.dumps({"ts": "2026-01-02T03:04:05.678+00:00", "level": "info",
                            "msg": "failed", "file": "in.ndjson", "line": line,
                            "kind": "timeout"}))
    flush_held(every=True)
    docs = [orjson.loads(line) for line in limited.getvalue().splitlines()]
    assert [d.get("line") for d in docs] == [1, 2, 3, 4, 5, None]
    assert docs[-1]["msg"] == "(+7 more timeout; see failures.ndjson)"


def test_progress_lines_off_a_terminal_are_json_lines_with_json_logs() -> None:
    out, clock = io.StringIO(), _Clock()
    progress = Progress(stream=out, tty=False, interval_s=1.0, json_lines=True, now=clock,
                        wall=lambda: 1_800_000_000.0)
    totals = Totals()
    totals.add("m", {"elapsed_s": 1.0, "delivered": 3, "records_read": 4, "bytes_read": 10,
                     "bytes_total": 10, "input_ended": True, "pending": 1})
    clock.now_s = 2.0
    progress.update(totals)
    progress.close(totals)
    docs = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert len(docs) == 2
    assert docs[0]["msg"].startswith("75.0% of records finished (3 of 4)")
    assert docs[0]["progress"]["percent"] == 75.0
    assert docs[0]["progress"]["records_known"] == 4
    assert docs[0]["ts"] == "2027-01-15T08:00:00.000+00:00"

