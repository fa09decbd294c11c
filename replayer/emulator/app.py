"""The Leanplum API emulator as an aiohttp application: `/api`, plus state and reset endpoints.

`create_app` is the one factory behind `replayer emulate`, the client's embedded mode and tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, assert_never

import orjson
from aiohttp import web

from replayer.emulator.config import EmulatorConfig
from replayer.emulator.faults import BEFORE_PROCESSING, Fault, FaultKind
from replayer.emulator.limit import THROTTLED, TokenBucket
from replayer.emulator.store import (
    Invalid,
    JSONObject,
    StartAction,
    UserStore,
    Verdict,
    parse_start,
    user_key_of,
)

# Exact texts that clients match on (docs/leanplum-api.md): the first one ends a replay run.
INVALID_ACCESS_KEY = "Invalid access key"
CONCURRENT_PROFILE = "Request failed due to concurrent requests to the same profile ID"
NOT_CREATED = "User does not exist and createDisposition is CreateNever; nothing was recorded"
BLOCKED = "User is blocked"
DEVMODE_LIMITED = "Too many requests in development mode: at most one per second per user"
REDACTED = "[redacted]"

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_VERDICT_STATUS = {
    Verdict.ACCEPTED: 200,
    Verdict.NOT_CREATED: 200,
    Verdict.BLOCKED: 451,
    Verdict.DEVMODE_LIMITED: 429,
}
_FAULT_STATUS = {
    FaultKind.STATUS_500: (500, "Internal server error"),
    FaultKind.STATUS_502: (502, "Bad gateway"),
    FaultKind.STATUS_503: (503, "Service unavailable"),
    FaultKind.STATUS_429_RETRY_AFTER: (429, "Too many requests"),
    FaultKind.STATUS_429: (429, CONCURRENT_PROFILE),
}


@dataclass(slots=True)
class Emulator:
    """One emulator's mutable state: config, user store, seeded generators, recorded bodies."""

    config: EmulatorConfig
    store: UserStore
    fault_rng: random.Random = field(default_factory=random.Random)
    latency_rng: random.Random = field(default_factory=random.Random)
    started_s: float = 0.0  # loop time at startup or last reset; the stall window counts from it
    recorded: list[JSONObject] = field(default_factory=list)
    bucket: TokenBucket | None = None  # the app-wide limit, refilled from `started_s`

    def reset(self, now_s: float) -> None:
        """Return to the state right after startup, generators reseeded."""
        self.store.reset()
        # String seeds hash the same in every process, unlike str.__hash__.
        self.fault_rng.seed(f"faults:{self.config.seed}")
        self.latency_rng.seed(f"latency:{self.config.seed}")
        self.started_s = now_s
        self.recorded.clear()
        self.bucket = TokenBucket(self.config.limit) if self.config.limit is not None else None


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer before post-processing faults apply."""

    status: int
    body: JSONObject


EMULATOR = web.AppKey("emulator", Emulator)


def create_app(config: EmulatorConfig) -> web.Application:
    """The emulator for `config`: `/api` (GET, POST), `GET /_emulator/state`, `POST .../reset`."""
    store = UserStore(
        known_users=config.known_users,
        blocked_users=config.blocked_users,
        devmode_min_interval_s=config.devmode_min_interval_s,
    )
    app = web.Application()
    app[EMULATOR] = Emulator(config, store)
    app.router.add_route("GET", "/api", _api)
    app.router.add_route("POST", "/api", _api)
    app.router.add_get("/_emulator/state", _state)
    app.router.add_post("/_emulator/reset", _reset)
    app.on_startup.append(_on_startup)
    return app


async def _on_startup(app: web.Application) -> None:
    app[EMULATOR].reset(_now_s())


async def _state(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    state = emulator.store.snapshot()
    if emulator.config.record_requests:
        state["requests"] = emulator.recorded
    return web.Response(body=orjson.dumps(state), content_type="application/json")


async def _reset(request: web.Request) -> web.Response:
    request.app[EMULATOR].reset(_now_s())
    return web.json_response({"reset": True})


async def _api(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR]
    emulator.store.counters.requests += 1
    # Read first: a client that gives up during a stall must not take its bytes with it,
    # and a drop with unread bytes would reach the client as a reset, not a close.
    try:
        body = await _read_body(request)
    except ConnectionResetError:
        return _drop(request)  # the client left mid-upload; nobody is waiting for an answer
    if emulator.bucket is not None and not emulator.bucket.take(_now_s() - emulator.started_s):
        emulator.store.counters.throttled += 1
        return _throttled(emulator)
    stall_s = emulator.config.faults.stall_wait_s(_now_s() - emulator.started_s)
    if stall_s > 0:
        await asyncio.sleep(stall_s)
    fault = _decide(emulator)
    if fault is not None and fault.kind in BEFORE_PROCESSING:
        return _fail_early(request, emulator, fault)
    answer = await _process(request, emulator, body)
    return await _deliver(request, emulator, answer, fault)


def _throttled(emulator: Emulator) -> web.Response:
    """Over the app-wide limit: Leanplum's error shape, and no Retry-After (none is sent)."""
    response = web.Response(status=429, body=orjson.dumps(_errors(THROTTLED)))
    response.content_type = "application/json"
    return _sent(emulator, response)


def _decide(emulator: Emulator) -> Fault | None:
    faults = emulator.config.faults
    fault = faults.decide(emulator.fault_rng) if faults.injects else None
    if fault is not None:
        emulator.store.counters.faults[fault.kind.value] += 1
    return fault


def _fail_early(request: web.Request, emulator: Emulator, fault: Fault) -> web.StreamResponse:
    if fault.kind is FaultKind.DROP_BEFORE:
        return _drop(request)
    status, message = _FAULT_STATUS[fault.kind]
    if fault.html:
        page = f"<html><body><h1>{status} {message}</h1></body></html>"
        return _sent(emulator, web.Response(status=status, text=page, content_type="text/html"))
    headers = {"Retry-After": str(fault.retry_after_s)} if fault.retry_after_s else {}
    body = orjson.dumps(_errors(message))
    response = web.Response(status=status, body=body, headers=headers)
    response.content_type = "application/json"
    return _sent(emulator, response)


async def _deliver(
    request: web.Request, emulator: Emulator, answer: Answer, fault: Fault | None
) -> web.StreamResponse:
    kind = fault.kind if fault is not None else None
    if kind is FaultKind.DROP_AFTER:
        return _drop(request)
    if kind is FaultKind.SLOW_AFTER and fault is not None:
        await asyncio.sleep(fault.delay_s)
    body = orjson.dumps(answer.body)
    if kind is FaultKind.TRUNCATED_BODY:
        body = body[: len(body) // 2]
    response = web.Response(status=answer.status, body=body)
    response.content_type = "application/json"
    return _sent(emulator, response)


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer; the client sees a server disconnect."""
    if request.transport is not None:
        request.transport.close()
    # aiohttp cannot write this to the closed transport and drops it as a client disconnect.
    return web.Response(status=204)


def _sent(emulator: Emulator, response: web.Response) -> web.Response:
    emulator.store.counters.requests_by_status[response.status] += 1
    return response


async def _process(request: web.Request, emulator: Emulator, body: JSONObject | Invalid) -> Answer:
    query = dict(request.query)
    params = {**body, **query} if isinstance(body, dict) else query
    action = str(params.get("action") or "")
    request_no = emulator.store.open_request(action or "(none)")
    if emulator.config.record_requests:
        kept = body if isinstance(body, dict) else None
        record = {"request": request_no, "method": request.method, "query": query, "body": kept}
        emulator.recorded.append(_redacted(record))
    if isinstance(body, Invalid):
        return _error(400, body.message)
    if not _authorized(emulator.config, params):
        return _error(401, INVALID_ACCESS_KEY)
    if not params.get("apiVersion"):
        return _error(400, "apiVersion is required")
    if action == "start":
        return await _start(emulator, params, request_no)
    if action == "multi":
        return await _multi(emulator, params, request_no)
    return _error(400, f"Unknown action: {action}" if action else "action is required")


async def _read_body(request: web.Request) -> JSONObject | Invalid:
    if not request.body_exists:
        return {}
    if request.content_type in _FORM_TYPES:
        form = await request.post()
        return {key: value for key, value in form.items() if isinstance(value, str)}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Invalid("request body is not valid JSON")
    return body if isinstance(body, dict) else Invalid("request body must be a JSON object")


def _authorized(config: EmulatorConfig, params: Mapping[str, Any]) -> bool:
    app_id, key = params.get("appId"), params.get("clientKey")
    if not isinstance(app_id, str) or not isinstance(key, str):
        return False
    # Compare both in constant time, so that neither leaks through timing.
    same_app = hmac.compare_digest(app_id.encode(), config.app_id.encode())
    return hmac.compare_digest(key.encode(), config.client_key.encode()) and same_app


async def _start(emulator: Emulator, params: Mapping[str, Any], request_no: int) -> Answer:
    action = parse_start(params)
    if isinstance(action, Invalid):
        return _error(400, action.message)
    results = await _apply(emulator, [action], {action.user_key}, request_no)
    if results is None:
        return _error(429, CONCURRENT_PROFILE)
    verdict = results[0]
    assert isinstance(verdict, Verdict)  # a parsed action always gets a verdict
    return Answer(_VERDICT_STATUS[verdict], {"response": [_element(verdict, action, request_no)]})


async def _multi(emulator: Emulator, params: Mapping[str, Any], request_no: int) -> Answer:
    data = _multi_data(params)
    if isinstance(data, Invalid):
        return _error(400, data.message)
    user_keys = {key for item in data if isinstance(item, dict) and (key := user_key_of(item))}
    config = emulator.config
    if len(user_keys) > config.multi_max_users or len(data) > config.multi_max_actions:
        return _error(
            403,
            f"multi takes at most {config.multi_max_users} users and {config.multi_max_actions}"
            f" actions; got {len(user_keys)} users and {len(data)} actions",
        )
    actions = [_multi_action(item) for item in data]
    results = await _apply(emulator, actions, user_keys, request_no)
    if results is None:
        return _error(429, CONCURRENT_PROFILE)
    elements = [_element(r, a, request_no) for r, a in zip(results, actions, strict=True)]
    return Answer(200, {"response": elements})


def _multi_data(params: Mapping[str, Any]) -> list[Any] | Invalid:
    if params.get("time") is None:
        return Invalid("time is required for multi")
    data = params.get("data")
    if isinstance(data, str):  # form-encoded bodies carry data as JSON text
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            return Invalid("data is not valid JSON")
    return data if isinstance(data, list) else Invalid("data must be a list of actions")


def _multi_action(item: Any) -> StartAction | Invalid:
    if not isinstance(item, dict):
        return Invalid("each action in data must be an object")
    name = item.get("action")
    if name != "start":
        return Invalid(f"Unknown action: {name}" if name else "action is required")
    return parse_start(item)


async def _apply(
    emulator: Emulator,
    actions: Sequence[StartAction | Invalid],
    user_keys: Collection[str],
    request_no: int,
) -> list[Verdict | Invalid] | None:
    """Lock the users, apply the actions in order, hold the locks for the latency.

    None when another request in flight holds one of the users: nothing is applied.
    """
    store = emulator.store
    if store.begin(user_keys) is not None:
        return None
    try:
        now_s = _now_s()
        results: list[Verdict | Invalid] = [
            a if isinstance(a, Invalid) else store.start(a, request_no=request_no, now_s=now_s)
            for a in actions
        ]
        # Sleeping while locked is what makes concurrent requests for one profile collide.
        latency_s = emulator.config.latency_ms.sample_ms(emulator.latency_rng) / 1000
        if latency_s > 0:
            await asyncio.sleep(latency_s)
    finally:
        store.end(user_keys)
    return results


def _element(
    result: Verdict | Invalid, action: StartAction | Invalid, request_no: int
) -> JSONObject:
    if isinstance(result, Invalid):
        return _error_element(result.message)
    match result:
        case Verdict.ACCEPTED:
            assert isinstance(action, StartAction)
            return _start_element(action.user_key, request_no)
        case Verdict.NOT_CREATED:
            return {"success": True, "warning": {"message": NOT_CREATED}}
        case Verdict.BLOCKED:
            return _error_element(BLOCKED)
        case Verdict.DEVMODE_LIMITED:
            return _error_element(DEVMODE_LIMITED)
        case _:
            assert_never(result)


def _start_element(user_key: str, request_no: int) -> JSONObject:
    """A `start` success shaped like Leanplum's, with variants and vars fixed per user."""
    digest = hashlib.blake2b(user_key.encode(), digest_size=8).digest()
    bucket = int.from_bytes(digest, "big")
    variants = [{"id": (i + 1) * 1000 + digest[i + 1]} for i in range(bucket % 3)]
    token = hashlib.blake2b(f"{user_key}\n{request_no}".encode(), digest_size=32).digest()
    return {
        "vars": {"bucket": bucket % 100, "newOnboarding": bucket % 2 == 0, "welcome": "Hello"},
        "token": base64.urlsafe_b64encode(token).rstrip(b"=").decode(),
        "interfaceRules": [],
        "variants": variants,
        "regions": {},
        "success": True,
        "messages": {},
        "interfaceEvents": [],
    }


def _error_element(message: str) -> JSONObject:
    return {"success": False, "error": {"message": message}}


def _errors(message: str) -> JSONObject:
    return {"response": [_error_element(message)]}


def _error(status: int, message: str) -> Answer:
    return Answer(status, _errors(message))


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if k == "clientKey" else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _now_s() -> float:
    return asyncio.get_running_loop().time()
