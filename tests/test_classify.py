"""classify: every HTTP status, response element and transport error -> one Outcome per action."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from replayer.engine.classify import (
    SEND_KINDS,
    Outcome,
    Verdict,
    classify,
    classify_element,
    limit_cause,
)
from replayer.records import Attempt
from tests.conftest import DATA

REAL_BODY = (DATA / "start-response.json").read_bytes()
REAL_ELEMENT: dict[str, Any] = orjson.loads(REAL_BODY)["response"][0]

OK = {"success": True}
WARN = {"success": True, "warning": {"message": "User not found; CreateNever"}}
ERR = {"success": True, "error": {"message": "Missing argument userId"}}
BAD_KEY = {"success": False, "error": {"message": "Invalid access key"}}
HTML_503 = b"<html><body><h1>503 Service Unavailable</h1></body></html>"


def body(*elements: object) -> bytes:
    return orjson.dumps({"response": list(elements)})


def ok(n: int) -> bytes:
    return body(*[OK] * n)


# ---- 200 answers -------------------------------------------------------------------------

# (attempt, n_actions, expected (verdict, kind) per action, message of the first outcome or None)
OK_CASES: list[tuple[Attempt, int, list[tuple[Verdict, str]], str | None]] = [
    (Attempt(200, REAL_BODY), 1, [(Verdict.DELIVERED, "delivered")], ""),
    (Attempt(200, ok(3)), 3, [(Verdict.DELIVERED, "delivered")] * 3, ""),
    (Attempt(200, body(WARN)), 1, [(Verdict.SKIPPED, "warning")], "User not found; CreateNever"),
    (Attempt(200, body(ERR)), 1, [(Verdict.REJECTED, "rejected")], "Missing argument userId"),
    (Attempt(200, body(BAD_KEY)), 1, [(Verdict.FATAL, "invalid_key")], "Invalid access key"),
    (Attempt(200, body(OK, WARN, ERR)), 3,
     [(Verdict.DELIVERED, "delivered"), (Verdict.SKIPPED, "warning"),
      (Verdict.REJECTED, "rejected")], ""),
    (Attempt(200, body(OK, {"success": True, "error": {"message": "INVALID ACCESS KEY."}}, OK)),
     3, [(Verdict.DELIVERED, "delivered"), (Verdict.FATAL, "invalid_key"),
         (Verdict.DELIVERED, "delivered")], ""),
    (Attempt(200, b"not json at all"), 1, [(Verdict.AMBIGUOUS, "bad_response")], None),
    (Attempt(200, b"<html>OK</html>"), 2, [(Verdict.AMBIGUOUS, "bad_response")] * 2, None),
    (Attempt(200, b""), 1, [(Verdict.AMBIGUOUS, "bad_response")], None),
    (Attempt(200, None), 2, [(Verdict.AMBIGUOUS, "bad_response")] * 2, None),
    (Attempt(200, b'{"success": true}'), 1, [(Verdict.AMBIGUOUS, "bad_response")], None),
    (Attempt(200, b'{"response": {"success": true}}'), 1,
     [(Verdict.AMBIGUOUS, "bad_response")], None),
    (Attempt(200, b"[]"), 1, [(Verdict.AMBIGUOUS, "bad_response")], None),
    (Attempt(200, ok(2)), 3, [(Verdict.AMBIGUOUS, "response_mismatch")] * 3,
     "2 response elements for 3 actions"),
    (Attempt(200, ok(4)), 3, [(Verdict.AMBIGUOUS, "response_mismatch")] * 3,
     "4 response elements for 3 actions"),
    (Attempt(200, body()), 3, [(Verdict.AMBIGUOUS, "response_mismatch")] * 3,
     "0 response elements for 3 actions"),
]
OK_IDS = [
    "real-start-response", "multi-all-delivered", "warning-skipped", "error-rejected",
    "element-invalid-key-fatal", "multi-mixed", "multi-invalid-key-case-insensitive",
    "not-json", "html-200", "empty-body", "no-body", "object-without-response",
    "response-not-a-list", "json-array", "too-few-elements", "too-many-elements", "no-elements",
]


@pytest.mark.parametrize(("attempt", "n_actions", "expected", "message"), OK_CASES, ids=OK_IDS)
def test_classify_200(
    attempt: Attempt, n_actions: int, expected: list[tuple[Verdict, str]], message: str | None
) -> None:
    outcomes = classify(attempt, n_actions)
    assert len(outcomes) == n_actions
    assert [(o.verdict, o.kind) for o in outcomes] == expected
    assert all(o.http_status == 200 for o in outcomes)
    if message is not None:
        assert outcomes[0].message == message


def test_real_response_is_delivered_with_its_element_kept() -> None:
    [outcome] = classify(Attempt(200, REAL_BODY), 1)
    assert outcome == Outcome(Verdict.DELIVERED, "delivered", "", 200, REAL_ELEMENT)
    assert outcome.element is not None and outcome.element["token"] == REAL_ELEMENT["token"]


def test_multi_elements_map_to_actions_in_request_order() -> None:
    elements = [{"success": True, "vars": {"i": i}} for i in range(5)]
    outcomes = classify(Attempt(200, body(*elements)), 5)
    assert [o.element for o in outcomes] == elements


@pytest.mark.parametrize("n_found", [0, 1, 2, 4, 50], ids=lambda n: f"{n}-elements")
def test_count_mismatch_on_a_multi_of_3_is_never_delivered(n_found: int) -> None:
    outcomes = classify(Attempt(200, ok(n_found)), 3)
    assert len(outcomes) == 3
    for outcome in outcomes:
        assert outcome.verdict is Verdict.AMBIGUOUS
        assert outcome.kind == "response_mismatch"
        assert outcome.element is None


# ---- one element -------------------------------------------------------------------------

ELEMENT_CASES: list[tuple[object, Verdict, str, str]] = [
    (REAL_ELEMENT, Verdict.DELIVERED, "delivered", ""),
    ({"success": True}, Verdict.DELIVERED, "delivered", ""),
    ({"success": True, "warning": None, "error": None}, Verdict.DELIVERED, "delivered", ""),
    (WARN, Verdict.SKIPPED, "warning", "User not found; CreateNever"),
    ({"success": True, "warning": "plain text warning"}, Verdict.SKIPPED, "warning",
     "plain text warning"),
    (ERR, Verdict.REJECTED, "rejected", "Missing argument userId"),
    ({"success": True, "error": {"message": "e"}, "warning": {"message": "w"}},
     Verdict.REJECTED, "rejected", "e"),
    ({"success": True, "error": {"message": "Invalid access key"}}, Verdict.FATAL,
     "invalid_key", "Invalid access key"),
    ({"success": False, "error": {"message": "invalid access key for this app"}},
     Verdict.FATAL, "invalid_key", "invalid access key for this app"),
    ({"success": True, "warning": {"message": "Invalid access key"}}, Verdict.SKIPPED,
     "warning", "Invalid access key"),
    ({"success": False}, Verdict.REJECTED, "rejected", "success is not true"),
    ({}, Verdict.REJECTED, "rejected", "success is not true"),
    ({"success": "true"}, Verdict.REJECTED, "rejected", "success is not true"),
    (None, Verdict.AMBIGUOUS, "bad_response", "response element is not an object"),
    ("success", Verdict.AMBIGUOUS, "bad_response", "response element is not an object"),
    ([{"success": True}], Verdict.AMBIGUOUS, "bad_response", "response element is not an object"),
]
ELEMENT_IDS = [
    "real-element", "bare-success", "null-warning-and-error", "warning-object",
    "warning-string", "error-object", "error-beats-warning", "invalid-key-error",
    "invalid-key-lowercase", "invalid-key-only-a-warning", "success-false", "empty-object",
    "success-not-bool", "null", "string", "list",
]


@pytest.mark.parametrize(
    ("element", "verdict", "kind", "message"), ELEMENT_CASES, ids=ELEMENT_IDS
)
def test_classify_element(element: object, verdict: Verdict, kind: str, message: str) -> None:
    outcome = classify_element(element)
    assert (outcome.verdict, outcome.kind, outcome.message) == (verdict, kind, message)
    assert outcome.http_status == 200


@pytest.mark.parametrize(
    ("element", "verdict", "kind", "message"), ELEMENT_CASES, ids=ELEMENT_IDS
)
def test_an_answer_classifies_each_element_as_classify_element_does(
        element: object, verdict: Verdict, kind: str, message: str) -> None:
    # classify() tells a plain success without calling classify_element: the same outcome.
    [outcome] = classify(Attempt(200, orjson.dumps({"response": [element]})), 1)
    assert outcome == classify_element(element)
    assert type(outcome) is Outcome and outcome.limit is None
    assert outcome.element == (element if isinstance(element, dict) else None)


# ---- HTTP errors ---------------------------------------------------------------------------

FAIL_400 = body({"success": False, "error": {"message": "Bad request: missing appId"}})
FAIL_KEY = body({"success": False, "error": {"message": "Invalid access key"}})
FAIL_403 = body({"success": False, "error": {"message": "Too many users in multi"}})
FAIL_429 = body({"success": False, "error": {
    "message": "Request failed due to concurrent requests to the same profile ID"}})

# (status, body, n_actions, verdict, kind, message)
HTTP_CASES: list[tuple[int, bytes | None, int, Verdict, str, str]] = [
    (401, None, 1, Verdict.FATAL, "invalid_key", "HTTP 401"),
    (401, FAIL_400, 3, Verdict.FATAL, "invalid_key", "Bad request: missing appId"),
    (400, FAIL_KEY, 1, Verdict.FATAL, "invalid_key", "Invalid access key"),
    (403, FAIL_KEY, 3, Verdict.FATAL, "invalid_key", "Invalid access key"),
    (404, FAIL_KEY, 2, Verdict.FATAL, "invalid_key", "Invalid access key"),
    (403, FAIL_403, 1, Verdict.FATAL, "forbidden", "Too many users in multi"),
    (403, None, 1, Verdict.FATAL, "forbidden", "HTTP 403"),
    (403, FAIL_403, 2, Verdict.SPLIT, "forbidden", "Too many users in multi"),
    (403, b"Forbidden", 500, Verdict.SPLIT, "forbidden", "HTTP 403"),
    (429, FAIL_429, 1, Verdict.RETRYABLE, "rate_limited",
     "Request failed due to concurrent requests to the same profile ID"),
    (429, None, 4, Verdict.RETRYABLE, "rate_limited", "HTTP 429"),
    (451, None, 1, Verdict.REJECTED, "blocked", "HTTP 451"),
    (451, body({"success": False, "error": {"message": "User is blocked"}}), 2,
     Verdict.REJECTED, "blocked", "User is blocked"),
    (400, FAIL_400, 1, Verdict.REJECTED, "client_error", "Bad request: missing appId"),
    (400, b"", 3, Verdict.REJECTED, "client_error", "HTTP 400"),
    (404, b"<html>Not Found</html>", 1, Verdict.REJECTED, "client_error", "HTTP 404"),
    (413, None, 2, Verdict.REJECTED, "client_error", "HTTP 413"),
    (500, None, 1, Verdict.RETRYABLE, "server_error", "HTTP 500"),
    (500, body({"success": False, "error": {"message": "Internal error"}}), 2,
     Verdict.RETRYABLE, "server_error", "Internal error"),
    (502, b"Bad Gateway", 1, Verdict.RETRYABLE, "server_error", "HTTP 502"),
    (503, HTML_503, 3, Verdict.RETRYABLE, "server_error", "HTTP 503"),
    (504, b'{"response": []}', 1, Verdict.RETRYABLE, "server_error", "HTTP 504"),
    (500, body({"success": False}, {"error": {"message": "second"}}), 2,
     Verdict.RETRYABLE, "server_error", "second"),
]
HTTP_IDS = [
    "401-no-body", "401-other-message", "400-invalid-key", "403-invalid-key-multi",
    "404-invalid-key", "403-single-forbidden", "403-single-no-body", "403-multi-split",
    "403-multi-500-split", "429-concurrent", "429-no-body", "451-blocked", "451-with-message",
    "400-client-error", "400-empty-body", "404-html", "413", "500-no-body", "500-with-message",
    "502-text", "503-html", "504-empty-response", "500-first-error-message",
]


@pytest.mark.parametrize(
    ("status", "raw", "n_actions", "verdict", "kind", "message"), HTTP_CASES, ids=HTTP_IDS
)
def test_classify_http_error(
    status: int, raw: bytes | None, n_actions: int, verdict: Verdict, kind: str, message: str
) -> None:
    outcomes = classify(Attempt(status, raw), n_actions)
    assert len(outcomes) == n_actions
    cause = limit_cause(message) if status == 429 else None  # why a 429 came
    expected = Outcome(verdict, kind, message, status, limit=cause)
    assert all(o == expected for o in outcomes)


# ---- transport errors ----------------------------------------------------------------------

# (attempt, verdict, kind, message contains)
TRANSPORT_CASES: list[tuple[Attempt, Verdict, str, str]] = [
    (Attempt(None, None, error="timeout"), Verdict.AMBIGUOUS, "timeout", "timeout"),
    (Attempt(None, None, error="timeout", detail="read 30 s"), Verdict.AMBIGUOUS, "timeout",
     "read 30 s"),
    (Attempt(None, None, error="timeout", sent=False), Verdict.RETRYABLE, "timeout", "timeout"),
    (Attempt(None, None, error="connect", sent=False, detail="Connection refused"),
     Verdict.RETRYABLE, "connection", "Connection refused"),
    (Attempt(None, None, error="connect"), Verdict.AMBIGUOUS, "connection", "connect"),
    (Attempt(None, None, error="disconnected", detail="Server disconnected"),
     Verdict.AMBIGUOUS, "connection", "Server disconnected"),
    (Attempt(None, None, error="transport"), Verdict.AMBIGUOUS, "connection", "transport"),
    (Attempt(None, None), Verdict.AMBIGUOUS, "connection", "transport"),
    (Attempt(None, None, error="payload", detail="incomplete body"), Verdict.AMBIGUOUS,
     "bad_response", "incomplete body"),
    (Attempt(None, None, error="payload", sent=False), Verdict.AMBIGUOUS, "bad_response",
     "cut short"),
]
TRANSPORT_IDS = [
    "timeout", "timeout-detail", "timeout-not-sent", "connect-not-sent", "connect-sent",
    "disconnected", "transport", "no-error-name", "payload", "payload-not-sent",
]


@pytest.mark.parametrize("n_actions", [1, 3, 50], ids=lambda n: f"{n}-actions")
@pytest.mark.parametrize(
    ("attempt", "verdict", "kind", "fragment"), TRANSPORT_CASES, ids=TRANSPORT_IDS
)
def test_classify_transport_error(
    attempt: Attempt, verdict: Verdict, kind: str, fragment: str, n_actions: int
) -> None:
    outcomes = classify(attempt, n_actions)
    assert len(outcomes) == n_actions
    for outcome in outcomes:
        assert (outcome.verdict, outcome.kind) == (verdict, kind)
        assert fragment in outcome.message
        assert outcome.http_status is None
        assert outcome.element is None


# ---- invariants ----------------------------------------------------------------------------

ALL_ATTEMPTS = (
    [a for a, *_ in OK_CASES]
    + [Attempt(status, raw) for status, raw, *_ in HTTP_CASES]
    + [a for a, *_ in TRANSPORT_CASES]
)


@pytest.mark.parametrize("n_actions", [1, 2, 3, 7], ids=lambda n: f"{n}-actions")
def test_every_attempt_gives_n_outcomes_with_a_known_kind(n_actions: int) -> None:
    for attempt in ALL_ATTEMPTS:
        outcomes = classify(attempt, n_actions)
        assert len(outcomes) == n_actions, attempt
        for outcome in outcomes:
            assert outcome.kind == "delivered" or outcome.kind in SEND_KINDS, outcome
            assert (outcome.verdict is Verdict.DELIVERED) == (outcome.kind == "delivered")
