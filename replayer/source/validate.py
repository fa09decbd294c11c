"""Turns input lines into `Session`s or `RecordFailure`s by Leanplum's `start` rules.

`check_line` applies every rule in Python and gives every verdict and message; the typed
pass (typed.py: one C pass of msgspec, then a few checks) takes the plain, compact valid
lines first, with exactly check_line's result. `parse_line` and `parse_lines` use both.
Pure: imports neither asyncio nor aiohttp, opens no files, and never raises for any input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from replayer.limits import MAX_FUTURE_S
from replayer.records import (
    SECRET_NAMES_FOLDED,
    FailureKind,
    JSONObject,
    RawLine,
    RecordFailure,
    Session,
    line_body,
    redact_text,
)
from replayer.source.fields import CHECKS, PLAIN_STRINGS, Problem, json_type, show
from replayer.source.redact import (
    may_name_secret,
    named_problem,
    nested_secret_problems,
    raw_text,
    redacted,
)
from replayer.source.typed import plain, typed_session

# The closed set of failure kinds, in the order problems are ranked: a failure's `kind`
# is the earliest of its problems in this tuple, and its message lists them in this order.
VALIDATION_KINDS: tuple[FailureKind, ...] = tuple(map(FailureKind, (
    "line_too_long",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "secret_field",
    "config_field",
    "unknown_field",
    "missing_user_id",
    "id_too_long",
    "wrong_type",
    "invalid_value",
    "invalid_attribute_name",
    "invalid_time",
)))
_RANK: dict[str, int] = {kind: rank for rank, kind in enumerate(VALIDATION_KINDS)}


# A problem found in a record: its rank in VALIDATION_KINDS and its message.
_Ranked = tuple[int, str]


def parse_line(
    raw: RawLine, *, allow_unknown_fields: bool = False, now_s: float | None = None
) -> Session | RecordFailure:
    """One line -> what `check_line` makes of it (by the typed pass when it can)."""
    typed = typed_session(raw, _later(now_s)) if plain(raw.data) else None
    if typed is not None:
        return typed
    return check_line(raw, allow_unknown_fields=allow_unknown_fields, now_s=now_s)


def parse_lines(
    raws: Sequence[RawLine], *, allow_unknown_fields: bool = False, now_s: float | None = None
) -> list[Session | RecordFailure]:
    """Each line -> what `check_line` makes of it, in order (by the typed pass when it can;
    the names and escapes that keep a line from it are looked for once per chunk)."""
    later_s = _later(now_s)
    # A Session is a tuple that is never empty: `or` goes the long way only where needed.
    if plain(b"\n".join([raw.data for raw in raws])):
        return [typed_session(raw, later_s)
                or check_line(raw, allow_unknown_fields=allow_unknown_fields, now_s=now_s)
                for raw in raws]
    return [(typed_session(raw, later_s) if plain(raw.data) else None)
            or check_line(raw, allow_unknown_fields=allow_unknown_fields, now_s=now_s)
            for raw in raws]


def _later(now_s: float | None) -> float:
    """The latest time a record may carry (none without `now_s`)."""
    return float("inf") if now_s is None else now_s + MAX_FUTURE_S


def check_line(
    raw: RawLine, *, allow_unknown_fields: bool = False, now_s: float | None = None
) -> Session | RecordFailure:
    """One line -> a `Session` to send or a `RecordFailure` naming every problem; never raises.

    Order: line_too_long, invalid_utf8, invalid_json and not_an_object stop at once; then
    every field is checked and the failure's kind is the earliest of its problems in
    VALIDATION_KINDS, its message all of them joined by "; ".
    A leading BOM and a trailing CR are ignored. An empty userId or deviceId counts as
    absent (and is not sent). `time` may be UNIX seconds or ISO-8601; a timestamp without
    an offset is taken as UTC. With `now_s`, times more than a day after it are rejected.
    clientKey, appId or apiVersion anywhere in a record (any depth, any case, or spelled
    with a value inside a string) makes it a secret_field or config_field failure, so a
    Session never holds one. A failure never shows their values: in `record` they are
    "[redacted]" at any depth, and in raw text, messages and IDs the value after the name
    is masked. A Session's body is orjson's writing of the parameters sent: the line's own
    bytes (the same object) when the line is just that, as a compact line that needed no
    normalising is.
    """
    if raw.truncated:
        return _unparsed(
            raw,
            raw.data,
            "line_too_long",
            f"line longer than the reader's limit of {len(raw.data)} bytes, not parsed",
        )
    data = line_body(raw.data)
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError as bad:
            return _unparsed(raw, data, "invalid_utf8", f"not valid UTF-8 at byte {bad.start}")
        return _unparsed(raw, data, "invalid_json", f"not JSON: {exc.msg} at column {exc.colno}")
    if type(parsed) is not dict:
        return _unparsed(raw, data, "not_an_object", f"a JSON {json_type(parsed)}, not an object")
    return _check_record(raw, data, parsed, allow_unknown_fields, now_s)


def _check_record(
    raw: RawLine,
    data: bytes | memoryview,
    record: JSONObject,
    allow_unknown_fields: bool,
    now_s: float | None,
) -> Session | RecordFailure:
    """Every field checked (the hot path: one pass, no helper calls for a valid record)."""
    params: JSONObject = {}
    problems: list[_Ranked] = []
    unknown: list[str] = []
    for key, value in record.items():
        if key in PLAIN_STRINGS and type(value) is str:  # most fields: nothing to check
            params[key] = value
            continue
        check = CHECKS.get(key)
        if check is not None:
            out = check(value)
            if type(out) is Problem:
                problems.append((_RANK[out.kind], f"{key}: {out.detail}"))
            else:
                params[key] = out
        elif key.lower() in SECRET_NAMES_FOLDED:  # in any case: never sent, even as unknown
            problems.extend(_ranked([named_problem(key, key)]))
        elif not allow_unknown_fields:
            unknown.append(key)
        elif _encodable([[value]]):  # as it will stand in a failure row's record
            params[key] = value
        else:
            problems.append((_RANK["invalid_value"], f"{show(key)}: nested too deeply"))
    names_secret = may_name_secret(raw.data)
    if names_secret:
        problems.extend(_ranked(nested_secret_problems(record)))
    if unknown:
        problems.append(_unknown_problem(unknown))

    # Leanplum's rule: a blank userId means "use the device ID"; neither is sent blank.
    # (A checked ID is a string: a falsy one is "", and is dropped.)
    user_id = params.get("userId") or None
    if user_id is None and "userId" in params:
        del params["userId"]
    device_id = params.get("deviceId") or None
    if device_id is None and "deviceId" in params:
        del params["deviceId"]
    if user_id is None and device_id is None and _no_id_given(record):
        problems.append(_MISSING_ID)
    if now_s is not None:
        seconds = params.get("time")
        if seconds is not None and seconds > now_s + MAX_FUTURE_S:
            problems.append(_future_problem(seconds))

    if not problems:
        # orjson's output keeps ~8 KB of spare capacity whatever its length; a session
        # lives for a while, so keep an exact-size copy (measured: 8.2 KB -> 0.66 KB), or
        # the line itself when it is what orjson wrote (nothing normalised): one copy.
        body = orjson.dumps(params)
        body = raw.data if body == raw.data else bytes(memoryview(body))
        return Session(raw.file, raw.line_no, user_id, device_id, body, raw.data,
                       params.get("time"))
    return _failure(raw, data, record, problems, (user_id, device_id), names_secret=names_secret)


_MISSING_ID: _Ranked = (
    _RANK["missing_user_id"], "userId/deviceId: a non-empty userId or deviceId is required"
)


def _no_id_given(record: JSONObject) -> bool:
    """Neither ID is in the record, or each is "" (an ID of the wrong type is its own problem)."""
    no_id: bool = record.get("userId", "") == "" and record.get("deviceId", "") == ""
    return no_id


def _unknown_problem(unknown: list[str]) -> _Ranked:
    names = ", ".join(show(name) for name in sorted(unknown))
    return _RANK["unknown_field"], f"unknown field(s), not start parameters: {names}"


def _future_problem(seconds: float) -> _Ranked:
    return _RANK["invalid_time"], f"time: {seconds} is more than 1 day in the future"


def _ranked(found: list[tuple[str, str]]) -> list[_Ranked]:
    return [(_RANK[kind], message) for kind, message in found]


def _failure(
    raw: RawLine,
    data: bytes | memoryview,
    record: JSONObject,
    problems: list[_Ranked],
    ids: tuple[str | None, str | None],
    *,
    names_secret: bool,
) -> RecordFailure:
    """The failure row of a parsed record: its worst kind, every problem, secrets masked."""
    problems.sort(key=_by_rank)  # stable: equal kinds keep the record's field order
    user_id, device_id = ids
    shown: JSONObject | None = record
    text = None
    if not _encodable([record]):  # deeper than a row can hold: keep the text instead
        shown, text = None, raw_text(data, cut=False)
    elif names_secret:
        shown = redacted(record)
        user_id = redact_text(user_id) if user_id else user_id
        device_id = redact_text(device_id) if device_id else device_id
    return RecordFailure(
        raw.file,
        raw.line_no,
        VALIDATION_KINDS[problems[0][0]],
        "; ".join(message for _, message in problems),
        record=shown,
        raw=text,
        user_id=user_id,
        device_id=device_id,
    )


def _by_rank(problem: _Ranked) -> int:
    return problem[0]


def _encodable(value: Any) -> bool:
    if not isinstance(value, (dict, list)):
        return True
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


def _unparsed(raw: RawLine, data: bytes | memoryview, kind: str, message: str) -> RecordFailure:
    return RecordFailure(
        raw.file, raw.line_no, FailureKind(kind), message, raw=raw_text(data, cut=raw.truncated)
    )
