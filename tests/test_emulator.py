"""The Leanplum emulator: its pure store, the `/api` it serves, its state endpoint and command."""

from __future__ import annotations

import asyncio
import json
import socket
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from replayer.commands import emulate as command_module
from replayer.commands.emulate import emulate
from replayer.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_CLIENT_KEY,
    EmulatorConfig,
    LatencyModel,
    create_app,
    embedded,
)
from replayer.emulator.store import Invalid, StartAction, UserStore, Verdict, parse_start
from tests.conftest import DATA

T0 = 1_700_000_000
CONCURRENT = "Request failed due to concurrent requests to the same profile ID"

JSONObject = dict[str, Any]


# --- pure: parsing a start action --------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"userId": "u1"}, StartAction("u1", None, False, False, None)),
        (
            {"deviceId": "d1", "time": "1700000000.5"},
            StartAction("d1", T0 + 0.5, False, False, None),
        ),
        ({"userId": "u1", "deviceId": "d1"}, StartAction("u1", None, False, False, None)),
        ({"userId": 42}, StartAction("42", None, False, False, None)),
        ({"userId": "u", "devMode": "true"}, StartAction("u", None, True, False, None)),
        (
            {"userId": "u", "createDisposition": "CreateNever"},
            StartAction("u", None, False, True, None),
        ),
        (
            {"userId": "u", "userAttributes": '{"a": 1}'},
            StartAction("u", None, False, False, {"a": 1}),
        ),
        (
            {"userId": "u", "userAttributes": {"a": 1}},
            StartAction("u", None, False, False, {"a": 1}),
        ),
        ({}, Invalid("userId or deviceId is required")),
        ({"userId": ""}, Invalid("userId or deviceId is required")),
        ({"userId": "x" * 401}, Invalid("userId is longer than 400 characters")),
        ({"userId": "u", "userAttributes": "[1]"}, Invalid("userAttributes must be an object")),
        ({"userId": "u", "userAttributes": "{"}, Invalid("userAttributes is not valid JSON")),
        ({"userId": "u", "devMode": "maybe"}, Invalid("devMode must be true or false")),
        ({"userId": "u", "time": "noon"}, Invalid("time must be UNIX seconds: 'noon'")),
    ],
    ids=[
        "user",
        "device-and-text-time",
        "user-wins",
        "numeric-user",
        "devmode-text",
        "create-never",
        "attributes-text",
        "attributes-object",
        "no-ids",
        "empty-user",
        "long-user",
        "attributes-not-object",
        "attributes-bad-json",
        "bad-devmode",
        "bad-time",
    ],
)
def test_parse_start(params: JSONObject, expected: StartAction | Invalid) -> None:
    assert parse_start(params) == expected


# --- pure: the user store ---------------------------------------------------------------


def _start(user: str, **kw: Any) -> StartAction:
    return StartAction(
        user_key=user,
        time_s=kw.get("time_s"),
        dev_mode=kw.get("dev_mode", False),
        create_never=kw.get("create_never", False),
        attributes=kw.get("attributes"),
    )


def test_store_locks_are_all_or_nothing() -> None:
    store = UserStore()
    assert store.begin({"a", "b"}) is None
    assert store.begin({"c", "b"}) == "b"
    assert store.begin({"c"}) is None  # the failed begin took no lock on c... until now
    store.end({"a", "b", "c"})
    assert store.begin({"a", "b", "c"}) is None
    assert store.counters.lock_conflicts == 1


@pytest.mark.parametrize(
    ("action", "known", "blocked", "verdict"),
    [
        (_start("u"), (), (), Verdict.ACCEPTED),
        (_start("u", create_never=True), (), (), Verdict.NOT_CREATED),
        (_start("u", create_never=True), ("u",), (), Verdict.ACCEPTED),
        (_start("u"), (), ("u",), Verdict.BLOCKED),
    ],
    ids=["create-if-needed", "create-never-unknown", "create-never-known", "blocked"],
)
def test_store_verdicts(
    action: StartAction, known: tuple[str, ...], blocked: tuple[str, ...], verdict: Verdict
) -> None:
    store = UserStore(known_users=known, blocked_users=blocked)
    assert store.start(action, request_no=1, now_s=0.0) is verdict
    accepted = verdict is Verdict.ACCEPTED
    assert store.snapshot()["users"].get("u", []) == (
        [{"time": None, "seq": 1, "request": 1}] if accepted else []
    )


@pytest.mark.parametrize(
    ("gap_s", "verdict"),
    [(0.0, Verdict.DEVMODE_LIMITED), (0.99, Verdict.DEVMODE_LIMITED), (1.0, Verdict.ACCEPTED)],
    ids=["same-instant", "just-under", "one-second"],
)
def test_store_devmode_limit(gap_s: float, verdict: Verdict) -> None:
    store = UserStore(devmode_min_interval_s=1.0)
    assert store.start(_start("u", dev_mode=True), request_no=1, now_s=10.0) is Verdict.ACCEPTED
    assert store.start(_start("u", dev_mode=True), request_no=2, now_s=10.0 + gap_s) is verdict
    # Other users and non-devMode traffic are not limited.
    assert store.start(_start("v", dev_mode=True), request_no=3, now_s=10.0) is Verdict.ACCEPTED
    assert store.start(_start("u"), request_no=4, now_s=10.0) is Verdict.ACCEPTED


def test_store_records_arrival_order_and_merges_attributes() -> None:
    store = UserStore()
    store.start(_start("a", time_s=3.0, attributes={"x": 1, "y": 1}), request_no=1, now_s=0)
    store.start(_start("b", time_s=1.0), request_no=1, now_s=0)
    store.start(_start("a", time_s=2.0, attributes={"y": 2}), request_no=2, now_s=0)
    state = store.snapshot()
    assert state["users"] == {
        "a": [{"time": 3.0, "seq": 1, "request": 1}, {"time": 2.0, "seq": 3, "request": 2}],
        "b": [{"time": 1.0, "seq": 2, "request": 1}],
    }
    assert state["attributes"] == {"a": {"x": 1, "y": 2}}
    assert state["counters"]["actions_accepted"] == 3
    store.reset()
    assert store.snapshot()["users"] == {}


def test_store_keeps_200k_actions_compact() -> None:
    store = UserStore()
    actions = [_start(f"user-{i % 20_000}", time_s=float(T0 + i)) for i in range(200_000)]
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i, action in enumerate(actions):
            store.start(action, request_no=i // 500 + 1, now_s=0.0)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.counters.actions_accepted == 200_000
    # 20k users (key index) plus ~20 bytes per action; tuples or dicts would cost 100+.
    assert (after - before) / 200_000 < 40


@pytest.mark.parametrize(
    ("spec", "model"),
    [
        ("0", LatencyModel()),
        ("5", LatencyModel(5.0)),
        ("lognormal:5:50", LatencyModel(5.0, 50.0)),
    ],
    ids=["zero", "fixed", "lognormal"],
)
def test_latency_parse(spec: str, model: LatencyModel) -> None:
    assert LatencyModel.parse(spec) == model


@pytest.mark.parametrize(
    "spec", ["-1", "fast", "lognormal:5", "lognormal:50:5", "lognormal:0:5", "gauss:1:2"]
)
def test_latency_parse_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="latency"):
        LatencyModel.parse(spec)


def test_lognormal_latency_has_its_median_and_p99() -> None:
    import random

    rng = random.Random(1)
    draws = sorted(LatencyModel(5.0, 50.0).sample_ms(rng) for _ in range(20_000))
    assert 4.5 < draws[10_000] < 5.5
    assert 40 < draws[19_800] < 60


# --- over HTTP -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Api:
    """A running emulator and a client session pointed at it."""

    session: aiohttp.ClientSession
    server: TestServer

    async def call(
        self, action: str | None, body: JSONObject | None = None, **kw: Any
    ) -> tuple[int, JSONObject]:
        params = {"action": action} if action else {}
        async with self.session.post(
            self.server.make_url("/api"), params=params, json=body, **kw
        ) as resp:
            return resp.status, await resp.json()

    async def state(self) -> JSONObject:
        async with self.session.get(self.server.make_url("/_emulator/state")) as resp:
            assert resp.status == 200
            result: JSONObject = await resp.json()
            return result


@asynccontextmanager
async def serving(config: EmulatorConfig | None = None) -> AsyncIterator[Api]:
    server = TestServer(create_app(config or EmulatorConfig()))
    async with server, aiohttp.ClientSession() as session:
        yield Api(session, server)


def keys(**params: Any) -> JSONObject:
    return {
        "appId": DEFAULT_APP_ID,
        "clientKey": DEFAULT_CLIENT_KEY,
        "apiVersion": "1.0.6",
        **params,
    }


def start(user: str, **params: Any) -> JSONObject:
    return keys(userId=user, time=T0, **params)


def element(action: str, user: str, **params: Any) -> JSONObject:
    return {"action": action, "userId": user, "time": T0, **params}


INVALID_KEY = {"response": [{"success": False, "error": {"message": "Invalid access key"}}]}


@pytest.mark.parametrize(
    "body",
    [
        {**start("u"), "clientKey": "dev-key"},
        {**start("u"), "appId": "other-app"},
        {k: v for k, v in start("u").items() if k != "clientKey"},
        {k: v for k, v in start("u").items() if k != "appId"},
    ],
    ids=["wrong-key", "wrong-app", "no-key", "no-app"],
)
async def test_access_key_is_checked(body: JSONObject) -> None:
    async with serving() as api:
        assert await api.call("start", body) == (401, INVALID_KEY)
        assert (await api.state())["users"] == {}


async def test_api_version_is_required() -> None:
    async with serving() as api:
        body = {k: v for k, v in start("u").items() if k != "apiVersion"}
        status, answer = await api.call("start", body)
    assert status == 400
    assert answer["response"][0]["error"]["message"] == "apiVersion is required"


async def test_start_success_has_leanplums_shape() -> None:
    example = json.loads((DATA / "start-response.json").read_text())
    async with serving() as api:
        status, answer = await api.call("start", start("alice"))
        _, again = await api.call("start", start("alice"))
    assert status == 200
    assert answer.keys() == example.keys()
    got, expected = answer["response"][0], example["response"][0]
    assert list(got) == list(expected)
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}
    assert got["success"] is True and "warning" not in got and "error" not in got
    assert got["variants"] == again["response"][0]["variants"]  # fixed per user
    assert all(isinstance(v["id"], int) for v in got["variants"])


async def test_start_by_get_and_by_form() -> None:
    async with serving() as api:
        url = api.server.make_url("/api")
        query = {"action": "start", **{k: str(v) for k, v in start("g").items()}}
        async with api.session.get(url, params=query) as resp:
            assert resp.status == 200
        form = {k: str(v) for k, v in start("f", userAttributes='{"tier": "gold"}').items()}
        async with api.session.post(url, params={"action": "start"}, data=form) as resp:
            assert resp.status == 200
        state = await api.state()
    assert set(state["users"]) == {"g", "f"}
    assert state["attributes"] == {"f": {"tier": "gold"}}


@pytest.mark.parametrize(
    ("action", "body", "message"),
    [
        ("start", keys(time=T0), "userId or deviceId is required"),
        ("track", start("u"), "Unknown action: track"),
        (None, start("u"), "action is required"),
    ],
    ids=["no-ids", "unknown-action", "no-action"],
)
async def test_bad_requests_get_400(action: str | None, body: JSONObject, message: str) -> None:
    async with serving() as api:
        status, answer = await api.call(action, body)
    assert (status, answer["response"][0]["error"]["message"]) == (400, message)


async def test_action_may_come_in_the_body() -> None:
    async with serving() as api:
        status, _ = await api.call(None, {**start("u"), "action": "start"})
    assert status == 200


async def test_create_never_on_unknown_user_is_a_warning() -> None:
    config = EmulatorConfig(known_users=frozenset({"old"}))
    async with serving(config) as api:
        status, answer = await api.call("start", start("new", createDisposition="CreateNever"))
        known_status, known = await api.call("start", start("old", createDisposition="CreateNever"))
        state = await api.state()
    assert status == 200
    assert answer["response"][0]["success"] is True
    assert answer["response"][0]["warning"]["message"]
    assert known_status == 200 and "warning" not in known["response"][0]
    assert "new" not in state["users"]
    assert len(state["users"]["old"]) == 1
    assert state["counters"]["warnings"] == 1


async def test_blocked_user_gets_451() -> None:
    async with serving(EmulatorConfig(blocked_users=frozenset({"bad"}))) as api:
        status, answer = await api.call("start", start("bad"))
        state = await api.state()
    assert status == 451
    assert answer["response"][0]["success"] is False
    assert state["users"] == {} and state["counters"]["blocked"] == 1


async def test_devmode_allows_one_request_per_second() -> None:
    async with serving() as api:
        first, _ = await api.call("start", start("dev", devMode=True))
        second, answer = await api.call("start", start("dev", devMode=True))
        state = await api.state()
    assert (first, second) == (200, 429)
    assert answer["response"][0]["success"] is False
    assert len(state["users"]["dev"]) == 1
    assert state["counters"]["devmode_limited"] == 1


async def test_concurrent_requests_for_one_user_collide() -> None:
    async with serving(EmulatorConfig(latency_ms=LatencyModel(40.0))) as api:
        results = await asyncio.gather(api.call("start", start("u")), api.call("start", start("u")))
        state = await api.state()
    assert sorted(status for status, _ in results) == [200, 429]
    loser = next(answer for status, answer in results if status == 429)
    assert loser["response"][0]["error"]["message"] == CONCURRENT
    assert len(state["users"]["u"]) == 1
    assert state["counters"]["lock_conflicts"] == 1


async def test_multi_answers_each_action_in_order() -> None:
    data = [
        element("start", "a", time=T0 + 1),
        element("start", "b", time=T0 + 2, userAttributes={"plan": "pro"}),
        element("track", "a", event="purchase"),
        element("start", "c", createDisposition="CreateNever"),
        {"action": "start", "time": T0 + 3},
        element("start", "a", time=T0 + 4),
    ]
    async with serving() as api:
        status, answer = await api.call("multi", keys(time=T0 + 10, data=data))
        state = await api.state()
    assert status == 200
    elements = answer["response"]
    assert len(elements) == len(data)
    assert [e["success"] for e in elements] == [True, True, False, True, False, True]
    assert "token" in elements[0] and "token" in elements[5]
    assert elements[2]["error"]["message"] == "Unknown action: track"
    assert "warning" in elements[3]
    assert elements[4]["error"]["message"] == "userId or deviceId is required"
    assert state["users"] == {
        "a": [{"time": T0 + 1, "seq": 1, "request": 1}, {"time": T0 + 4, "seq": 3, "request": 1}],
        "b": [{"time": T0 + 2, "seq": 2, "request": 1}],
    }
    assert state["attributes"] == {"b": {"plan": "pro"}}


@pytest.mark.parametrize(
    ("users", "actions", "status"),
    [(50, 500, 200), (51, 51, 403), (1, 501, 403)],
    ids=["at-limits", "51-users", "501-actions"],
)
async def test_multi_limits(users: int, actions: int, status: int) -> None:
    data = [element("start", f"u{i % users}", time=T0 + i) for i in range(actions)]
    async with serving() as api:
        got, answer = await api.call("multi", keys(time=T0, data=data))
        state = await api.state()
    assert got == status
    if status == 403:
        assert len(answer["response"]) == 1 and answer["response"][0]["success"] is False
        assert state["users"] == {} and state["counters"]["actions_accepted"] == 0
    else:
        assert len(answer["response"]) == actions
        assert state["counters"]["actions_accepted"] == actions


async def test_multi_collides_with_a_request_in_flight() -> None:
    data = [element("start", "free"), element("start", "busy")]
    async with serving(EmulatorConfig(latency_ms=LatencyModel(100.0))) as api:
        single = asyncio.create_task(api.call("start", start("busy")))
        # The emulator records first and then holds the lock for the latency, so once
        # "busy" shows up in the state its lock is taken.
        while "busy" not in (await api.state())["users"]:
            await asyncio.sleep(0.001)
        status, answer = await api.call("multi", keys(time=T0, data=data))
        assert (await single)[0] == 200
        state = await api.state()
    assert status == 429
    assert answer["response"][0]["error"]["message"] == CONCURRENT
    assert "free" not in state["users"]


async def test_multi_needs_time_and_data() -> None:
    async with serving() as api:
        no_time, _ = await api.call("multi", keys(data=[]))
        no_data, _ = await api.call("multi", keys(time=T0))
    assert (no_time, no_data) == (400, 400)


async def test_state_counts_and_records_without_the_key() -> None:
    async with serving(EmulatorConfig(record_requests=True)) as api:
        await api.call("start", start("u"))
        await api.call(
            "multi", keys(time=T0, data=[{**element("start", "v"), "clientKey": "leak"}])
        )
        await api.call("start", {**start("u"), "clientKey": "wrong-key"})
        url = api.server.make_url("/_emulator/state")
        async with api.session.get(url) as resp:
            text = await resp.text()
        state = json.loads(text)
        async with api.session.post(api.server.make_url("/_emulator/reset")) as resp:
            assert resp.status == 200
        after = await api.state()
    for secret in (DEFAULT_CLIENT_KEY, "leak", "wrong-key"):
        assert secret not in text
    assert set(state) == {"users", "attributes", "counters", "requests"}
    counters = state["counters"]
    assert counters["requests"] == 3
    assert counters["requests_by_action"] == {"start": 2, "multi": 1}
    assert counters["requests_by_status"] == {"200": 2, "401": 1}
    assert counters["actions_accepted"] == 2
    requests = state["requests"]
    assert [r["request"] for r in requests] == [1, 2, 3]
    assert requests[0]["body"]["clientKey"] == "[redacted]"
    assert requests[1]["body"]["data"][0]["clientKey"] == "[redacted]"
    assert requests[1]["query"] == {"action": "multi"}
    assert after["users"] == {} and after["requests"] == [] and after["counters"]["requests"] == 0


async def test_recorded_query_strings_hide_the_key() -> None:
    async with serving(EmulatorConfig(record_requests=True)) as api:
        query = {"action": "start", **{k: str(v) for k, v in start("g").items()}}
        async with api.session.get(api.server.make_url("/api"), params=query) as resp:
            assert resp.status == 200
        async with api.session.get(api.server.make_url("/_emulator/state")) as resp:
            text = await resp.text()
    assert DEFAULT_CLIENT_KEY not in text
    assert json.loads(text)["requests"][0]["query"]["clientKey"] == "[redacted]"


async def test_state_leaves_out_requests_unless_recording() -> None:
    async with serving() as api:
        await api.call("start", start("u"))
        assert "requests" not in await api.state()


async def test_embedded_serves_on_loopback() -> None:
    async with embedded(EmulatorConfig()) as url, aiohttp.ClientSession() as session:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
        async with session.post(url, params={"action": "start"}, json=start("u")) as resp:
            assert resp.status == 200


# --- the command -----------------------------------------------------------------------


def test_emulate_help_shows_an_example() -> None:
    result = CliRunner().invoke(emulate, ["--help"])
    assert result.exit_code == 0
    assert "replayer emulate --port 8787" in result.output
    assert "REPLAYER_EMULATOR_CLIENT_KEY" in result.output
    assert "--client-key " not in result.output


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[EmulatorConfig, str, int]]:
    calls: list[tuple[EmulatorConfig, str, int]] = []
    monkeypatch.setattr(command_module, "run", lambda *args: calls.append(args))
    monkeypatch.delenv("REPLAYER_EMULATOR_CLIENT_KEY", raising=False)
    return calls


def test_emulate_builds_its_config(served: list[tuple[EmulatorConfig, str, int]]) -> None:
    args = [
        "--port", "9000", "--app-id", "app", "--latency-ms", "lognormal:5:50",
        "--faults", "500=0.1,429=0.2", "--seed", "7", "--blocked-user", "b",
        "--known-user", "k1", "--known-user", "k2", "--record-requests",
    ]  # fmt: skip
    result = CliRunner().invoke(emulate, args, env={"REPLAYER_EMULATOR_CLIENT_KEY": "env-key"})
    assert result.exit_code == 0, result.output
    [(config, host, port)] = served
    assert (host, port) == ("127.0.0.1", 9000)
    assert config.app_id == "app" and config.client_key == "env-key"
    assert config.latency_ms == LatencyModel(5.0, 50.0)
    assert (config.faults.status_500, config.faults.status_429) == (0.1, 0.2)
    assert config.seed == 7 and config.record_requests
    assert config.blocked_users == {"b"} and config.known_users == {"k1", "k2"}
    assert "env-key" not in repr(config)


def test_emulate_reads_the_key_file(
    served: list[tuple[EmulatorConfig, str, int]], tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("file-key\n")
    result = CliRunner().invoke(emulate, ["--client-key-file", str(key_file)])
    assert result.exit_code == 0, result.output
    assert served[0][0].client_key == "file-key"
    assert CliRunner().invoke(emulate, []).exit_code == 0
    assert served[1][0].client_key == DEFAULT_CLIENT_KEY


def test_emulate_reports_a_busy_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(emulate, ["--port", str(port)])
    assert result.exit_code == 7  # an address that cannot be listened on is an output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "500=2"], "between 0 and 1"),
        (["--faults", "boom=0.1"], "unknown fault 'boom'"),
        (["--latency-ms", "lognormal:5"], "bad latency"),
        (["--client-key", "k"], "No such option"),
    ],
    ids=["share-over-1", "unknown-fault", "bad-latency", "no-key-flag"],
)
def test_emulate_rejects_bad_flags(
    served: list[tuple[EmulatorConfig, str, int]], args: list[str], message: str
) -> None:
    result = CliRunner().invoke(emulate, args)
    assert result.exit_code == 2
    assert message in result.output
    assert served == []
