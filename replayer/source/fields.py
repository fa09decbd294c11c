"""The checks of each `start` parameter a record may carry (docs/leanplum-api.md): `CHECKS`.

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

from replayer.limits import MAX_ATTRIBUTE_NAME_CHARS, MAX_ID_CHARS, MAX_ISO_CHARS, MAX_OFFSET_S
from replayer.records import redact_text

SHOW_CHARS = 40  # how much of an offending value a message quotes
MAX_UNIX_S = 1e11  # year 5138: anything larger is a millisecond (or finer) timestamp
_DETECT = "(detect)"

_ATTRIBUTE_NAME_FORBIDDEN = re.compile(r'[,|"{\t\n\r]')
_NUMERIC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True, slots=True)
class Problem:
    """What a field check found wrong; the caller prefixes the field's name."""

    kind: str
    detail: str


Check = Callable[[Any], Any]  # returns the value to send, or a Problem


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type ("string", "object", "null", ...)."""
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


def show(value: Any) -> str:
    """A short, JSON-spelled description of a value for a message (never all of a huge one)."""
    if isinstance(value, str):
        cut = redact_text(value[:SHOW_CHARS])  # a message must not quote a secret either
        return orjson.dumps(cut).decode() + ("…" if len(value) > SHOW_CHARS else "")
    if isinstance(value, (dict, list)):
        return f"an {json_type(value)}"
    return orjson.dumps(value).decode()


def _wrong(expected: str, value: Any) -> Problem:
    if isinstance(value, (dict, list)) or value is None:
        got = show(value)
    else:
        got = f"{json_type(value)} {show(value)}"
    return Problem("wrong_type", f"must be {expected}, got {got}")


def _string(value: Any) -> Any:
    return value if type(value) is str else _wrong("a string", value)


def _boolean(value: Any) -> Any:
    return value if value is True or value is False else _wrong("a JSON boolean", value)


def _one_of(*allowed: str) -> Check:
    allowed_set = frozenset(allowed)
    spelled = " or ".join(allowed)

    def check(value: Any) -> Any:
        if type(value) is not str:
            return _wrong(f"one of {spelled}", value)
        if value not in allowed_set:
            return Problem("invalid_value", f"must be {spelled}, got {show(value)}")
        return value

    return check


def _id(value: Any) -> Any:
    if type(value) is not str:
        return _wrong("a string", value)
    if len(value) > MAX_ID_CHARS:
        return Problem("id_too_long", f"{len(value)} characters, at most {MAX_ID_CHARS}")
    return value


def _country(value: Any) -> Any:
    if type(value) is not str:
        return _wrong("a string", value)
    if (len(value) == 2 and value.isascii() and value.isalpha()) or value == _DETECT:
        return value
    return Problem(
        "invalid_value", f"must be an ISO 3166-1 alpha-2 code or (detect), got {show(value)}"
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
    return Problem(
        "invalid_value",
        f'must be "lat,lon" with lat in [-90, 90] and lon in [-180, 180], or (detect), '
        f"got {show(value)}",
    )


def _timezone_offset(value: Any) -> Any:
    if type(value) is int:
        seconds = value
    elif type(value) is float:
        if not value.is_integer():
            return Problem("invalid_value", f"must be whole seconds, got {show(value)}")
        seconds = int(value)
    else:
        return _wrong("an integer", value)
    if -MAX_OFFSET_S <= seconds <= MAX_OFFSET_S:
        return seconds
    return Problem("invalid_value", f"must be within ±{MAX_OFFSET_S} (±14h), got {show(value)}")


def _json_object_text(value: Any) -> Any:
    """webPushSubscription: a string holding a JSON object, or an object encoded to one."""
    if type(value) is dict:
        try:  # and a failure row can hold the record that holds it (two levels up)
            orjson.dumps([[value]])
        except orjson.JSONEncodeError:
            return Problem("invalid_value", "object nested too deeply to encode")
        return orjson.dumps(value).decode()
    if type(value) is not str:
        return _wrong("a JSON object or a string holding one", value)
    if _object_in_text(value) is None:
        return Problem("invalid_value", "string does not hold a JSON object")
    return value


def _object_in_text(text: str) -> dict[str, Any] | None:
    """The JSON object a string holds, or None when it holds anything else."""
    try:
        decoded = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return decoded if type(decoded) is dict else None


_NAME_TOO_LONG = f"must be 1 to {MAX_ATTRIBUTE_NAME_CHARS} characters"


# An app has at most 500 attribute names (docs/leanplum-api.md), so the same few recur on millions
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
        attributes = _object_in_text(value)
        if attributes is None:
            return Problem("invalid_value", "string does not hold a JSON object")
    elif type(value) is dict:
        attributes = value
    else:
        return _wrong("an object or a string holding a JSON object", value)
    details: list[tuple[int, str]] = []
    for name, item in attributes.items():
        reason = (
            _attribute_name_problem(name)
            if len(name) <= MAX_ATTRIBUTE_NAME_CHARS
            else _NAME_TOO_LONG
        )
        if reason is not None:
            details.append((0, f"name {show(name)} {reason}"))
        if not _is_attribute_value(item):
            details.append((1, f"value of {show(name)} must be a scalar or an array of scalars"))
    if details:
        kind = (
            "invalid_attribute_name" if any(rank == 0 for rank, _ in details) else "invalid_value"
        )
        return Problem(kind, ", ".join(detail for _, detail in details))
    return orjson.dumps(attributes).decode()


def _time_problem(detail: str) -> Problem:
    return Problem("invalid_time", detail)


def _unix_seconds(seconds: float, given: Any) -> Any:
    if not seconds > 0:  # also rejects NaN
        return _time_problem(f"must be after 1970-01-01, got {show(given)}")
    if seconds > MAX_UNIX_S:
        return _time_problem(f"{show(given)} looks like milliseconds (or finer), not UNIX seconds")
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
    if len(value) <= MAX_ISO_CHARS:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
    if parsed is None:
        return _time_problem(f"not UNIX seconds nor an ISO-8601 timestamp: {show(value)}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    seconds = parsed.timestamp()
    if seconds > MAX_UNIX_S:
        return _time_problem(f"{show(value)} is too far in the future")
    return _unix_seconds(seconds, value)


# Every `start` parameter a record may carry (docs/leanplum-api.md), with its check.
CHECKS: dict[str, Check] = {
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

# The parameters whose check is "a string": a string value needs no call at all.
PLAIN_STRINGS = frozenset(name for name, check in CHECKS.items() if check is _string)
