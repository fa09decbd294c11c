"""Batching (`Settings(batch=True)`) end to end against servers in process: what `multi` carries.

Every record carries its line number as `appVersion` ("L<line>"), so each action a server
receives can be traced back to its input line: limits, times, order per user and the
outcome of every element are checked against the input, not against the client's view.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from replayer.emulator import LatencyModel
from replayer.engine import intake as pipeline
from replayer.engine.control import RunControl
from replayer.engine.replay import replay
from replayer.output.layout import FAILURES, RESULTS
from replayer.records import ExitCode
from replayer.source.read import CHUNK_LINES, iter_lines
from tests.conftest import DATA, StartEmulator, read_rows, settings_for

T0 = 1_700_000_000
RUN_TIMEOUT_S = 10.0  # a hung run fails the test instead of hanging the suite
SUCCESS = orjson.loads((DATA / "start-response.json").read_bytes())["response"][0]


# ---- inputs ----------------------------------------------------------------------------


def write_input(path: Path, users: list[str], *, untimed_every: int = 0,
                extra: Callable[[int], dict[str, Any]] | None = None) -> dict[int, dict[str, Any]]:
    """One record per entry of `users`, in order; returns {line: record}.

    A user named "dev-..." is identified by deviceId only. Every `untimed_every`-th
    record has no `time` (the call's time stands in for it).
    """
    records: dict[int, dict[str, Any]] = {}
    for line, user in enumerate(users, start=1):
        record: dict[str, Any] = {"deviceId": user} if user.startswith("dev-") else {"userId": user}
        record["appVersion"] = f"L{line}"
        if not (untimed_every and line % untimed_every == 0):
            record["time"] = T0 + line
        if extra is not None:
            record.update(extra(line))
        records[line] = record
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records.values()))
    return records


def one_user_in_a_row() -> list[str]:
    """Thousands of records of one user in a row, then a few light users."""
    return ["heavy"] * 1500 + [f"light{i}" for i in range(40)]


def many_users() -> list[str]:
    """300 users (every 10th identified by deviceId), four records each, interleaved."""
    names = [f"dev-{i}" if i % 10 == 0 else f"u{i}" for i in range(300)]
    return [names[i % 300] for i in range(1200)]


SHAPES = {"one_user_in_a_row": one_user_in_a_row, "many_users": many_users}
LIMITS = {"default_50_500": (50, 500), "lowered_3_7": (3, 7)}


def user_of(action: dict[str, Any]) -> str:
    return action.get("userId") or action["deviceId"]  # type: ignore[no-any-return]


def line_of(action: dict[str, Any]) -> int:
    return int(action["appVersion"][1:])


def expected_lines(records: dict[int, dict[str, Any]]) -> dict[str, list[int]]:
    """Per user, that user's lines in input order."""
    per_user: dict[str, list[int]] = defaultdict(list)
    for line, record in records.items():
        per_user[user_of(record)].append(line)
    return dict(per_user)


def lines_per_user(bodies: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Per user, the lines of that user's actions over all calls, calls in arrival order."""
    per_user: dict[str, list[int]] = defaultdict(list)
    for body in bodies:
        for action in body["data"]:
            per_user[user_of(action)].append(line_of(action))
    return dict(per_user)


def assert_within_limits(
    bodies: list[dict[str, Any]], records: dict[int, dict[str, Any]],
    *, max_users: int, max_actions: int,
) -> None:
    """Each call: a top-level time, 1..max_actions actions of at most max_users users, each timed."""
    for body in bodies:
        assert isinstance(body["time"], int | float)
        data = body["data"]
        assert 1 <= len(data) <= max_actions
        assert len({user_of(a) for a in data}) <= max_users
        for action in data:
            assert action["action"] == "start"
            record = records[line_of(action)]
            assert action["time"] == record.get("time", body["time"]), action


# ---- running -----------------------------------------------------------------------------


async def run_replay(settings: Any, path: Path, out: Path) -> Any:
    out.mkdir(exist_ok=True)
    async with asyncio.timeout(RUN_TIMEOUT_S):
        return await replay(settings, [str(path)], out, control=RunControl(),
                            rng=random.Random(7))


def batched(url: str, **overrides: Any) -> Any:
    return settings_for(url, batch=True, **overrides)


def rows_by_line(path: Path) -> dict[int, dict[str, Any]]:
    rows = read_rows(path)
    by_line = {r["line"]: r for r in rows}
    assert len(by_line) == len(rows), "one row per line"
    return by_line


@dataclasses.dataclass
class Call:
    """One request a custom server received, and the status it answered with."""

    action: str | None
    body: dict[str, Any]
    status: int


Answer = Callable[[dict[str, Any], int], tuple[int, list[Any]]]  # (body, call index) -> answer


@dataclasses.dataclass
class Served:
    url: str
    calls: list[Call]

    def bodies(self, status: int | None = None) -> list[dict[str, Any]]:
        return [c.body for c in self.calls if status is None or c.status == status]

    def calls_of(self) -> dict[int, list[int]]:
        """Per line, the indexes of the calls that carried it."""
        out: dict[int, list[int]] = defaultdict(list)
        for index, call in enumerate(self.calls):
            for action in call.body["data"]:
                out[line_of(action)].append(index)
        return out


StartServer = Callable[[Answer], Awaitable[Served]]


@pytest.fixture
async def serve() -> AsyncIterator[StartServer]:
    """Starts custom `/api` servers whose answers a test chooses; records every call."""
    servers: list[TestServer] = []

    async def start(answer: Answer) -> Served:
        served = Served("", [])

        async def api(request: web.Request) -> web.Response:
            body = orjson.loads(await request.read())
            status, elements = answer(body, len(served.calls))
            served.calls.append(Call(request.query.get("action"), body, status))
            return web.Response(status=status, body=orjson.dumps({"response": elements}),
                                content_type="application/json")

        app = web.Application()
        app.router.add_post("/api", api)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        served.url = str(server.make_url("/api"))
        return served

    yield start
    for server in servers:
        await server.close()


def successes(body: dict[str, Any]) -> list[Any]:
    return [SUCCESS] * len(body["data"])


def error(message: str) -> list[Any]:
    return [{"success": False, "error": {"message": message}}]


# ---- 1. limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("limits", LIMITS.values(), ids=LIMITS.keys())
async def test_every_multi_call_stays_within_the_limits_and_times_every_action(
    start_emulator: StartEmulator, tmp_path: Path,
    limits: tuple[int, int], shape: Callable[[], list[str]],
) -> None:
    max_users, max_actions = limits
    emulator = await start_emulator(record_requests=True, multi_max_users=max_users,
                                    multi_max_actions=max_actions)
    data = tmp_path / "in.ndjson"
    records = write_input(data, shape(), untimed_every=7)
    settings = batched(emulator.url, concurrency=16, batch_users=max_users,
                       batch_actions=max_actions)

    report = await run_replay(settings, data, tmp_path / "out")

    state = await emulator.state()
    bodies = [r["body"] for r in state["requests"]]
    assert report.exit_code == ExitCode.OK
    assert {r["query"].get("action") for r in state["requests"]} == {"multi"}
    assert state["counters"]["requests_by_status"] == {"200": len(bodies)}
    assert_within_limits(bodies, records, max_users=max_users, max_actions=max_actions)
    assert sum(len(b["data"]) for b in bodies) == len(records), "each record sent once"
    if max_actions < len(records):
        assert max(len(b["data"]) for b in bodies) > 1, "records are packed, not sent alone"


# ---- 2. order per user, one call per user at a time --------------------------------------


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("limits", LIMITS.values(), ids=LIMITS.keys())
async def test_each_users_actions_arrive_in_input_order_one_call_at_a_time(
    start_emulator: StartEmulator, tmp_path: Path,
    limits: tuple[int, int], shape: Callable[[], list[str]],
) -> None:
    max_users, max_actions = limits
    emulator = await start_emulator(record_requests=True, latency_ms=LatencyModel(2.0))
    data = tmp_path / "in.ndjson"
    records = write_input(data, shape(), untimed_every=5)
    settings = batched(emulator.url, concurrency=16, batch_users=max_users,
                       batch_actions=max_actions)

    report = await run_replay(settings, data, tmp_path / "out")

    state = await emulator.state()
    bodies = [r["body"] for r in state["requests"]]  # in arrival order
    assert report.exit_code == ExitCode.OK
    assert state["counters"]["lock_conflicts"] == 0, "a user was in two calls at once"
    assert state["counters"]["requests_by_status"] == {"200": len(bodies)}
    assert lines_per_user(bodies) == expected_lines(records)
    results = rows_by_line(tmp_path / "out" / RESULTS)
    assert sorted(results) == sorted(records)
    assert {r["attempts"] for r in results.values()} == {1}


# ---- 3. per-element outcomes -------------------------------------------------------------

MARKERS = ("ok", "warn", "err")


def element_for(action: dict[str, Any]) -> dict[str, Any]:
    """The answer a record asks for through its deviceModel."""
    marker = action["deviceModel"]
    if marker == "warn":
        return {"success": True, "warning": {"message": "User does not exist; skipped"}}
    if marker == "err":
        return {"success": True, "error": {"message": "Bad value for parameter locale"}}
    return SUCCESS  # type: ignore[no-any-return]


async def test_each_element_decides_its_own_record(
    serve: StartServer, tmp_path: Path
) -> None:
    served = await serve(lambda body, _: (200, [element_for(a) for a in body["data"]]))
    data = tmp_path / "in.ndjson"
    users = [f"u{i % 9}" for i in range(90)]
    records = write_input(data, users, untimed_every=4,
                          extra=lambda line: {"deviceModel": MARKERS[line * 7 % 11 % 3]})
    out = tmp_path / "out"

    report = await run_replay(batched(served.url, batch_users=4, batch_actions=10), data, out)

    by_marker = {m: {n for n, r in records.items() if r["deviceModel"] == m} for m in MARKERS}
    assert all(by_marker.values()), "the input mixes all three outcomes"
    results = rows_by_line(out / RESULTS)
    failures = rows_by_line(out / FAILURES)
    assert report.exit_code == ExitCode.FAILURES
    assert set(results) == by_marker["ok"]
    assert {r["status"] for r in results.values()} == {"delivered"}
    assert {n: f["kind"] for n, f in failures.items()} == (
        dict.fromkeys(by_marker["warn"], "warning") | dict.fromkeys(by_marker["err"], "rejected")
    )
    for line, row in (results | failures).items():
        assert row["attempts"] == 1
        assert row["userId"] == records[line]["userId"]
    assert {f["message"] for f in failures.values()} == {
        "User does not exist; skipped", "Bad value for parameter locale"}
    assert {f["record"]["appVersion"] for f in failures.values()} == {
        f"L{n}" for n in failures}
    assert len(served.calls) > 1
    assert {c.action for c in served.calls} == {"multi"}
    assert lines_per_user(served.bodies()) == expected_lines(records)
    assert report.summary.failures_by_kind == {
        "rejected": len(by_marker["err"]), "warning": len(by_marker["warn"])}


async def test_records_of_a_call_answered_503_are_retried_and_delivered(
    serve: StartServer, tmp_path: Path
) -> None:
    def answer(body: dict[str, Any], index: int) -> tuple[int, list[Any]]:
        return (503, error("Service unavailable")) if index == 0 else (200, successes(body))

    served = await serve(answer)
    data = tmp_path / "in.ndjson"
    records = write_input(data, [f"u{i % 6}" for i in range(30)], untimed_every=3)
    out = tmp_path / "out"

    report = await run_replay(batched(served.url), data, out)

    results = rows_by_line(out / RESULTS)
    first = {line_of(a) for a in served.calls[0].body["data"]}
    calls_of = served.calls_of()
    assert report.exit_code == ExitCode.OK
    assert read_rows(out / FAILURES) == []
    assert sorted(results) == sorted(records)
    assert first, "the refused call carried records"
    for line, row in results.items():
        assert row["attempts"] == (2 if line in first else 1), line
        assert len(calls_of[line]) == row["attempts"]
        assert served.calls[calls_of[line][-1]].status == 200
    assert lines_per_user(served.bodies(200)) == expected_lines(records)
    assert report.summary.retries == len(first)


# ---- 4. split on 403 ---------------------------------------------------------------------

K = 4  # the server refuses any multi with more actions than this


def over_k_refused(body: dict[str, Any], _: int) -> tuple[int, list[Any]]:
    if len(body["data"]) > K:
        return 403, error(f"multi takes at most {K} actions")
    return 200, successes(body)


async def check_split(served: Served, records: dict[int, dict[str, Any]], out: Path,
                      report: Any) -> None:
    accepted = served.bodies(200)
    assert report.exit_code == ExitCode.OK
    assert read_rows(out / FAILURES) == []
    assert sorted(rows_by_line(out / RESULTS)) == sorted(records)
    assert {c.status for c in served.calls} == {200, 403}
    assert all(len(c.body["data"]) > K for c in served.calls if c.status == 403)
    assert all(len(b["data"]) <= K for b in accepted)
    assert lines_per_user(accepted) == expected_lines(records), "each record once, in order"


async def test_refused_calls_are_split_by_users_until_accepted(
    serve: StartServer, tmp_path: Path
) -> None:
    served = await serve(over_k_refused)
    data = tmp_path / "in.ndjson"
    # At most K records per user: a split never has to cut one user's actions in two.
    records = write_input(data, [f"u{i % 60}" for i in range(180)], untimed_every=5)
    out = tmp_path / "out"

    report = await run_replay(batched(served.url, concurrency=8), data, out)

    await check_split(served, records, out, report)


SPLIT_INSIDE = {
    # Deterministic even alone: the lane is queued again after each half.
    "one_user_alone": (["heavy"] * 40, 1),
    "among_other_users": (
        [f"u{i % 5}" for i in range(5)] + ["heavy"] * 40 + [f"u{i % 5}" for i in range(30)], 8),
}


@pytest.mark.parametrize(("users", "concurrency"), SPLIT_INSIDE.values(), ids=SPLIT_INSIDE.keys())
async def test_refused_calls_are_split_inside_one_users_actions_in_order(
    start_emulator: StartEmulator, tmp_path: Path, users: list[str], concurrency: int
) -> None:
    # The emulator answers 403 to a multi with more than K actions, like Leanplum over 500.
    emulator = await start_emulator(record_requests=True, multi_max_actions=K,
                                    latency_ms=LatencyModel(1.0))
    data = tmp_path / "in.ndjson"
    records = write_input(data, users)
    out = tmp_path / "out"

    report = await run_replay(batched(emulator.url, concurrency=concurrency), data, out)

    state = await emulator.state()
    bodies = [r["body"] for r in state["requests"]]
    assert report.exit_code == ExitCode.OK
    assert all(b["data"] for b in bodies), "no empty multi call"
    assert state["counters"]["lock_conflicts"] == 0, "a user was in two calls at once"
    assert state["counters"]["requests_by_status"] == {
        "200": sum(len(b["data"]) <= K for b in bodies),
        "403": sum(len(b["data"]) > K for b in bodies)}
    assert read_rows(out / FAILURES) == []
    assert sorted(rows_by_line(out / RESULTS)) == sorted(records)
    received = {u: [e["time"] for e in es] for u, es in state["users"].items()}
    assert received == {u: [T0 + n for n in lines]
                        for u, lines in expected_lines(records).items()}, "each once, in order"


async def test_refused_calls_do_not_use_up_the_records_attempts(
    serve: StartServer, tmp_path: Path
) -> None:
    def answer(body: dict[str, Any], _: int) -> tuple[int, list[Any]]:
        if len(body["data"]) > K:
            return 403, error(f"multi takes at most {K} actions")
        if not failed_once:
            failed_once.append(True)
            return 503, error("Service unavailable")
        return 200, successes(body)

    failed_once: list[bool] = []
    served = await serve(answer)
    data = tmp_path / "in.ndjson"
    records = write_input(data, [f"u{i}" for i in range(4 * K)])  # one take, split twice
    out = tmp_path / "out"

    report = await run_replay(batched(served.url, max_attempts=2), data, out)

    assert [len(c.body["data"]) for c in served.calls[:3]] == [4 * K, 2 * K, K]
    assert served.calls[2].status == 503
    assert read_rows(out / FAILURES) == [], "one 503 is within max_attempts=2"
    assert report.exit_code == ExitCode.OK
    assert sorted(rows_by_line(out / RESULTS)) == sorted(records)


async def test_403_on_a_one_action_call_stops_the_run(
    serve: StartServer, tmp_path: Path
) -> None:
    served = await serve(lambda body, _: (403, error("This key is not allowed to call start")))
    data = tmp_path / "in.ndjson"
    records = write_input(data, [f"u{i % 20}" for i in range(200)])
    out = tmp_path / "out"

    report = await run_replay(batched(served.url, concurrency=4), data, out)

    assert report.exit_code == ExitCode.INVALID_KEY
    assert report.summary.stopped_because.startswith("forbidden:")
    assert any(len(c.body["data"]) == 1 for c in served.calls), "split down to one action"
    assert read_rows(out / RESULTS) == []
    assert read_rows(out / FAILURES) == [], "the key is wrong, not the records"
    assert report.summary.unfinished == len(records)
    assert len(served.calls) < len(records), "stops at the first one-action refusal"


async def test_no_call_goes_out_after_the_one_action_refusal(
    serve: StartServer, tmp_path: Path
) -> None:
    served = await serve(lambda body, _: (403, error("This key is not allowed to call start")))
    data = tmp_path / "in.ndjson"
    write_input(data, ["u0"] * 16)
    out = tmp_path / "out"

    report = await run_replay(batched(served.url, concurrency=1), data, out)

    assert report.exit_code == ExitCode.INVALID_KEY
    assert [len(c.body["data"]) for c in served.calls] == [16, 8, 4, 2, 1]


# ---- 5. mismatched answers ---------------------------------------------------------------


def one_short(body: dict[str, Any]) -> list[Any]:
    return successes(body)[:-1]


def one_extra(body: dict[str, Any]) -> list[Any]:
    return [*successes(body), SUCCESS]


MISMATCHES = {"fewer": one_short, "more": one_extra}


@pytest.mark.parametrize("mismatch", MISMATCHES.values(), ids=MISMATCHES.keys())
async def test_mismatched_answer_fails_every_record_as_ambiguous_when_asked(
    serve: StartServer, tmp_path: Path, mismatch: Callable[[dict[str, Any]], list[Any]]
) -> None:
    served = await serve(lambda body, _: (200, mismatch(body)))
    data = tmp_path / "in.ndjson"
    records = write_input(data, [f"u{i % 7}" for i in range(50)])
    out = tmp_path / "out"

    report = await run_replay(batched(served.url, on_ambiguous="fail"), data, out)

    failures = rows_by_line(out / FAILURES)
    assert report.exit_code == ExitCode.FAILURES
    assert read_rows(out / RESULTS) == []
    assert sorted(failures) == sorted(records)
    for row in failures.values():
        assert (row["kind"], row["attempts"], row["ambiguous_attempts"]) == ("ambiguous", 1, 1)
        assert "response elements for" in row["message"]
    assert sum(len(b["data"]) for b in served.bodies()) == len(records), "none retried"


async def test_records_of_a_mismatched_answer_are_retried_not_delivered_on_it(
    serve: StartServer, tmp_path: Path
) -> None:
    def answer(body: dict[str, Any], index: int) -> tuple[int, list[Any]]:
        return 200, one_short(body) if index == 0 else successes(body)

    served = await serve(answer)
    data = tmp_path / "in.ndjson"
    records = write_input(data, [f"u{i % 7}" for i in range(50)], untimed_every=6)
    out = tmp_path / "out"

    report = await run_replay(batched(served.url), data, out)

    results = rows_by_line(out / RESULTS)
    first = {line_of(a) for a in served.calls[0].body["data"]}
    calls_of = served.calls_of()
    assert report.exit_code == ExitCode.OK
    assert sorted(results) == sorted(records)
    assert first
    for line, row in results.items():
        if line in first:
            assert (row["attempts"], row["ambiguous_attempts"]) == (2, 1)
            assert calls_of[line][0] == 0 and len(calls_of[line]) == 2
        else:
            assert row["attempts"] == 1 and "ambiguous_attempts" not in row
    assert report.summary.ambiguous_attempts == len(first)
    assert lines_per_user([c.body for c in served.calls[1:]]) == (
        expected_lines(records))


async def test_records_never_answered_in_full_end_as_failures(
    serve: StartServer, tmp_path: Path
) -> None:
    served = await serve(lambda body, _: (200, one_short(body)))
    data = tmp_path / "in.ndjson"
    records = write_input(data, [f"u{i % 7}" for i in range(40)])
    out = tmp_path / "out"

    report = await run_replay(batched(served.url, max_attempts=3), data, out)

    failures = rows_by_line(out / FAILURES)
    assert report.exit_code == ExitCode.FAILURES
    assert read_rows(out / RESULTS) == []
    assert sorted(failures) == sorted(records)
    for row in failures.values():
        assert (row["kind"], row["attempts"], row["ambiguous_attempts"]) == (
            "response_mismatch", 3, 3)
    assert {len(lines) for lines in served.calls_of().values()} == {3}


# ---- 6. linger -----------------------------------------------------------------------------


LINGERS = {
    # No linger: a partial batch goes out at once.
    "no_linger": (0.0, 50, ["u0"] * CHUNK_LINES),
    # A linger far longer than the test: a batch already full of users does not wait for it.
    "full_batch_skips_linger": (3_600_000.0, 3, [f"u{i % 3}" for i in range(CHUNK_LINES)]),
}


@pytest.mark.parametrize(("linger_ms", "batch_users", "first"), LINGERS.values(),
                         ids=LINGERS.keys())
async def test_a_batch_goes_out_while_the_input_is_still_trickling(
    serve: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    linger_ms: float, batch_users: int, first: list[str],
) -> None:
    """The reader hands over the first chunk, then holds the rest until a call has arrived."""
    first_call = threading.Event()
    waited: list[bool] = []

    def trickle(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for n, line in enumerate(iter_lines(*args, **kwargs), start=1):
            if n == len(first) + 1:  # runs in the reader thread
                waited.append(first_call.wait(timeout=RUN_TIMEOUT_S / 2))
            yield line

    def answer(body: dict[str, Any], _: int) -> tuple[int, list[Any]]:
        first_call.set()
        return 200, successes(body)

    monkeypatch.setattr(pipeline, "iter_lines", trickle)  # what intake.input_lines reads through
    served = await serve(answer)
    data = tmp_path / "in.ndjson"
    records = write_input(data, first + [f"v{i % 10}" for i in range(100)])
    out = tmp_path / "out"
    settings = batched(served.url, batch_linger_ms=linger_ms, batch_users=batch_users)

    report = await run_replay(settings, data, out)

    assert waited == [True], "a call reached the server before the rest of the input was read"
    assert report.exit_code == ExitCode.OK
    assert sorted(rows_by_line(out / RESULTS)) == sorted(records)
    assert lines_per_user(served.bodies()) == expected_lines(records)
