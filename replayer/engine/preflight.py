"""Before the first record: one `start` call that creates nothing, to learn that the endpoint
answers and takes the key, so that a wrong key or a dead host costs no record and no row.

The call is `start` with `createDisposition: CreateNever` for a user id nobody has (a new
random one each time): Leanplum answers it with a warning and records nothing
(docs/leanplum-api.md). `judge` is pure; `preflight` sends the call a few times at most.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import aiohttp
import orjson

from replayer.engine import send
from replayer.engine.classify import Verdict, classify
from replayer.engine.endpoint import Endpoint
from replayer.records import Attempt, ExitCode

PREFLIGHT_USER_PREFIX = "replayer-preflight-"
TRIES = 3  # a connection refused three times, a second apart, is not a blip
PAUSE_S = 1.0


@dataclass(frozen=True, slots=True)
class PreflightFailure:
    """Why the run cannot start: the exit code and one line for the user."""

    code: ExitCode
    message: str


def preflight_body(auth: bytes, user_id: str) -> bytes:
    """The call's body: the run's own auth fields, a user that cannot exist, CreateNever."""
    return send.start_body_of(auth, orjson.dumps(
        {"userId": user_id, "createDisposition": "CreateNever"}))


def judge(attempt: Attempt, host: str) -> PreflightFailure | None:
    """What the answer says of the endpoint: None when it answers as Leanplum does and takes
    the key (a warning, a success, or a passing 429/5xx the run's retries will handle)."""
    outcome = classify(attempt, 1)[0]
    if outcome.verdict is Verdict.FATAL and outcome.kind in ("invalid_key", "forbidden"):
        return PreflightFailure(ExitCode.INVALID_KEY, f"{host} refused the access key "
                                f"({outcome.message}): check LEANPLUM_APP_ID and the production "
                                "client key; nothing was sent")
    if attempt.status is None:
        return PreflightFailure(ExitCode.INPUT, f"cannot reach {host}: {outcome.message}; "
                                "nothing was sent (check --endpoint, or try again later)")
    if outcome.verdict in (Verdict.DELIVERED, Verdict.SKIPPED, Verdict.RETRYABLE):
        return None
    if outcome.verdict is Verdict.REJECTED and attempt.status == 200:
        return None  # an answer element in Leanplum's shape: the endpoint and key work
    return PreflightFailure(ExitCode.INPUT, f"{host} does not answer as the Leanplum API does "
                            f"(HTTP {attempt.status}: {outcome.message}); nothing was sent "
                            "(check --endpoint)")


async def preflight(endpoint: Endpoint, *, timeout_s: float, tries: int = TRIES,
                    pause_s: float = PAUSE_S) -> PreflightFailure | None:
    """Sends the preflight call, again after `pause_s` while the host cannot be reached."""
    host = endpoint.url.split("//", 1)[-1].split("/", 1)[0]
    auth = send.auth_prefix(endpoint.app_id, endpoint.client_key)
    body = preflight_body(auth, PREFLIGHT_USER_PREFIX + uuid.uuid4().hex)
    url = endpoint.url + "?action=start"
    verdict: PreflightFailure | None = None
    async with aiohttp.ClientSession(timeout=send.client_timeout(timeout_s)) as http:
        for attempt_no in range(tries):
            if attempt_no:
                await asyncio.sleep(pause_s)
            attempt = await send.post(http, url, body)
            verdict = judge(attempt, host)
            # A connection refused or dropped is tried again (a blip, a load balancer
            # recycling a connection); a call sent and not answered within the run's own
            # timeout says enough, and another would only double the wait.
            if verdict is None or attempt.status is not None or (
                    attempt.sent and attempt.error == "timeout"):
                return verdict
    return verdict
