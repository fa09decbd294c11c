"""Turns one input line into a `Session` or a `RecordFailure` by Leanplum's `start` rules.

Pure: imports neither asyncio nor aiohttp, opens no files, and never raises for any input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from replayer.records import (
    CONFIG_FIELDS,
    SECRET_FIELDS,
    FailureKind,
    JSONObject,
    RawLine,
    RecordFailure,
    Session,
)

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

_MAX_ID_CHARS = 400  # CONTRACT.md: user and device IDs
_MAX_ATTRIBUTE_NAME_CHARS = 139  # CONTRACT.md: user attribute names
_MAX_OFFSET_S = 14 * 3600  # the widest real UTC offsets are -12h and +14h
_MAX_UNIX_S = 1e11  # year 5138: anything larger is a millisecond (or finer) timestamp
_MAX_FUTURE_S = 86400.0
_MAX_ISO_CHARS = 64  # no ISO-8601 timestamp is longer; spares parsing huge strings
_MAX_RAW_CHARS = 4096
_RAW_BYTES = 4 * _MAX_RAW_CHARS  # enough bytes for 4096 characters of UTF-8
_SHOW_CHARS = 40  # how much of an offending value a message quotes
_DETECT = "(detect)"
_REDACTED = "[redacted]"
_BOM = b"\xef\xbb\xbf"

_ATTRIBUTE_NAME_FORBIDDEN = re.compile(r'[,|"{\t\n\r]')
_NUMERIC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# A secret in text that did not parse: the value after `clientKey":` (or `=`, or `,` as in
# an array), in any case, quoted, single-quoted, unterminated or bare, up to where it
# would end. Masking too much of a broken line is fine; masking too little is not.
_SECRET_IN_TEXT = re.compile(
    r"""(clientKey[\\"']*\s*[:=,]\s*)("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[^,}\]&\s]*)""",
    re.IGNORECASE,
)
_SECRET_KEYS_FOLDED = frozenset(key.lower() for key in SECRET_FIELDS)


@dataclass(frozen=True, slots=True)
class _Problem:
    """What a field check found wrong; the caller prefixes the field's name."""

    kind: str
    detail: str


_Check = Callable[[Any], Any]  # returns the value to send, or a _Problem


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _show(value: Any) -> str:
    """A short, JSON-spelled description of a value for a message (never all of a huge one)."""
    if isinstance(value, str):
        cut = value[:_SHOW_CHARS]
        return orjson.dumps(cut).decode() + ("…" if len(value) > _SHOW_CHARS else "")
    if isinstance(value, (dict, list)):
        return f"an {_json_type(value)}"
    return orjson.dumps(value).decode()


def _wrong(expected: str, value: Any) -> _Problem:
    if isinstance(value, (dict, list)) or value is None:
        got = _show(value)
    else:
        got = f"{_json_type(value)} {_show(value)}"
    return _Problem("wrong_type", f"must be {expected}, got {got}")


def _string(value: Any) -> Any:
    return value if type(value) is str else _wrong("a string", value)


def _boolean(value: Any) -> Any:
    return value if value is True or value is False else _wrong("a JSON boolean", value)


def _one_of(*allowed: str) -> _Check:
    allowed_set = frozenset(allowed)
    spelled = " or ".join(allowed)

    def check(value: Any) -> Any:
        if type(value) is not str:
            return _wrong(f"one of {spelled}", value)
        if value not in allowed_set:
            return _Problem("invalid_value", f"must be {spelled}, got {_show(value)}")
        return value

    return check


def _id(value: Any) -> Any:
    if type(value) is not str:
        return _wrong("a string", value)
    if len(value) > _MAX_ID_CHARS:
        return _Problem("id_too_long", f"{len(value)} characters, at most {_MAX_ID_CHARS}")
    return value


def _country(value: Any) -> Any:
    if type(value) is not str:
        return _wrong("a string", value)
    if (len(value) == 2 and value.isascii() and value.isalpha()) or value == _DETECT:
        return value
    return _Problem(
        "invalid_value", f"must be an ISO 3166-1 alpha-2 code or (detect), got {_show(value)}"
    )


def _location(value: Any) -> Any:
    if type(value) is not str:
        return _wrong('a "lat,lon" string', value)
    if value == _DETECT:
        return value
    lat_text, comma, lon_text = value.partition(",")
    try:
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        lat = lon = float("nan")
    # Written so that NaN (and a missing comma) fails every comparison.
    if comma and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0:
        return value
    return _Problem(
        "invalid_value",
        f'must be "lat,lon" with lat in [-90, 90] and lon in [-180, 180], or (detect), '
        f"got {_show(value)}",
    )


def _timezone_offset(value: Any) -> Any:
    if type(value) is int:
        seconds = value
    elif type(value) is float:
        if not value.is_integer():
            return _Problem("invalid_value", f"must be whole seconds, got {_show(value)}")
        seconds = int(value)
    else:
        return _wrong("an integer", value)
    if -_MAX_OFFSET_S <= seconds <= _MAX_OFFSET_S:
        return seconds
    return _Problem("invalid_value", f"must be within ±{_MAX_OFFSET_S} (±14h), got {_show(value)}")


def _json_object_text(value: Any) -> Any:
    """webPushSubscription: a string holding a JSON object, or an object encoded to one."""
    if type(value) is dict:
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:
            return _Problem("invalid_value", "object nested too deeply to encode")
    if type(value) is not str:
        return _wrong("a JSON object or a string holding one", value)
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        decoded = None
    if type(decoded) is not dict:
        return _Problem("invalid_value", "string does not hold a JSON object")
    return value


_NAME_TOO_LONG = f"must be 1 to {_MAX_ATTRIBUTE_NAME_CHARS} characters"


# An app has at most 500 attribute names (CONTRACT.md), so the same few recur on millions
# of lines: the verdicts are remembered. Only names of legal length reach the cache, and
# it is bounded, so hostile input can neither bloat nor grow it.
@lru_cache(maxsize=4096)
def _attribute_name_problem(name: str) -> str | None:
    if not name:
        return _NAME_TOO_LONG
    if name[0] in ".-":
        return "must not start with . or -"
    if name[-1] == "/":
        return "must not end with /"
    if _ATTRIBUTE_NAME_FORBIDDEN.search(name):
        return 'must not contain , | " { tab, newline or carriage return'
    if _NUMERIC.fullmatch(name.strip()):
        return "must not be numeric"
    return None


_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


def _is_attribute_value(value: Any) -> bool:
    if type(value) in _SCALAR_TYPES:
        return True
    return type(value) is list and all(type(item) in _SCALAR_TYPES for item in value)


def _user_attributes(value: Any) -> Any:
    """An object (or a string holding one) of valid names to scalars or lists of scalars.

    Sent as a compact JSON string, as the published schema types it. When both names and
    values are wrong the problem is an invalid_attribute_name that lists both.
    """
    if type(value) is str:
        try:
            attributes = orjson.loads(value)
        except orjson.JSONDecodeError:
            attributes = None
        if type(attributes) is not dict:
            return _Problem("invalid_value", "string does not hold a JSON object")
    elif type(value) is dict:
        attributes = value
    else:
        return _wrong("an object or a string holding a JSON object", value)
    details: list[tuple[int, str]] = []
    for name, item in attributes.items():
        reason = (
            _attribute_name_problem(name)
            if len(name) <= _MAX_ATTRIBUTE_NAME_CHARS
            else _NAME_TOO_LONG
        )
        if reason is not None:
            details.append((0, f"name {_show(name)} {reason}"))
        if not _is_attribute_value(item):
            details.append((1, f"value of {_show(name)} must be a scalar or an array of scalars"))
    if details:
        kind = (
            "invalid_attribute_name" if any(rank == 0 for rank, _ in details) else "invalid_value"
        )
        return _Problem(kind, ", ".join(detail for _, detail in details))
    return orjson.dumps(attributes).decode()


def _time_problem(detail: str) -> _Problem:
    return _Problem("invalid_time", detail)


def _unix_seconds(seconds: float, given: Any) -> Any:
    if not seconds > 0:  # also rejects NaN
        return _time_problem(f"must be after 1970-01-01, got {_show(given)}")
    if seconds > _MAX_UNIX_S:
        return _time_problem(f"{_show(given)} looks like milliseconds (or finer), not UNIX seconds")
    if type(seconds) is float and seconds.is_integer():
        return int(seconds)
    return seconds


def _time(value: Any) -> Any:
    """UNIX seconds or an ISO-8601 string (naive taken as UTC) -> UNIX seconds."""
    kind = type(value)
    if kind is int or kind is float:
        return _unix_seconds(value, value)
    if kind is not str:
        return _wrong("UNIX seconds or an ISO-8601 string", value)
    parsed = None
    if len(value) <= _MAX_ISO_CHARS:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
    if parsed is None:
        return _time_problem(f"not UNIX seconds nor an ISO-8601 timestamp: {_show(value)}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    seconds = parsed.timestamp()
    if seconds > _MAX_UNIX_S:
        return _time_problem(f"{_show(value)} is too far in the future")
    return _unix_seconds(seconds, value)


# Every `start` parameter a record may carry (CONTRACT.md), with its check.
_CHECKS: dict[str, _Check] = {
    "userId": _id,
    "deviceId": _id,
    "time": _time,
    "devMode": _boolean,
    "createDisposition": _one_of("CreateIfNeeded", "CreateNever"),
    "appVersion": _string,
    "systemName": _string,
    "systemVersion": _string,
    "browserName": _string,
    "browserVersion": _string,
    "deviceName": _string,
    "deviceModel": _string,
    "iosPushToken": _string,
    "gcmRegistrationId": _string,
    "webPushSubscription": _json_object_text,
    "userAttributes": _user_attributes,
    "locale": _string,
    "country": _country,
    "region": _string,
    "city": _string,
    "location": _location,
    "locationAccuracyType": _one_of("IP", "CELL", "GPS"),
    "timezone": _string,
    "timezoneOffsetSeconds": _timezone_offset,
    "background": _boolean,
    "includeDefaults": _boolean,
}


def parse_line(
    raw: RawLine, *, allow_unknown_fields: bool = False, now_s: float | None = None
) -> Session | RecordFailure:
    """One line -> a `Session` to send or a `RecordFailure` naming every problem; never raises.

    Order: line_too_long, invalid_utf8, invalid_json and not_an_object stop at once; then
    every field is checked and the failure's kind is the earliest of its problems in
    VALIDATION_KINDS, its message all of them joined by "; ".
    A leading BOM and a trailing CR are ignored. An empty userId or deviceId counts as
    absent (and is not sent). `time` may be UNIX seconds or ISO-8601; a timestamp without
    an offset is taken as UTC. With `now_s`, times more than a day after it are rejected.
    A failure never holds a clientKey value: the record's is replaced by "[redacted]",
    and in raw text the value after "clientKey" is masked.
    """
    if raw.truncated:
        return _unparsed(
            raw,
            raw.data,
            "line_too_long",
            f"line longer than the reader's limit of {len(raw.data)} bytes, not parsed",
        )
    data: bytes | memoryview = raw.data
    if raw.data.startswith(_BOM):  # slices a view, not a copy of the line
        data = memoryview(raw.data)[3:]
    if raw.data.endswith(b"\r"):
        data = memoryview(data)[:-1]
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError as bad:
            return _unparsed(raw, data, "invalid_utf8", f"not valid UTF-8 at byte {bad.start}")
        return _unparsed(raw, data, "invalid_json", f"not JSON: {exc.msg} at column {exc.colno}")
    if type(parsed) is not dict:
        return _unparsed(raw, data, "not_an_object", f"a JSON {_json_type(parsed)}, not an object")
    return _check_record(raw, data, parsed, allow_unknown_fields, now_s)


def _check_record(
    raw: RawLine,
    data: bytes | memoryview,
    record: JSONObject,
    allow_unknown_fields: bool,
    now_s: float | None,
) -> Session | RecordFailure:
    params: JSONObject = {}
    problems: list[tuple[int, str]] = []
    unknown: list[str] = []
    for key, value in record.items():
        check = _CHECKS.get(key)
        if check is not None:
            out = check(value)
            if type(out) is _Problem:
                problems.append((_RANK[out.kind], f"{key}: {out.detail}"))
            else:
                params[key] = out
        elif key in SECRET_FIELDS:
            problems.append(
                (_RANK["secret_field"], f"{key}: a secret belongs in settings, not in records")
            )
        elif key in CONFIG_FIELDS:
            problems.append(
                (_RANK["config_field"], f"{key}: configuration belongs in settings, not records")
            )
        elif not allow_unknown_fields:
            unknown.append(key)
        elif _encodable(value):
            params[key] = value
        else:
            problems.append((_RANK["invalid_value"], f"{_show(key)}: nested too deeply"))
    if unknown:
        names = ", ".join(_show(name) for name in sorted(unknown))
        problems.append(
            (_RANK["unknown_field"], f"unknown field(s), not start parameters: {names}")
        )

    # Leanplum's rule: a blank userId means "use the device ID"; neither is sent blank.
    user_id = params.get("userId") or None
    device_id = params.get("deviceId") or None
    if params.get("userId") == "":
        del params["userId"]
    if params.get("deviceId") == "":
        del params["deviceId"]
    if (
        user_id is None
        and device_id is None
        and record.get("userId", "") == ""
        and record.get("deviceId", "") == ""
    ):
        problems.append(
            (
                _RANK["missing_user_id"],
                "userId/deviceId: a non-empty userId or deviceId is required",
            )
        )
    if now_s is not None:
        seconds = params.get("time")
        if seconds is not None and seconds > now_s + _MAX_FUTURE_S:
            problems.append(
                (_RANK["invalid_time"], f"time: {seconds} is more than 1 day in the future")
            )

    if not problems:
        # orjson's output keeps ~8 KB of spare capacity whatever its length; a session
        # lives for a while, so keep an exact-size copy (measured: 8.2 KB -> 0.66 KB).
        body = bytes(memoryview(orjson.dumps(params)))
        return Session(raw.file, raw.line_no, user_id, device_id, body, raw.data,
                       params.get("time"))
    problems.sort(key=_by_rank)  # stable: equal kinds keep the record's field order
    shown: JSONObject | None = _redacted(record)
    raw_text = None
    if not _encodable(shown):  # deeper than orjson can write back: keep the text instead
        shown, raw_text = None, _raw_text(data, cut=False)
    return RecordFailure(
        raw.file,
        raw.line_no,
        VALIDATION_KINDS[problems[0][0]],
        "; ".join(message for _, message in problems),
        record=shown,
        raw=raw_text,
        user_id=user_id,
        device_id=device_id,
    )


def _by_rank(problem: tuple[int, str]) -> int:
    return problem[0]


def _encodable(value: Any) -> bool:
    if not isinstance(value, (dict, list)):
        return True
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


def _redacted(record: JSONObject) -> JSONObject:
    """The record with every secret-looking top-level key's value replaced."""
    if not any(key.lower() in _SECRET_KEYS_FOLDED for key in record):
        return record
    return {
        key: _REDACTED if key.lower() in _SECRET_KEYS_FOLDED else value
        for key, value in record.items()
    }


def _raw_text(data: bytes | memoryview, *, cut: bool) -> str:
    """The line's text for a failure row: at most 4096 characters, any clientKey masked."""
    text = bytes(data[:_RAW_BYTES]).decode("utf-8", errors="replace")
    cut = cut or len(data) > _RAW_BYTES or len(text) > _MAX_RAW_CHARS
    text = _SECRET_IN_TEXT.sub(_mask_secret, text[:_MAX_RAW_CHARS])
    return text + "…[truncated]" if cut else text


def _mask_secret(match: re.Match[str]) -> str:
    return f'{match.group(1)}"{_REDACTED}"'


def _unparsed(raw: RawLine, data: bytes | memoryview, kind: str, message: str) -> RecordFailure:
    return RecordFailure(
        raw.file, raw.line_no, kind, message, raw=_raw_text(data, cut=raw.truncated)
    )
