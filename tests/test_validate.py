"""Tables for `parse_line`: every field's valid and invalid forms, every failure kind, secrets."""

from __future__ import annotations

import ast
import copy
import io
import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from replayer.records import CONFIG_FIELDS, RawLine, RecordFailure, Session, line_body
from replayer.source.generate import write_records
from replayer.source.validate import VALIDATION_KINDS, parse_line
from tests.conftest import DATA

REPO = Path(__file__).resolve().parents[1]
SECRET = "sample-secret-do-not-echo"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
MB10 = 10 * 1024 * 1024


def line(value: Any) -> bytes:
    # json, not orjson: it can write the deeply nested cases (orjson stops at 255 levels).
    return value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False).encode()


def parse(value: Any, **options: Any) -> Session | RecordFailure:
    return parse_line(RawLine("in.ndjson", 7, line(value)), **options)


def session(value: Any, **options: Any) -> Session:
    result = parse(value, **options)
    assert isinstance(result, Session), result
    return result


def failure(value: Any, **options: Any) -> RecordFailure:
    result = parse(value, **options)
    assert isinstance(result, RecordFailure), result
    return result


def assert_no_secret(result: RecordFailure) -> None:
    assert SECRET not in str(result)
    assert SECRET not in repr(result)
    for text in (result.message, result.raw or "", orjson.dumps(result.record).decode()):
        assert SECRET not in text


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# --- one line per failure kind: the whole closed set is covered ------------------------------

KIND_CASES: list[tuple[str, RawLine, str]] = [
    ("line_too_long", RawLine("f", 1, b'{"userId":"u1"', truncated=True), "limit"),
    ("invalid_utf8", RawLine("f", 1, b'{"userId":"u\xff1"}'), "UTF-8"),
    ("invalid_json", RawLine("f", 1, b'{"userId":"u1",}'), "JSON"),
    ("not_an_object", RawLine("f", 1, b'["u1", 1767225600]'), "array"),
    ("secret_field", RawLine("f", 1, line({"userId": "u1", "clientKey": SECRET})), "clientKey"),
    ("config_field", RawLine("f", 1, line({"userId": "u1", "appId": "app_1"})), "appId"),
    ("unknown_field", RawLine("f", 1, line({"userId": "u1", "event": "buy"})), '"event"'),
    ("missing_user_id", RawLine("f", 1, line({"time": T0})), "userId/deviceId"),
    ("id_too_long", RawLine("f", 1, line({"userId": "u" * 401})), "401 characters"),
    ("wrong_type", RawLine("f", 1, line({"userId": "u1", "devMode": "true"})), "devMode"),
    ("invalid_value", RawLine("f", 1, line({"userId": "u1", "country": "USA"})), "country"),
    (
        "invalid_attribute_name",
        RawLine("f", 1, line({"userId": "u1", "userAttributes": {"a,b": 1}})),
        '"a,b"',
    ),
    ("invalid_time", RawLine("f", 1, line({"userId": "u1", "time": T0 * 1000})), "milliseconds"),
]


def test_kind_table_covers_every_kind_in_order() -> None:
    assert tuple(kind for kind, _, _ in KIND_CASES) == VALIDATION_KINDS


@pytest.mark.parametrize(("kind", "raw", "fragment"), KIND_CASES, ids=[c[0] for c in KIND_CASES])
def test_each_kind(kind: str, raw: RawLine, fragment: str) -> None:
    result = parse_line(raw)
    assert isinstance(result, RecordFailure)
    assert (result.kind, result.file, result.line_no) == (kind, "f", 1)
    assert fragment in result.message
    # Exactly one of record / raw, and a failure row can always be written back as JSON.
    assert (result.record is None) != (result.raw is None)
    orjson.dumps(result.record)
    assert_no_secret(result)


# --- valid forms of every field, and what is sent ---------------------------------------------

STRING_FIELDS = [
    "appVersion",
    "systemName",
    "systemVersion",
    "browserName",
    "browserVersion",
    "deviceName",
    "deviceModel",
    "iosPushToken",
    "gcmRegistrationId",
    "locale",
    "region",
    "city",
    "timezone",
]

VALID_FIELDS: list[tuple[str, str, Any, Any]] = [
    *[(f"{name}-text", name, "some text é", "some text é") for name in STRING_FIELDS],
    ("region-detect", "region", "(detect)", "(detect)"),
    ("city-detect", "city", "(detect)", "(detect)"),
    ("city-empty", "city", "", ""),
    ("devMode-true", "devMode", True, True),
    ("devMode-false", "devMode", False, False),
    ("background-true", "background", True, True),
    ("includeDefaults-false", "includeDefaults", False, False),
    ("createDisposition-if-needed", "createDisposition", "CreateIfNeeded", "CreateIfNeeded"),
    ("createDisposition-never", "createDisposition", "CreateNever", "CreateNever"),
    ("accuracy-ip", "locationAccuracyType", "IP", "IP"),
    ("accuracy-cell", "locationAccuracyType", "CELL", "CELL"),
    ("accuracy-gps", "locationAccuracyType", "GPS", "GPS"),
    ("offset-zero", "timezoneOffsetSeconds", 0, 0),
    ("offset-min", "timezoneOffsetSeconds", -50400, -50400),
    ("offset-max", "timezoneOffsetSeconds", 50400, 50400),
    ("offset-half-hour", "timezoneOffsetSeconds", 19800, 19800),
    ("offset-integral-float", "timezoneOffsetSeconds", 3600.0, 3600),
    ("country-upper", "country", "US", "US"),
    ("country-lower", "country", "gb", "gb"),
    ("country-detect", "country", "(detect)", "(detect)"),
    ("location-sf", "location", "37.775,-122.4183", "37.775,-122.4183"),
    ("location-corner", "location", "-90,180", "-90,180"),
    ("location-integers", "location", "0,0", "0,0"),
    ("location-detect", "location", "(detect)", "(detect)"),
    (
        "push-string",
        "webPushSubscription",
        '{"endpoint": "https://e"}',
        '{"endpoint": "https://e"}',
    ),
    ("push-object", "webPushSubscription", {"endpoint": "https://e"}, '{"endpoint":"https://e"}'),
    ("attrs-object", "userAttributes", {"plan": "pro", "age": 31}, '{"plan":"pro","age":31}'),
    ("attrs-string", "userAttributes", '{ "plan" : "pro" }', '{"plan":"pro"}'),
    ("attrs-empty", "userAttributes", {}, "{}"),
    (
        "attrs-scalars-and-lists",
        "userAttributes",
        {"a": None, "b": True, "c": 1.5, "d": [1, "x", None, False], "e": []},
        '{"a":null,"b":true,"c":1.5,"d":[1,"x",null,false],"e":[]}',
    ),
    (
        "attrs-legal-names",
        "userAttributes",
        {"a/b": 1, "a.b": 2, "1a": 3, "é": 4, "x" * 139: 5, "a-b": 6, "_": 7},
        orjson.dumps(
            {"a/b": 1, "a.b": 2, "1a": 3, "é": 4, "x" * 139: 5, "a-b": 6, "_": 7}
        ).decode(),
    ),
    ("userId-400", "userId", "u" * 400, "u" * 400),
    (
        "deviceId",
        "deviceId",
        "B31C6C4A-F5D6-430F-A1CE-386977FFF6B6",
        "B31C6C4A-F5D6-430F-A1CE-386977FFF6B6",
    ),
]


@pytest.mark.parametrize(
    ("field", "value", "sent"), [c[1:] for c in VALID_FIELDS], ids=[c[0] for c in VALID_FIELDS]
)
def test_valid_field(field: str, value: Any, sent: Any) -> None:
    result = session({"userId": "u1", field: value})
    assert result.params[field] == sent
    assert result.record == {"userId": "u1", field: value}  # the object as read


# --- invalid forms of every field -------------------------------------------------------------

INVALID_FIELDS: list[tuple[str, str, Any, str, str]] = [
    *[(f"{name}-number", name, 5, "wrong_type", "must be a string") for name in STRING_FIELDS],
    ("appVersion-null", "appVersion", None, "wrong_type", "got null"),
    ("city-object", "city", {"name": "x"}, "wrong_type", "got an object"),
    ("devMode-string", "devMode", "true", "wrong_type", 'got string "true"'),
    ("devMode-int", "devMode", 1, "wrong_type", "JSON boolean"),
    ("background-null", "background", None, "wrong_type", "JSON boolean"),
    ("includeDefaults-zero", "includeDefaults", 0, "wrong_type", "JSON boolean"),
    ("createDisposition-other", "createDisposition", "Always", "invalid_value", "CreateNever"),
    ("createDisposition-bool", "createDisposition", True, "wrong_type", "one of"),
    ("accuracy-wifi", "locationAccuracyType", "WIFI", "invalid_value", "IP or CELL or GPS"),
    ("accuracy-lower", "locationAccuracyType", "gps", "invalid_value", '"gps"'),
    ("offset-over", "timezoneOffsetSeconds", 50401, "invalid_value", "±50400"),
    ("offset-under", "timezoneOffsetSeconds", -50401, "invalid_value", "±50400"),
    ("offset-fraction", "timezoneOffsetSeconds", 3600.5, "invalid_value", "whole seconds"),
    ("offset-string", "timezoneOffsetSeconds", "3600", "wrong_type", "integer"),
    ("offset-bool", "timezoneOffsetSeconds", True, "wrong_type", "got boolean true"),
    ("country-three", "country", "USA", "invalid_value", "alpha-2"),
    ("country-digit", "country", "U1", "invalid_value", "alpha-2"),
    ("country-empty", "country", "", "invalid_value", "alpha-2"),
    ("country-non-ascii", "country", "ÜS", "invalid_value", "alpha-2"),
    ("country-number", "country", 1, "wrong_type", "string"),
    ("location-lat", "location", "91,0", "invalid_value", "lat in [-90, 90]"),
    ("location-lon", "location", "0,-180.5", "invalid_value", "lon in [-180, 180]"),
    ("location-words", "location", "here", "invalid_value", '"here"'),
    ("location-three", "location", "1,2,3", "invalid_value", "lat,lon"),
    ("location-one", "location", "37.7", "invalid_value", "lat,lon"),
    ("location-nan", "location", "nan,nan", "invalid_value", "lat,lon"),
    ("location-inf", "location", "inf,0", "invalid_value", "lat,lon"),
    ("location-empty", "location", "", "invalid_value", "lat,lon"),
    ("location-array", "location", [37.7, -122.4], "wrong_type", "got an array"),
    ("push-not-json", "webPushSubscription", "endpoint=x", "invalid_value", "JSON object"),
    ("push-array", "webPushSubscription", "[1]", "invalid_value", "JSON object"),
    ("push-number", "webPushSubscription", 5, "wrong_type", "JSON object"),
    ("attrs-array", "userAttributes", [1], "wrong_type", "object"),
    ("attrs-string-array", "userAttributes", "[1]", "invalid_value", "JSON object"),
    ("attrs-bad-string", "userAttributes", "plan=pro", "invalid_value", "JSON object"),
    ("attrs-nested", "userAttributes", {"a": {"b": 1}}, "invalid_value", 'value of "a"'),
    ("attrs-list-of-list", "userAttributes", {"a": [[1]]}, "invalid_value", 'value of "a"'),
    ("userId-number", "userId", 5, "wrong_type", "userId: must be a string"),
    ("userId-401", "userId", "u" * 401, "id_too_long", "userId: 401 characters"),
    ("deviceId-401", "deviceId", "d" * 401, "id_too_long", "deviceId: 401 characters"),
]


@pytest.mark.parametrize(
    ("field", "value", "kind", "fragment"),
    [c[1:] for c in INVALID_FIELDS],
    ids=[c[0] for c in INVALID_FIELDS],
)
def test_invalid_field(field: str, value: Any, kind: str, fragment: str) -> None:
    record = (
        {"userId": "u1", field: value} if field != "userId" else {field: value, "deviceId": "d"}
    )
    result = failure(record)
    assert result.kind == kind
    assert result.message.startswith(f"{field}: ")
    assert fragment in result.message
    assert result.record == record


BAD_ATTRIBUTE_NAMES: list[tuple[str, str, str]] = [
    ("empty", "", "1 to 139"),
    ("too-long", "x" * 140, "1 to 139"),
    ("huge", "x" * 100_000, "1 to 139"),
    ("leading-dot", ".a", "start with"),
    ("leading-dash", "-a", "start with"),
    ("trailing-slash", "a/", "end with /"),
    ("comma", "a,b", "must not contain"),
    ("pipe", "a|b", "must not contain"),
    ("quote", 'a"b', "must not contain"),
    ("brace", "a{b", "must not contain"),
    ("tab", "a\tb", "must not contain"),
    ("newline", "a\nb", "must not contain"),
    ("carriage-return", "a\rb", "must not contain"),
    ("integer", "123", "numeric"),
    ("decimal", "1.5", "numeric"),
    ("exponent", "1e5", "numeric"),
    ("plus-sign", "+7", "numeric"),
    ("padded-number", " 42 ", "numeric"),
]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [c[1:] for c in BAD_ATTRIBUTE_NAMES],
    ids=[c[0] for c in BAD_ATTRIBUTE_NAMES],
)
def test_invalid_attribute_name(name: str, fragment: str) -> None:
    for attributes in ({name: 1}, orjson.dumps({name: 1}).decode()):
        result = failure({"userId": "u1", "userAttributes": attributes})
        assert result.kind == "invalid_attribute_name"
        assert fragment in result.message
        assert len(result.message) < 300  # a huge name is quoted in part only


def test_push_subscription_too_deep_to_encode() -> None:
    result = failure({"userId": "u1", "webPushSubscription": {"a": deep(300)}})
    assert (result.kind, result.message) == (
        "invalid_value",
        "webPushSubscription: object nested too deeply to encode",
    )
    # orjson could not write the record back into a failure row, so the text stands in.
    assert result.record is None and result.raw is not None


def test_attribute_name_and_value_problems_are_both_named() -> None:
    result = failure({"userId": "u1", "userAttributes": {"1": {"x": 1}, "ok": 2}})
    assert result.kind == "invalid_attribute_name"
    assert 'name "1" must not be numeric' in result.message
    assert 'value of "1"' in result.message


# --- user and device IDs ----------------------------------------------------------------------

ID_CASES: list[tuple[str, dict[str, Any], str | None, str | None]] = [
    ("user-only", {"userId": "u1"}, "u1", None),
    ("device-only", {"deviceId": "d1"}, None, "d1"),
    ("both", {"userId": "u1", "deviceId": "d1"}, "u1", "d1"),
    ("empty-user-means-device", {"userId": "", "deviceId": "d1"}, None, "d1"),
    ("empty-device-ignored", {"userId": "u1", "deviceId": ""}, "u1", None),
]


@pytest.mark.parametrize(
    ("record", "user_id", "device_id"), [c[1:] for c in ID_CASES], ids=[c[0] for c in ID_CASES]
)
def test_ids(record: dict[str, Any], user_id: str | None, device_id: str | None) -> None:
    result = session(record)
    assert (result.user_id, result.device_id) == (user_id, device_id)
    assert result.lane == (user_id or device_id)
    # A blank ID is absent: it is not sent.
    assert result.params.get("userId") == user_id
    assert result.params.get("deviceId") == device_id


MISSING_CASES: list[tuple[str, dict[str, Any]]] = [
    ("empty-object", {}),
    ("no-ids", {"time": T0, "city": "Paris"}),
    ("empty-user", {"userId": ""}),
    ("both-empty", {"userId": "", "deviceId": ""}),
]


@pytest.mark.parametrize("record", [c[1] for c in MISSING_CASES], ids=[c[0] for c in MISSING_CASES])
def test_missing_user_id(record: dict[str, Any]) -> None:
    assert failure(record).kind == "missing_user_id"


def test_an_id_of_the_wrong_type_is_named_not_reported_missing() -> None:
    result = failure({"userId": None})
    assert result.kind == "wrong_type"
    assert "missing" not in result.message and "required" not in result.message


def test_failure_carries_the_valid_ids() -> None:
    result = failure({"userId": "u1", "deviceId": "d1", "country": "USA"})
    assert (result.user_id, result.device_id) == ("u1", "d1")
    result = failure({"userId": "u" * 401, "deviceId": "d1"})
    assert (result.user_id, result.device_id) == (None, "d1")


# --- time -------------------------------------------------------------------------------------

TIME_CASES: list[tuple[str, Any, int | float]] = [
    ("int", T0, T0),
    ("integral-float", float(T0), T0),
    ("fraction", T0 + 0.25, T0 + 0.25),
    ("iso-z", "2026-01-01T00:00:00Z", T0),
    ("iso-offset", "2026-01-01T01:00:00+01:00", T0),
    ("iso-negative-offset", "2025-12-31T19:00:00-05:00", T0),
    ("iso-naive-is-utc", "2026-01-01T00:00:00", T0),
    ("iso-millis", "2026-01-01T00:00:00.500Z", T0 + 0.5),
    ("iso-space", "2026-01-01 00:00:00+00:00", T0),
    ("iso-date", "2026-01-01", T0),
    ("early", 1, 1),
]


@pytest.mark.parametrize(
    ("value", "seconds"), [c[1:] for c in TIME_CASES], ids=[c[0] for c in TIME_CASES]
)
def test_time_is_normalised_to_unix_seconds(value: Any, seconds: float) -> None:
    sent = session({"userId": "u1", "time": value}).params["time"]
    assert sent == seconds
    assert type(sent) is type(seconds)


BAD_TIME_CASES: list[tuple[str, Any, str, str]] = [
    ("milliseconds", T0 * 1000, "invalid_time", "looks like milliseconds"),
    ("microseconds", T0 * 1_000_000, "invalid_time", "looks like milliseconds"),
    ("float-milliseconds", T0 * 1000 + 0.5, "invalid_time", "looks like milliseconds"),
    ("zero", 0, "invalid_time", "after 1970"),
    ("negative", -5, "invalid_time", "after 1970"),
    ("iso-before-1970", "1969-12-31T23:59:59Z", "invalid_time", "after 1970"),
    ("words", "yesterday", "invalid_time", "ISO-8601"),
    ("numeric-string", "1767225600", "invalid_time", "ISO-8601"),
    ("long-string", "2026-01-01T00:00:00Z" + " " * 100, "invalid_time", "ISO-8601"),
    ("bool", True, "wrong_type", "UNIX seconds"),
    ("null", None, "wrong_type", "UNIX seconds"),
    ("array", [T0], "wrong_type", "UNIX seconds"),
]


@pytest.mark.parametrize(
    ("value", "kind", "fragment"),
    [c[1:] for c in BAD_TIME_CASES],
    ids=[c[0] for c in BAD_TIME_CASES],
)
def test_bad_time(value: Any, kind: str, fragment: str) -> None:
    result = failure({"userId": "u1", "time": value})
    assert (result.kind, result.message.startswith("time: ")) == (kind, True)
    assert fragment in result.message


FUTURE_CASES: list[tuple[str, Any, float | None, bool]] = [
    ("no-clock-no-check", T0 + 10 * 86400, None, True),
    ("within-a-day", T0 + 86400, T0, True),
    ("past", T0 - 86400, T0, True),
    ("over-a-day", T0 + 86401, T0, False),
    ("iso-over-a-day", "2026-01-03T00:00:00Z", T0, False),
]


@pytest.mark.parametrize(
    ("value", "now_s", "ok"), [c[1:] for c in FUTURE_CASES], ids=[c[0] for c in FUTURE_CASES]
)
def test_future_time(value: Any, now_s: float | None, ok: bool) -> None:
    result = parse({"userId": "u1", "time": value}, now_s=now_s)
    if ok:
        assert isinstance(result, Session)
    else:
        assert isinstance(result, RecordFailure)
        assert (result.kind, "in the future" in result.message) == ("invalid_time", True)


# --- line framing: BOM, CRLF, NUL, UTF-8, size ------------------------------------------------

FRAMING_CASES: list[tuple[str, bytes, str]] = [
    ("bom", b'\xef\xbb\xbf{"userId":"u1"}', "session"),
    ("crlf", b'{"userId":"u1"}\r', "session"),
    ("bom-and-crlf", b'\xef\xbb\xbf{"userId":"u1"}\r', "session"),
    ("surrounding-spaces", b'  {"userId":"u1"}  ', "session"),
    ("utf8-text", '{"userId":"u1","city":"São Paulo"}'.encode(), "session"),
    ("escaped-nul-in-string", b'{"userId":"u\\u00001"}', "session"),
    ("nul-after-object", b'{"userId":"u1"}\x00', "invalid_json"),
    ("nul-before-object", b'\x00{"userId":"u1"}', "invalid_json"),
    ("raw-nul-in-string", b'{"userId":"u\x001"}', "invalid_json"),
    ("two-crs", b'{"userId":"u1"}\r\r', "session"),  # the second CR is JSON whitespace
    ("bom-twice", b'\xef\xbb\xbf\xef\xbb\xbf{"userId":"u1"}', "invalid_json"),
    ("invalid-utf8-byte", b'{"userId":"\xc3\x28"}', "invalid_utf8"),
    ("encoded-surrogate", b'{"userId":"\xed\xa0\x80"}', "invalid_utf8"),
    ("latin1", '{"userId":"u1","city":"Zürich"}'.encode("latin-1"), "invalid_utf8"),
    ("lone-surrogate-escape", b'{"userId":"\\ud800"}', "invalid_json"),
    ("empty", b"", "invalid_json"),
    ("python-dict", b"{'userId': 'u1'}", "invalid_json"),
    ("two-objects", b'{"userId":"u1"}{"userId":"u2"}', "invalid_json"),
    ("number-too-big", b'{"userId":"u1","time":1e400}', "invalid_json"),
    ("too-deep", b"[" * 2000 + b"]" * 2000, "invalid_json"),
    ("string", b'"u1"', "not_an_object"),
    ("null", b"null", "not_an_object"),
    ("number", b"1767225600", "not_an_object"),
]


@pytest.mark.parametrize(
    ("data", "outcome"), [c[1:] for c in FRAMING_CASES], ids=[c[0] for c in FRAMING_CASES]
)
def test_framing(data: bytes, outcome: str) -> None:
    result = parse(data)
    if outcome == "session":
        assert isinstance(result, Session)
        assert result.user_id is not None
    else:
        assert isinstance(result, RecordFailure)
        assert result.kind == outcome
        assert result.record is None and result.raw is not None
        assert len(result.message) < 200


def test_invalid_json_message_is_short_and_names_the_column() -> None:
    result = failure(b'{"userId": "u1", "time": }')
    assert result.message == "not JSON: unexpected character, expected a JSON value at column 26"


def test_truncated_10mb_line_is_not_parsed() -> None:
    data = b'{"userId":"u1","city":"' + b"x" * MB10
    result = parse_line(RawLine("big.ndjson", 3, data, truncated=True))
    assert isinstance(result, RecordFailure)
    assert result.kind == "line_too_long"
    assert str(len(data)) in result.message
    assert result.raw is not None and result.raw.endswith("…[truncated]")
    assert len(result.raw) == 4096 + len("…[truncated]")


HUGE_CASES: list[tuple[str, bytes, str]] = [
    ("long-city", b'{"userId":"u1","city":"' + b"x" * MB10 + b'"}', "session"),
    (
        "long-attribute",
        b'{"userId":"u1","userAttributes":{"bio":"' + b"x" * MB10 + b'"}}',
        "session",
    ),
    (
        "many-attributes",
        line({"userId": "u1", "userAttributes": {f"a{i}": i for i in range(500_000)}}),
        "session",
    ),
    ("long-unknown", b'{"userId":"u1","note":"' + b"x" * MB10 + b'"}', "unknown_field"),
    ("long-bad-country", b'{"userId":"u1","country":"' + b"x" * MB10 + b'"}', "invalid_value"),
    ("long-bad-time", b'{"userId":"u1","time":"' + b"1" * MB10 + b'"}', "invalid_time"),
    ("long-bad-location", b'{"userId":"u1","location":"1,' + b"1" * MB10 + b'"}', "invalid_value"),
    ("long-array", b"[" + b"1," * (MB10 // 2) + b"1]", "not_an_object"),
    ("long-invalid", b'{"userId":"u1","city":"' + b"x" * MB10, "invalid_json"),
]


@pytest.mark.parametrize(
    ("data", "outcome"), [c[1:] for c in HUGE_CASES], ids=[c[0] for c in HUGE_CASES]
)
def test_huge_line_that_was_not_truncated(data: bytes, outcome: str) -> None:
    assert len(data) > 5_000_000
    result = parse(data)
    if outcome == "session":
        assert isinstance(result, Session)
        return
    assert isinstance(result, RecordFailure)
    assert result.kind == outcome
    assert len(result.message) < 500  # offending values are quoted in part only
    if result.raw is not None:
        assert result.raw.endswith("…[truncated]") and len(result.raw) < 4200


def test_raw_text_is_cut_at_4096_characters() -> None:
    text = "é" * 5000
    result = failure(f'{{"userId": "{text}"'.encode())
    assert result.raw == ('{"userId": "' + text)[:4096] + "…[truncated]"
    short = failure(b'{"userId": "u1"')
    assert short.raw == '{"userId": "u1"'


def test_invalid_utf8_raw_text_is_decoded_with_replacement() -> None:
    result = failure(b'{"userId":"u\xff1"}')
    assert result.raw == '{"userId":"u\ufffd1"}'
    assert result.message == "not valid UTF-8 at byte 12"


# --- secrets never reach a failure ------------------------------------------------------------

SECRET_CASES: list[tuple[str, bytes, str]] = [
    ("field", line({"userId": "u1", "clientKey": SECRET}), "secret_field"),
    ("field-with-others", line({"clientKey": SECRET, "appId": "a", "x": 1}), "secret_field"),
    ("field-in-bad-record", line({"userId": 5, "clientKey": SECRET, "time": "x"}), "secret_field"),
    ("other-case-key", line({"userId": "u1", "ClientKey": SECRET}), "secret_field"),
    ("unterminated", f'{{"userId":"u1","clientKey":"{SECRET}'.encode(), "invalid_json"),
    ("trailing-comma", f'{{"clientKey": "{SECRET}",}}'.encode(), "invalid_json"),
    ("single-quotes", f"{{'clientKey': '{SECRET}', 'userId': 'u1'}}".encode(), "invalid_json"),
    ("bare-value", f'{{"clientKey": {SECRET}}}'.encode(), "invalid_json"),
    ("query-string", f"action=start&clientKey={SECRET}&userId=u1".encode(), "invalid_json"),
    ("escaped-quote", f'{{"clientKey":"a\\"{SECRET}"'.encode(), "invalid_json"),
    ("with-nul", f'{{"clientKey":"{SECRET}"}}\x00'.encode(), "invalid_json"),
    ("invalid-utf8", f'{{"clientKey":"{SECRET}","city":"\xff"}}'.encode("latin-1"), "invalid_utf8"),
    ("double-encoded", orjson.dumps(orjson.dumps({"clientKey": SECRET}).decode()), "not_an_object"),
    ("array-pair", line(["clientKey", SECRET]), "not_an_object"),
    ("object-in-array", line([{"userId": "u1", "clientKey": SECRET}]), "not_an_object"),
    ("too-deep-to-write-back", line({"clientKey": SECRET, "x": deep(300)}), "secret_field"),
    (
        "at-the-cut",
        b'{"note":"' + b"x" * 4070 + f'","clientKey":"{SECRET}"}}'.encode() + b"!",
        "invalid_json",
    ),
]


@pytest.mark.parametrize(
    ("data", "kind"), [c[1:] for c in SECRET_CASES], ids=[c[0] for c in SECRET_CASES]
)
def test_secret_is_never_echoed(data: bytes, kind: str) -> None:
    for raw in (RawLine("f", 1, data), RawLine("f", 1, data, truncated=True)):
        result = parse_line(raw, allow_unknown_fields=False)
        assert isinstance(result, RecordFailure)
        assert result.kind == (kind if not raw.truncated else "line_too_long")
        assert_no_secret(result)


def test_secret_is_replaced_in_the_failure_record() -> None:
    result = failure({"userId": "u1", "clientKey": SECRET, "city": "Paris"})
    assert result.record == {"userId": "u1", "clientKey": "[redacted]", "city": "Paris"}
    assert result.message == "clientKey: a secret belongs in settings, not in records"
    assert result.user_id == "u1"


def test_record_too_deep_to_write_back_is_kept_as_redacted_text() -> None:
    nested = "[" * 300 + "]" * 300
    data = f'{{"userId":"u1","clientKey":"{SECRET}","x":{nested}}}'.encode()
    result = failure(data)
    assert result.kind == "secret_field"
    assert result.record is None
    assert result.raw == f'{{"userId":"u1","clientKey":"[redacted]","x":{nested}}}'


# --- configuration, unknown fields, several problems ------------------------------------------


@pytest.mark.parametrize("field", ["appId", "apiVersion"], ids=["appId", "apiVersion"])
def test_config_field(field: str) -> None:
    result = failure({"userId": "u1", field: "1.0.6"})
    assert result.kind == "config_field"
    assert result.message.startswith(f"{field}: ")
    assert result.record == {"userId": "u1", field: "[redacted]"}  # issue 9: redacted too


UNKNOWN_CASES: list[tuple[str, bool, str]] = [
    ("rejected", False, 'unknown field(s), not start parameters: "action", "event", "zeta"'),
    ("passed-through", True, ""),
]


@pytest.mark.parametrize(
    ("allow", "message"), [c[1:] for c in UNKNOWN_CASES], ids=[c[0] for c in UNKNOWN_CASES]
)
def test_unknown_fields(allow: bool, message: str) -> None:
    record = {"zeta": 1, "userId": "u1", "event": {"name": "buy"}, "action": "start"}
    result = parse(record, allow_unknown_fields=allow)
    if allow:
        assert isinstance(result, Session)
        assert result.params == record
        assert result.params["event"] == result.record["event"]  # passed as read
    else:
        assert isinstance(result, RecordFailure)
        assert (result.kind, result.message) == ("unknown_field", message)


def test_unknown_fields_flag_keeps_config_and_secrets_out() -> None:
    result = failure({"userId": "u1", "appId": "a", "x": 1}, allow_unknown_fields=True)
    assert result.kind == "config_field"


def test_unknown_field_too_deep_to_send_is_rejected() -> None:
    result = failure({"userId": "u1", "x": deep(300)}, allow_unknown_fields=True)
    assert (result.kind, result.message) == ("invalid_value", '"x": nested too deeply')


def test_every_problem_is_reported_in_kind_order() -> None:
    record = {
        "time": T0 * 1000,
        "country": "USA",
        "devMode": "yes",
        "zz": 1,
        "aa": 2,
        "appId": "a",
        "userAttributes": {"-x": 1},
        "userId": "u" * 401,
    }
    result = failure(record)
    assert result.kind == "config_field"
    assert result.message.split("; ") == [
        "appId: configuration belongs in settings, not records",
        'unknown field(s), not start parameters: "aa", "zz"',
        "userId: 401 characters, at most 400",
        'devMode: must be a JSON boolean, got string "yes"',
        'country: must be an ISO 3166-1 alpha-2 code or (detect), got "USA"',
        'userAttributes: name "-x" must not start with . or -',
        f"time: {T0 * 1000} looks like milliseconds (or finer), not UNIX seconds",
    ]


def test_a_session_keeps_the_record_as_read_and_sends_no_config() -> None:
    record = {
        "userId": "u1",
        "time": "2026-01-01T00:00:00Z",
        "userAttributes": {"plan": "pro"},
        "timezoneOffsetSeconds": 3600.0,
    }
    result = session(record)
    assert result.record == record
    assert result.record["time"] == "2026-01-01T00:00:00Z"
    assert result.params == {
        "userId": "u1",
        "time": T0,
        "userAttributes": '{"plan":"pro"}',
        "timezoneOffsetSeconds": 3600,
    }
    assert (result.file, result.line_no) == ("in.ndjson", 7)


@pytest.mark.parametrize("module", ["validate.py", "fields.py", "redact.py"])
def test_module_is_pure(module: str) -> None:
    tree = ast.parse((REPO / "replayer" / "source" / module).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert not imported & {"asyncio", "aiohttp", "os", "io", "pathlib"}
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert "open" not in calls


# --- what Leanplum's published schema says about the sessions we build -------------------------

CONFORMANT: list[tuple[str, dict[str, Any]]] = [
    ("minimal", {"userId": "hfarnsworth"}),
    (
        "every-parameter",
        {
            "userId": "hfarnsworth",
            "deviceId": "d-1",
            "devMode": False,
            "createDisposition": "CreateNever",
            "appVersion": "2.0.1",
            "systemName": "iOS",
            "systemVersion": "17.2",
            "browserName": "Chrome",
            "browserVersion": "143.0",
            "deviceName": "Hubert's phone",
            "deviceModel": "iPad",
            "iosPushToken": "ab" * 32,
            "gcmRegistrationId": "x:APA91b",
            "webPushSubscription": {"endpoint": "https://e", "keys": {"auth": "a"}},
            "userAttributes": {"gender": "F", "age": 21, "tags": ["a", "b"]},
            "locale": "en_US",
            "country": "US",
            "region": "ca",
            "city": "San Francisco",
            "location": "37.775,-122.4183",
            "locationAccuracyType": "GPS",
            "timezone": "PST",
            "timezoneOffsetSeconds": -28800.0,
            "background": False,
            "includeDefaults": True,
            "time": "2026-01-01T00:00:00Z",
        },
    ),
    ("detect", {"userId": "u", "country": "(detect)", "location": "(detect)", "city": "(detect)"}),
    ("attributes-as-string", {"userId": "u", "userAttributes": '{"gender":"F","age":21}'}),
    ("device-only", {"deviceId": "d-1", "time": T0}),
    ("blank-user-means-device", {"userId": "", "deviceId": "d-1"}),
]


def generated_records() -> list[tuple[str, dict[str, Any]]]:
    out = io.BytesIO()
    write_records(out, records=300, users=80, seed=3)
    lines = out.getvalue().splitlines()
    return [(f"generated-{i}", orjson.loads(text)) for i, text in enumerate(lines)]


SCHEMA_CASES = CONFORMANT + generated_records()


@pytest.fixture(scope="module")
def start_schema() -> dict[str, Any]:
    schema: dict[str, Any] = orjson.loads((DATA / "start-request.schema.json").read_bytes())
    return schema


@pytest.mark.parametrize(
    "record",
    [c[1] for c in SCHEMA_CASES],
    ids=[c[0] for c in SCHEMA_CASES],
)
def test_session_body_matches_published_schema(
    record: dict[str, Any], start_schema: dict[str, Any]
) -> None:
    result = session(record)
    assert not CONFIG_FIELDS & result.params.keys()
    body = {**result.params, "appId": "app_x", "clientKey": "prod_x", "apiVersion": "1.0.6"}
    schema = start_schema
    if result.user_id is None:
        # The published schema requires userId, but the same docs (and docs/leanplum-api.md) say a
        # request may carry a deviceId alone; a blank userId means "use the device ID".
        schema = copy.deepcopy(start_schema)
        schema["required"].remove("userId")
    jsonschema.validate(body, schema)


def test_sample_file_shows_each_mistake_once_and_otherwise_replays(
    start_schema: dict[str, Any],
) -> None:
    lines = (REPO / "samples" / "sessions.ndjson").read_bytes().splitlines()
    results = [parse_line(RawLine("sessions.ndjson", n, data)) for n, data in enumerate(lines, 1)]
    failures = [r for r in results if isinstance(r, RecordFailure)]
    assert Counter(f.kind for f in failures) == {
        "secret_field": 1,
        "config_field": 1,
        "invalid_json": 1,
        "not_an_object": 1,
        "unknown_field": 1,
        "missing_user_id": 1,
        "id_too_long": 1,
        "wrong_type": 1,
        "invalid_value": 2,  # a location off the globe, a country spelled out
        "invalid_attribute_name": 1,
        "invalid_time": 1,  # milliseconds
    }
    for f in failures:
        assert_no_secret(f)
    sessions = [r for r in results if isinstance(r, Session)]
    per_user: dict[str, list[float]] = defaultdict(list)
    for s in sessions:
        per_user[s.lane].append(s.params["time"])
        schema = copy.deepcopy(start_schema)
        if s.user_id is None:
            schema["required"].remove("userId")  # deviceId-only: see the test above
        jsonschema.validate(
            {**s.params, "appId": "a", "clientKey": "k", "apiVersion": "1.0.6"}, schema
        )
    assert 50 <= len(per_user) <= 70
    assert all(
        times == sorted(times) and len(set(times)) == len(times) for times in per_user.values()
    )


def test_never_raises_on_mangled_lines() -> None:
    rng = random.Random(0)
    lines = (REPO / "samples" / "sessions.ndjson").read_bytes().splitlines()
    specials = [b"\x00", b"\xff", b"\xef\xbb\xbf", b"\r", b'"', b"{", b"]", b"\\u", b"\xed\xa0\x80"]
    for _ in range(5000):
        data = bytearray(rng.choice(lines))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            action = rng.randrange(3)
            if action == 0:
                data[at:at] = rng.choice(specials)
            elif action == 1:
                del data[at : at + rng.randint(1, 20)]
            else:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 5)))
        result = parse_line(RawLine("fuzz", 1, bytes(data)), now_s=T0, allow_unknown_fields=True)
        if isinstance(result, Session):
            orjson.dumps(result.params)  # what send.py will write
        else:
            assert result.kind in VALIDATION_KINDS
            orjson.dumps(result.record)  # what the failure sink will write
            assert_no_secret(result)


@pytest.mark.parametrize(
    ("line", "body"),
    [
        (b'{"a":1}', b'{"a":1}'),
        (b'\xef\xbb\xbf{"a":1}', b'{"a":1}'),
        (b'{"a":1}\r', b'{"a":1}'),
        (b'\xef\xbb\xbf{"a":1}\r', b'{"a":1}'),
        (b'{"a":1}\r\r', b'{"a":1}\r'),  # one CR, as a CRLF file leaves it
        (b"\xef\xbb\xbf", b""),
    ],
    ids=["plain", "bom", "cr", "bom-and-cr", "two-crs", "bom-only"],
)
def test_line_body_drops_a_leading_bom_and_a_trailing_cr(line: bytes, body: bytes) -> None:
    assert bytes(line_body(line)) == body
