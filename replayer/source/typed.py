"""The typed pass: a line that is a plain, compact `start` record becomes a `Session` after
one C pass (msgspec decodes and type-checks it into a Struct) and a few checks in Python.

It only ever says yes: a line it does not accept (or may get wrong) goes to `check_line`,
the validator in Python, which gives every verdict and every message; `parse_line` and
`parse_lines` (validate.py) put the two together. What it accepts, it accepts exactly as
`check_line` would: the same Session, field for field, sending the same bytes. Pure:
imports neither asyncio nor aiohttp, opens no files, and never raises for any input.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

from replayer.limits import MAX_ID_CHARS, MAX_OFFSET_S
from replayer.records import RawLine, Session
from replayer.source.fields import CHECKS, MAX_UNIX_S, Check, Problem
from replayer.source.redact import may_name_secret

# The types say what CHECKS say, where a type can say it. A time below 1 s is valid but
# left to check_line: the proof below needs times that orjson writes without an exponent.
_Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_CHARS)]
_IntTime = Annotated[int, Meta(gt=0, le=int(MAX_UNIX_S))]
_FloatTime = Annotated[float, Meta(ge=1.0, le=MAX_UNIX_S)]
_Offset = Annotated[int, Meta(ge=-MAX_OFFSET_S, le=MAX_OFFSET_S)]


class Record(Struct, forbid_unknown_fields=True):
    """A `start` record as the typed pass accepts it: every parameter typed as it is sent,
    except userAttributes, re-encoded (kept as its raw JSON text), and what Python checks
    after (a whole float time, a time in the future, no ID at all, country, location, what
    a push subscription's string holds)."""

    userId: _Id | UnsetType = UNSET
    deviceId: _Id | UnsetType = UNSET
    time: _IntTime | _FloatTime | UnsetType = UNSET
    devMode: bool | UnsetType = UNSET
    createDisposition: Literal["CreateIfNeeded", "CreateNever"] | UnsetType = UNSET
    appVersion: str | UnsetType = UNSET
    systemName: str | UnsetType = UNSET
    systemVersion: str | UnsetType = UNSET
    browserName: str | UnsetType = UNSET
    browserVersion: str | UnsetType = UNSET
    deviceName: str | UnsetType = UNSET
    deviceModel: str | UnsetType = UNSET
    iosPushToken: str | UnsetType = UNSET
    gcmRegistrationId: str | UnsetType = UNSET
    webPushSubscription: str | UnsetType = UNSET  # as a string (an object: check_line's)
    userAttributes: Raw | UnsetType = UNSET
    locale: str | UnsetType = UNSET
    country: str | UnsetType = UNSET
    region: str | UnsetType = UNSET
    city: str | UnsetType = UNSET
    location: str | UnsetType = UNSET
    locationAccuracyType: Literal["IP", "CELL", "GPS"] | UnsetType = UNSET
    timezone: str | UnsetType = UNSET
    timezoneOffsetSeconds: _Offset | UnsetType = UNSET
    background: bool | UnsetType = UNSET
    includeDefaults: bool | UnsetType = UNSET


# Every parameter of CHECKS has its field (a test holds the two lists together).
FIELDS = frozenset(Record.__struct_fields__)

_decode = msgspec.json.Decoder(Record).decode
_encode = msgspec.json.Encoder().encode
_DecodeError = msgspec.DecodeError

# A user's lines repeat their country, attributes and push subscription: each distinct
# value is checked once while it is remembered. Bounded (emptied when full, values of at
# most _CACHED_BYTES): hostile input cannot grow them past a few MB. Measured on 300k
# generated records (30k users): 8,192 values leave 15% of the lines with attributes to
# check again, in 4 MB; 4,096 leave 21%.
_CACHE_SIZE = 8192
_CACHED_BYTES = 256
_COUNTRIES: set[str] = set()
_LOCATIONS: set[str] = set()
_ATTRIBUTES: dict[bytes, bytes | None] = {}
_PUSHES: set[str] = set()
_COUNTRY, _LOCATION, _PUSH = CHECKS["country"], CHECKS["location"], CHECKS["webPushSubscription"]
_ATTRIBUTES_CHECK = CHECKS["userAttributes"]
# Plain "lat,lon" forms that are in range, each of them: a location of most records is its
# own (GPS), so a cache would not help; one that this does not match is checked in full.
_PLAIN_PLACE = re.compile(
    r"-?(?:[0-8]?[0-9](?:\.[0-9]+)?|90(?:\.0+)?),"
    r"-?(?:[0-9]{1,2}(?:\.[0-9]+)?|1[0-7][0-9](?:\.[0-9]+)?|180(?:\.0+)?)"
).fullmatch
_ATTRIBUTES_KEY = b'"userAttributes":'


def plain(data: bytes) -> bool:
    """Whether lines may take the typed pass at all: no secret or configuration name and
    no \\u escape in them (both are check_line's, as is a line's own redaction). Also
    for a whole chunk of lines at once."""
    return not may_name_secret(data)


def typed_session(raw: RawLine, later_s: float) -> Session | None:
    """The Session `check_line` makes of `raw` (with `now_s + MAX_FUTURE_S` as `later_s`),
    or None when this pass cannot say (the caller checks the line the long way).

    The line's own bytes are the body sent when nothing was normalised; else the line with
    userAttributes replaced by the string check_line makes of it.
    Why that is check_line's body, `orjson.dumps(params)`, byte for byte: the line has no
    \\u escape (`plain`), and msgspec writes every string, integer and float as orjson
    does. A JSON text is never shorter than that writing of its value: whitespace,
    a duplicate key (msgspec, like orjson, keeps the last), `-0`, `\\/`, `1.50` or
    `1.767e9` (for times of at least 1 s) each make it longer. So a line exactly as long as
    msgspec's writing of its Struct (whose raw fields are written as they were read) is
    orjson's writing of the same record, member for member, in the line's order.
    """
    data = raw.data
    if raw.truncated or data[:1] != b"{" or data[-1:] == b"\r":  # a BOM or a CR: not plain
        return None
    try:
        r = _decode(data)
    except (_DecodeError, RecursionError):  # msgspec nests as deep as Python's stack allows
        return None
    t = r.time
    if t is not UNSET and (t > later_s or (type(t) is float and t.is_integer())):
        return None  # refused, or normalised to an integer
    user_id, device_id = r.userId, r.deviceId
    if user_id is UNSET and device_id is UNSET:
        return None
    country, location, push = r.country, r.location, r.webPushSubscription
    if ((country is not UNSET and country not in _COUNTRIES
         and not _good(country, _COUNTRY, _COUNTRIES))
            or (location is not UNSET and not _PLAIN_PLACE(location)
                and location not in _LOCATIONS and not _good(location, _LOCATION, _LOCATIONS))
            or (push is not UNSET and push not in _PUSHES and not _good(push, _PUSH, _PUSHES))):
        return None
    if len(_encode(r)) != len(data):  # not compact, or written unlike orjson: see above
        return None
    body = data
    if r.userAttributes is not UNSET:
        spliced = _splice(data, _ATTRIBUTES_KEY, r.userAttributes, _ATTRIBUTES_CHECK,
                          _ATTRIBUTES)
        if spliced is None:
            return None
        body = spliced
    return Session(raw.file, raw.line_no, user_id or None, device_id or None, body, data,
                   None if t is UNSET else t)


def _good(value: str, check: Check, good: set[str]) -> bool:
    """Whether `check` sends `value` as it is (remembered when so and short)."""
    if check(value) is not value:
        return False
    if len(value) <= _CACHED_BYTES:
        if len(good) >= _CACHE_SIZE:
            good.clear()
        good.add(value)
    return True


def _splice(data: bytes, key: bytes, raw: Raw, check: Check,
            made: dict[bytes, bytes | None]) -> bytes | None:
    """`data` with the value `raw` of `key` replaced by what `check` makes of it, as JSON;
    None when the check finds a problem or the value is not where it should be. (A key
    cannot occur inside a string, where its quotes would be escaped; once is as a key.)"""
    text = bytes(raw)
    at = data.find(key) + len(key)
    if not data.startswith(text, at) or data.count(key) != 1:
        return None
    value = made.get(text, b"")
    if value == b"":
        value = _made(text, check)
        if len(text) <= _CACHED_BYTES:
            if len(made) >= _CACHE_SIZE:
                made.clear()
            made[text] = value
    return None if value is None else data[:at] + value + data[at + len(text):]


def _made(text: bytes, check: Check) -> bytes | None:
    try:
        out: Any = check(orjson.loads(text))
    except orjson.JSONDecodeError:  # deeper or larger than orjson reads: check_line's to say
        return None
    # An exact-size copy: orjson's output keeps ~8 KB of spare room, and this one is kept.
    return None if type(out) is Problem else bytes(memoryview(orjson.dumps(out)))
