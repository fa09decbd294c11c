"""Emulator faults: the spec parser, seeded decisions, and each fault as a real client meets it."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from replayer.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_CLIENT_KEY,
    EmulatorConfig,
    Fault,
    FaultConfig,
    FaultKind,
    embedded,
)

JSONObject = dict[str, Any]
T0 = 1_700_000_000


# --- pure: the spec and the decision -----------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", FaultConfig()),
        (
            "500=0.02,503=0.02,429=0.03,drop_after=0.01",
            FaultConfig(status_500=0.02, status_503=0.02, status_429=0.03, drop_after=0.01),
        ),
        (
            " 502 = 0.1 , html_share=0.5, 429_retry_after=0.2,retry_after_s=3 ,",
            FaultConfig(
                status_502=0.1, html_share=0.5, status_429_retry_after=0.2, retry_after_s=3
            ),
        ),
        (
            "drop_before=0.1,slow_after=0.1,slow_delay_s=2.5,truncated_body=0.1",
            FaultConfig(drop_before=0.1, slow_after=0.1, slow_delay_s=2.5, truncated_body=0.1),
        ),
        ("stall_after_s=10,stall_for_s=5", FaultConfig(stall_after_s=10, stall_for_s=5)),
        ("status_500=1", FaultConfig(status_500=1.0)),
    ],
    ids=["empty", "brief-example", "spaces-and-knobs", "connection-faults", "stall", "field-name"],
)
def test_parse(spec: str, expected: FaultConfig) -> None:
    assert FaultConfig.parse(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("500", "'500' is not NAME=VALUE"),
        ("404=0.1", "unknown fault '404'; known: 500, 502, 503, 429, 429_retry_after"),
        ("500=lots", "fault '500' needs a number, got 'lots'"),
        ("500=1.5", "status_500 is a share between 0 and 1, got 1.5"),
        ("500=-0.1", "status_500 is a share between 0 and 1"),
        ("500=0.6,503=0.6", "fault shares add up to 1.2"),
        ("500=0.1,status_500=0.2", "fault 'status_500' is given twice"),
        ("retry_after_s=1.5", "retry_after_s is whole seconds"),
        ("slow_delay_s=-1", "slow_delay_s must not be negative"),
        ("500=nan", "status_500 is a share between 0 and 1"),
    ],
    ids=[
        "no-value",
        "unknown",
        "not-a-number",
        "share-over-1",
        "negative",
        "sum-over-1",
        "twice",
        "fractional-retry-after",
        "negative-delay",
        "nan",
    ],
)
def test_parse_rejects(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        FaultConfig.parse(spec)
    assert message in str(error.value)


def test_no_shares_means_no_faults() -> None:
    config = FaultConfig(slow_delay_s=5)
    rng = random.Random(0)
    assert not config.injects
    assert {config.decide(rng) for _ in range(1000)} == {None}


def test_decisions_follow_the_shares() -> None:
    config = FaultConfig(status_500=0.1, status_429=0.2, drop_after=0.05, html_share=0.5)
    rng = random.Random(3)
    draws = 20_000
    seen = Counter(
        fault.kind if fault else None for fault in (config.decide(rng) for _ in range(draws))
    )
    for kind, share in [(FaultKind.STATUS_500, 0.1), (FaultKind.STATUS_429, 0.2), (None, 0.65)]:
        assert abs(seen[kind] / draws - share) < 0.015
    assert abs(seen[FaultKind.DROP_AFTER] / draws - 0.05) < 0.01
    assert set(seen) == {FaultKind.STATUS_500, FaultKind.STATUS_429, FaultKind.DROP_AFTER, None}


def test_decisions_are_seeded() -> None:
    config = FaultConfig(status_503=0.2, html_share=0.5, slow_after=0.1, truncated_body=0.1)
    runs = [
        [config.decide(rng) for _ in range(500)] for rng in (random.Random(11), random.Random(11))
    ]
    assert runs[0] == runs[1]
    assert runs[0] != [config.decide(random.Random(12)) for _ in range(500)]


@pytest.mark.parametrize(
    ("config", "fault"),
    [
        (FaultConfig(status_502=1.0), Fault(FaultKind.STATUS_502)),
        (FaultConfig(status_502=1.0, html_share=1.0), Fault(FaultKind.STATUS_502, html=True)),
        (
            FaultConfig(status_429_retry_after=1.0, retry_after_s=4),
            Fault(FaultKind.STATUS_429_RETRY_AFTER, retry_after_s=4),
        ),
        (FaultConfig(slow_after=1.0, slow_delay_s=9), Fault(FaultKind.SLOW_AFTER, delay_s=9)),
        (FaultConfig(drop_before=1.0), Fault(FaultKind.DROP_BEFORE)),
    ],
    ids=["502", "502-html", "retry-after", "slow", "drop-before"],
)
def test_a_fault_carries_its_knobs(config: FaultConfig, fault: Fault) -> None:
    assert config.decide(random.Random(0)) == fault


@pytest.mark.parametrize(
    ("elapsed_s", "wait_s"),
    [(0.0, 0.0), (9.99, 0.0), (10.0, 5.0), (12.5, 2.5), (15.0, 0.0), (100.0, 0.0)],
    ids=["start", "just-before", "window-opens", "inside", "window-closed", "long-after"],
)
def test_stall_window(elapsed_s: float, wait_s: float) -> None:
    config = FaultConfig(stall_after_s=10, stall_for_s=5)
    assert config.stall_wait_s(elapsed_s) == pytest.approx(wait_s)
    assert FaultConfig(stall_after_s=10).stall_wait_s(elapsed_s) == 0.0


# --- as a real aiohttp client meets them -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Api:
    """An embedded emulator and a client session pointed at it."""

    session: aiohttp.ClientSession
    url: str

    def start(self, user: str, **kw: Any) -> Any:
        body = {
            "appId": DEFAULT_APP_ID,
            "clientKey": DEFAULT_CLIENT_KEY,
            "apiVersion": "1.0.6",
            "userId": user,
            "time": T0,
        }
        return self.session.post(self.url, params={"action": "start"}, json=body, **kw)

    async def state(self) -> JSONObject:
        async with self.session.get(self.url.removesuffix("/api") + "/_emulator/state") as resp:
            return orjson.loads(await resp.read())  # type: ignore[no-any-return]


@asynccontextmanager
async def serving(faults: FaultConfig, *, seed: int = 0) -> AsyncIterator[Api]:
    config = EmulatorConfig(faults=faults, seed=seed)
    async with embedded(config) as url, aiohttp.ClientSession() as session:
        yield Api(session, url)


@pytest.mark.parametrize(
    ("faults", "status", "message"),
    [
        (FaultConfig(status_500=1.0), 500, "Internal server error"),
        (FaultConfig(status_502=1.0), 502, "Bad gateway"),
        (FaultConfig(status_503=1.0), 503, "Service unavailable"),
        (
            FaultConfig(status_429=1.0),
            429,
            "Request failed due to concurrent requests to the same profile ID",
        ),
        (FaultConfig(status_429_retry_after=1.0), 429, "Too many requests"),
    ],
    ids=["500", "502", "503", "429", "429-retry-after"],
)
async def test_status_faults_answer_json_and_record_nothing(
    faults: FaultConfig, status: int, message: str
) -> None:
    async with serving(faults) as api:
        async with api.start("u") as resp:
            assert resp.status == status
            assert resp.content_type == "application/json"
            body = await resp.json()
            retry_after = resp.headers.get("Retry-After")
        state = await api.state()
    assert body == {"response": [{"success": False, "error": {"message": message}}]}
    assert retry_after == ("1" if faults.status_429_retry_after else None)
    assert state["users"] == {}
    assert state["counters"]["requests_by_status"] == {str(status): 1}
    assert sum(state["counters"]["faults"].values()) == 1


async def test_retry_after_seconds_are_configurable() -> None:
    faults = FaultConfig(status_429_retry_after=1.0, retry_after_s=7)
    async with serving(faults) as api, api.start("u") as resp:
        assert (resp.status, resp.headers["Retry-After"]) == (429, "7")


async def test_a_share_of_5xx_comes_as_html() -> None:
    async with serving(FaultConfig(status_503=1.0, html_share=1.0)) as api, api.start("u") as resp:
        assert resp.status == 503
        assert resp.content_type == "text/html"
        with pytest.raises(aiohttp.ContentTypeError):
            await resp.json()


async def test_drop_before_closes_the_connection_and_records_nothing() -> None:
    async with serving(FaultConfig(drop_before=1.0)) as api:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with api.start("u"):
                pass
        state = await api.state()
    assert state["users"] == {}
    counters = state["counters"]
    assert counters["faults"] == {"drop_before": 1}
    assert counters["requests"] == 1 and counters["requests_by_action"] == {}
    assert counters["requests_by_status"] == {}


async def test_drop_after_records_then_closes_the_connection() -> None:
    async with serving(FaultConfig(drop_after=1.0)) as api:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with api.start("u"):
                pass
        state = await api.state()
    assert state["users"] == {"u": [{"time": T0, "seq": 1, "request": 1}]}
    assert state["counters"]["faults"] == {"drop_after": 1}
    assert state["counters"]["requests_by_status"] == {}


async def test_slow_after_records_then_outlasts_the_client_timeout() -> None:
    async with serving(FaultConfig(slow_after=1.0, slow_delay_s=0.2)) as api:
        with pytest.raises(asyncio.TimeoutError):
            async with api.start("u", timeout=aiohttp.ClientTimeout(total=0.03)):
                pass
        state = await api.state()
    assert list(state["users"]) == ["u"]
    assert state["counters"]["faults"] == {"slow_after": 1}


async def test_truncated_body_is_half_a_json_answer() -> None:
    async with serving(FaultConfig(truncated_body=1.0)) as api:
        async with api.start("u") as resp:
            assert resp.status == 200
            raw = await resp.read()
            with pytest.raises(ValueError):
                await resp.json()
        state = await api.state()
    assert raw.startswith(b'{"response":[{')
    assert list(state["users"]) == ["u"]


async def test_stall_window_holds_requests_until_it_ends() -> None:
    async with serving(FaultConfig(stall_after_s=0.0, stall_for_s=0.15)) as api:
        with pytest.raises(asyncio.TimeoutError):
            async with api.start("early", timeout=aiohttp.ClientTimeout(total=0.02)):
                pass
        async with api.start("waits") as resp:
            assert resp.status == 200  # answered once the window closed
        state = await api.state()
    assert set(state["users"]) == {"early", "waits"}


async def test_fault_sequence_repeats_with_the_seed() -> None:
    faults = FaultConfig(
        status_500=0.15, status_429=0.15, drop_before=0.1, drop_after=0.1, truncated_body=0.1
    )

    async def outcomes(seed: int) -> list[str]:
        seen: list[str] = []
        async with serving(faults, seed=seed) as api:
            for i in range(40):
                try:
                    async with api.start(f"u{i}") as resp:
                        await resp.read()
                        seen.append(str(resp.status))
                except aiohttp.ServerDisconnectedError:
                    seen.append("drop")
        return seen

    first, second, other = await outcomes(5), await outcomes(5), await outcomes(6)
    assert first == second
    assert first != other
    assert {"200", "500", "429", "drop"} <= set(first)
