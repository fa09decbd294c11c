"""HTTP status + response element -> one `Outcome` per action, per docs/leanplum-api.md.

Pure. The verdict says what happens next (deliver, fail, retry, split, stop the run);
the kind says why, and is what failures.ndjson and the summary count.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from replayer.records import Attempt, FailureKind, redact_text


class Verdict(StrEnum):
    """What to do with an action after one attempt."""

    DELIVERED = "delivered"  # taken by Leanplum
    SKIPPED = "skipped"  # received, most likely not taken (200 with a warning): final
    REJECTED = "rejected"  # final failure: retrying the same body will not help
    RETRYABLE = "retryable"  # certainly not processed: retry is free of duplicates
    AMBIGUOUS = "ambiguous"  # may have been processed: retry risks a duplicate
    SPLIT = "split"  # a multi call refused as too large (403): send it in halves
    FATAL = "fatal"  # every later call would fail too (invalid access key): stop


# The kinds a sent record can fail with, besides validate.VALIDATION_KINDS.
SEND_KINDS: tuple[FailureKind, ...] = tuple(map(FailureKind, (
    "warning", "rejected", "client_error", "forbidden", "blocked", "rate_limited",
    "server_error", "timeout", "connection", "bad_response", "response_mismatch",
    "invalid_key", "ambiguous", "interrupted",
)))

INVALID_KEY = "invalid access key"
# A 429 about one user, not about the app (docs/leanplum-api.md): matched in the message, folded.
PROFILE_LOCK = "concurrent requests to the same profile"
DEV_MODE = ("development mode", "devmode", "dev mode")


class LimitCause(StrEnum):
    """Why a 429 came: the app-wide limit (throttled) or one user's (lock, devMode)."""

    THROTTLED = "throttled"  # no documented text: any 429 that is not one of the others
    PROFILE_LOCK = "profile_lock"  # another request for the same user was in flight
    DEV_MODE = "dev_mode"  # devMode allows one request per second per user


def limit_cause(message: str) -> LimitCause:
    """The cause of a 429 from its message."""
    folded = message.lower()
    if PROFILE_LOCK in folded:
        return LimitCause.PROFILE_LOCK
    if any(text in folded for text in DEV_MODE):
        return LimitCause.DEV_MODE
    return LimitCause.THROTTLED


class Outcome(NamedTuple):
    """The verdict on one action, with the kind, a message and the response element if any.

    A NamedTuple: one is made per element of every answer, and one is cheap to make.
    """

    verdict: Verdict
    kind: str
    message: str
    http_status: int | None = None
    element: dict[str, Any] | None = None
    limit: LimitCause | None = None  # set for a 429: why it came

    @property
    def throttled(self) -> bool:
        """A throttling 429: the app-wide limit, not this record's fault."""
        return self.limit is LimitCause.THROTTLED


def classify(attempt: Attempt, n_actions: int) -> list[Outcome]:
    """One outcome per action of the request (`n_actions` long, in request order)."""
    if attempt.status is None:
        return [_transport(attempt)] * n_actions
    if 300 <= attempt.status < 400:
        return [redirect(attempt.status, attempt.detail)] * n_actions
    elements = _elements(attempt.body)
    if attempt.status == 200:
        if elements is None:
            one = Outcome(Verdict.AMBIGUOUS, "bad_response",
                          "HTTP 200 with a body that is not a Leanplum response", 200)
            return [one] * n_actions
        if len(elements) != n_actions:
            one = Outcome(Verdict.AMBIGUOUS, "response_mismatch",
                          f"{len(elements)} response elements for {n_actions} actions", 200)
            return [one] * n_actions
        # The common element, a plain success, is told by three lookups and its outcome
        # built as a tuple in C; anything else goes through classify_element.
        return [_tuple_new(Outcome, (_DELIVERED, "delivered", "", 200, e, None))
                if type(e) is dict and e.get("success") is True and e.get("error") is None
                and e.get("warning") is None else classify_element(e) for e in elements]
    return [_http_error(attempt.status, elements, n_actions)] * n_actions


_DELIVERED = Verdict.DELIVERED
_tuple_new = tuple.__new__


def classify_element(element: object) -> Outcome:
    """The verdict on one element of a 200 answer."""
    if not isinstance(element, dict):
        return Outcome(Verdict.AMBIGUOUS, "bad_response", "response element is not an object", 200)
    error = _message(element.get("error"))
    if error is not None:
        if INVALID_KEY in error.lower():
            return Outcome(Verdict.FATAL, "invalid_key", error, 200, element)
        return Outcome(Verdict.REJECTED, "rejected", error, 200, element)
    warning = _message(element.get("warning"))
    if warning is not None:
        return Outcome(Verdict.SKIPPED, "warning", warning, 200, element)
    if element.get("success") is True:
        return Outcome(Verdict.DELIVERED, "delivered", "", 200, element)
    return Outcome(Verdict.REJECTED, "rejected", "success is not true", 200, element)


def redirect(status: int, host: str) -> Outcome:
    """A 3xx answer: a final client_error, never followed (the body holds the client key).

    The message names the host it points to, never the rest of the Location nor the body.
    """
    where = f" to {host}" if host else ""
    return Outcome(
        Verdict.REJECTED, "client_error",
        f"HTTP {status} redirect{where}: not followed (the key would go with it)", status,
    )


def _http_error(status: int, elements: list[Any] | None, n_actions: int) -> Outcome:
    message = _first_error(elements) or f"HTTP {status}"
    if INVALID_KEY in message.lower() or status == 401:
        return Outcome(Verdict.FATAL, "invalid_key", message, status)
    if status == 403:
        if n_actions > 1:
            return Outcome(Verdict.SPLIT, "forbidden", message, status)
        # A one-action call cannot be over multi's limits: the key is not allowed.
        return Outcome(Verdict.FATAL, "forbidden", message, status)
    if status == 429:
        return Outcome(Verdict.RETRYABLE, "rate_limited", message, status,
                       limit=limit_cause(message))
    if status == 451:
        return Outcome(Verdict.REJECTED, "blocked", message, status)
    if status >= 500:
        return Outcome(Verdict.RETRYABLE, "server_error", message, status)
    return Outcome(Verdict.REJECTED, "client_error", message, status)


def _transport(attempt: Attempt) -> Outcome:
    detail = f": {attempt.detail}" if attempt.detail else ""
    if attempt.error == "timeout":
        verdict = Verdict.AMBIGUOUS if attempt.sent else Verdict.RETRYABLE
        return Outcome(verdict, "timeout", f"no answer within the timeout{detail}")
    if attempt.error == "payload":
        return Outcome(Verdict.AMBIGUOUS, "bad_response", f"answer cut short{detail}")
    verdict = Verdict.AMBIGUOUS if attempt.sent else Verdict.RETRYABLE
    return Outcome(verdict, "connection", f"{attempt.error or 'transport'} error{detail}")


def _elements(body: bytes | None) -> list[Any] | None:
    if not body:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    elements = doc.get("response") if isinstance(doc, dict) else None
    return elements if isinstance(elements, list) else None


def _first_error(elements: list[Any] | None) -> str | None:
    for element in elements or ():
        if isinstance(element, dict):
            message = _message(element.get("error"))
            if message is not None:
                return message
    return None


def _message(part: object) -> str | None:
    """A server's message, with any key it echoes masked (it ends up in rows and logs)."""
    if isinstance(part, dict):
        message = part.get("message")
        return redact_text(str(message)) if message is not None else ""
    if isinstance(part, str):
        return redact_text(part)
    return None
