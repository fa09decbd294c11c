"""The typed pass (msgspec) against `check_line`: the same Session or failure for every line.

Generated records, each mutated in the ways lines go wrong (wrong types, unknown fields,
secrets at any depth, big and NaN-ish numbers, BOM and CR, bad UTF-8, escapes, whitespace,
deep nesting, duplicate keys), go through `parse_line`, `parse_lines` and `check_line`.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from replayer.output.sinks import invalid_row
from replayer.records import KeyText, RawLine, RecordFailure, Session
from replayer.source.fields import CHECKS
from replayer.source.generate import write_records
from replayer.source.typed import FIELDS, Record, typed_session
from replayer.source.validate import VALIDATION_KINDS, check_line, parse_line, parse_lines

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
NOW_S = T0 + 365 * 86400.0
OPTIONS: list[dict[str, Any]] = [
    {},
    {"now_s": NOW_S},
    {"now_s": T0 + 10 * 86400.0},  # some generated times are then in the future
    {"allow_unknown_fields": True, "now_s": NOW_S},
]


def deep_object(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def text(value: Any) -> bytes:
    """JSON text of `value`, compact; json, not orjson, for what orjson cannot write."""
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# Values of every JSON type and every edge the checks know, for any field.
VALUES: list[Any] = [
    "", "x", "u" * 400, "u" * 401, "é" * 400, "é" * 401, "😀" * 400, "😀" * 401,
    0, 1, -1, 2**31, 2**63, 2**64 - 1, 2**64, 10**30, -(10**30),
    0.0, -0.0, 0.5, 1.0, 1.5, 1e-7, 0.25, 14.5, 1e11, 1e11 + 1, 1e300,
    T0, T0 + 0.5, T0 + 0.25, float(T0), T0 * 1000, T0 * 1000.0, 100_000_000_000, 100_000_000_001,
    NOW_S + 86400.0, NOW_S + 86400.5, NOW_S + 86401,
    True, False, None, [], {}, [1], ["a", 1, None], {"a": 1}, [{"a": 1}],
    "NaN", "Infinity", "-Infinity", "nan", "1e400",
    "2026-01-01T00:00:00Z", "2026-01-01 00:00:00", "2026-01-01T00:00:00+01:00", "2026-13-01",
    "(detect)", "US", "us", "USA", "U1", "ÜS",
    "12,34", "91,0", "90,180", "-90,-180", "90.0,180.0", "90.5,0", "0,180.01", "1e1,2", " 1,2",
    "nan,nan", "inf,0", "1_0,2", "12", "12,34,56", "-0,-0", "00.5,005", "١,٢",
    "CreateNever", "CreateIfNeeded", "GPS", "gps", "IP", "CELL",
    50400, 50401, -50400, -50401, 50400.0, 3600.5, -28800,
    '{"a":1}', '{"a":[1,{}]}', "[]", '{"endpoint":"https://e/x?a=b","keys":{"auth":"a"}}',
    {"endpoint": "https://e", "keys": {"auth": "a"}}, {"a": deep_object(300)},
    "clientKey=abc", "the appId: app_1", '{"apiVersion":"1.0.6"}',
    "\u0000", 'a"b', "a\\b", "a/b", "\b\f\n\r\t", "\u2028", "\x7f", "\ud7ff", "\ufeff",
    "prod_key_123",
]
UNKNOWN = ["event", "clientKey", "ClientKey", "APPID", "apiVersion", "userid", "time ", "",
           "clientKey=1", "x\\u0063"]
ATTRIBUTE_NAMES = ["plan", "age", "a,b", ".x", "-x", "x/", "12", "1e5", " 3 ", "", "n" * 139,
                   "n" * 140, "tab\t", "clientKey", "appId", "ok.name", "é"]
ATTRIBUTE_VALUES: list[Any] = ["pro", 1, 1.5, True, None, ["a", 2], [["x"]], {"a": 1}, 10**30,
                               "apiVersion=2", []]


def attributes(rng: random.Random) -> Any:
    found = {rng.choice(ATTRIBUTE_NAMES): rng.choice(ATTRIBUTE_VALUES)
             for _ in range(rng.randint(0, 4))}
    return text(found).decode() if rng.random() < 0.2 else found


# --- mutations: a record (and the rng) -> the line's bytes --------------------------------

Mutation = Callable[[random.Random, dict[str, Any]], bytes]


def unchanged(rng: random.Random, record: dict[str, Any]) -> bytes:
    return text(record)


def set_field(rng: random.Random, record: dict[str, Any]) -> bytes:
    key = rng.choice([*CHECKS, *UNKNOWN]) if rng.random() < 0.9 else rng.choice(UNKNOWN)
    record[key] = rng.choice(VALUES)
    return text(record)


def drop_field(rng: random.Random, record: dict[str, Any]) -> bytes:
    for _ in range(rng.randint(1, 3)):
        if record:
            del record[rng.choice(list(record))]
    return text(record)


def drop_ids(rng: random.Random, record: dict[str, Any]) -> bytes:
    for key in ("userId", "deviceId"):
        if rng.random() < 0.7:
            record.pop(key, None)
        elif rng.random() < 0.5:
            record[key] = ""
    return text(record)


def long_id(rng: random.Random, record: dict[str, Any]) -> bytes:
    """IDs about the limit of 400 characters (not bytes) long, in 1- to 4-byte characters."""
    record[rng.choice(["userId", "deviceId"])] = rng.choice("aé東😀") * rng.randint(398, 402)
    return text(record)


def set_attributes(rng: random.Random, record: dict[str, Any]) -> bytes:
    record["userAttributes"] = attributes(rng)
    return text(record)


def nested_secret(rng: random.Random, record: dict[str, Any]) -> bytes:
    name = rng.choice(["clientKey", "appId", "apiVersion", "CLIENTKEY", "appid"])
    place = rng.randrange(4)
    if place == 0:
        record["userAttributes"] = {"plan": "x", name: "s3cr3t"}
    elif place == 1:
        record["webPushSubscription"] = {"endpoint": "https://e", "keys": {name: "s3cr3t"}}
    elif place == 2:
        record[rng.choice(list(CHECKS))] = f"{name}=s3cr3t"
    else:
        record["userAttributes"] = json.dumps({"a": {name: 1}})
    return text(record)


def reorder(rng: random.Random, record: dict[str, Any]) -> bytes:
    items = list(record.items())
    rng.shuffle(items)
    return text(dict(items))


def duplicate_key(rng: random.Random, record: dict[str, Any]) -> bytes:
    if not record:
        return b"{}"
    key = rng.choice(list(record))
    value = record[key] if rng.random() < 0.3 else rng.choice(VALUES)
    member = text({key: value})[1:-1]
    line = text(record)
    if rng.random() < 0.5:
        return b"{" + member + b"," + line[1:]
    return line[:-1] + b"," + member + b"}"


def whitespace(rng: random.Random, record: dict[str, Any]) -> bytes:
    line = text(record)
    spaced = json.dumps(record, ensure_ascii=False).encode()  # ", " and ": "
    return rng.choice([b" " + line, line + b" ", line + b"\t", spaced, line.replace(b'":', b'" :', 1),
                       line.replace(b",", b",\r", 1), b"{ " + line[1:]])


def escapes(rng: random.Random, record: dict[str, Any]) -> bytes:
    line = text(record)
    choice = rng.randrange(5)
    if choice == 0:
        return line.replace(b"/", b"\\/", 1)
    if choice == 1:
        return line.replace(b"u", b"\\u0075", 1)  # a key or a value spelled with an escape
    if choice == 2:
        return line.replace(b'"userId":"', b'"userId":"\\u00E9', 1)
    if choice == 3:
        return line.replace(b'"userId":"', b'"userId":"\\ud83d\\ude00', 1)
    return line.replace(b'"userId":"', b'"userId":"\\ud800', 1)  # a lone surrogate


def framing(rng: random.Random, record: dict[str, Any]) -> bytes:
    line = text(record)
    return rng.choice([b"\xef\xbb\xbf" + line, line + b"\r", b"\xef\xbb\xbf" + line + b"\r",
                       line + b"\r\r", b"\r" + line, line + b"\x00", line + line, line[:-1],
                       b"[" + line + b"]", line + b",", b"\xef\xbb\xbf"])


def bad_utf8(rng: random.Random, record: dict[str, Any]) -> bytes:
    line = text(record)
    bad = rng.choice([b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82", b"\x80"])
    at = line.find(b'":"') + 3 if rng.random() < 0.8 else rng.randrange(len(line) + 1)
    return line[:at] + bad + line[at:]


def number_spelling(rng: random.Random, record: dict[str, Any]) -> bytes:
    seconds = record.get("time", T0 + 0.5)
    spelled = rng.choice([
        f"{seconds}0", f"{float(seconds):e}", f"{float(seconds):E}", "-0", "0.0", "-0.0",
        "1767225600.0", "1767225600.50", "1.7672256005e9", "17672256005E-1", "1767225600e0",
        "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "123456789012345678901234567890",
        "01", "+1", ".5", "1.", "0x10", "1767225600.125",
    ])
    key = rng.choice(["time", "time", "timezoneOffsetSeconds", "devMode", "userId"])
    record[key] = 0
    return text(record).replace(f'"{key}":0'.encode(), f'"{key}":{spelled}'.encode(), 1)


def deep_nesting(rng: random.Random, record: dict[str, Any]) -> bytes:
    """Arrays or objects nested 10 to 1100 levels (spelled out: no encoder writes them)."""
    levels = rng.choice([10, 254, 255, 256, 300, 1023, 1024, 1025, 1100])
    key = rng.choice(["userAttributes", "webPushSubscription", "event", "deviceName"])
    nested = rng.choice([b"[" * levels + b"1" + b"]" * levels,
                         b'{"a":' * levels + b"1" + b"}" * levels,
                         b'{"x":' + b"[" * levels + b"]" * levels + b"}"])
    record[key] = 0
    return text(record).replace(f'"{key}":0'.encode(), f'"{key}":'.encode() + nested, 1)


def mangle(rng: random.Random, record: dict[str, Any]) -> bytes:
    data = bytearray(text(record))
    specials = [b"\x00", b"\xff", b"\xef\xbb\xbf", b"\r", b'"', b"{", b"]", b"\\u", b"\\", b",",
                b":", b" "]
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data) + 1)
        action = rng.randrange(3)
        if action == 0:
            data[at:at] = rng.choice(specials)
        elif action == 1:
            del data[at : at + rng.randint(1, 8)]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
    return bytes(data)


MUTATIONS: list[Mutation] = [
    unchanged, unchanged, unchanged, set_field, set_field, set_field, drop_field, drop_ids,
    long_id, set_attributes, nested_secret, reorder, duplicate_key, whitespace, escapes, framing,
    bad_utf8, number_spelling, deep_nesting, mangle,
]


def every_parameter() -> dict[str, Any]:
    return {
        "userId": "hfarnsworth", "deviceId": "d-1", "devMode": False,
        "createDisposition": "CreateNever", "appVersion": "2.0.1", "systemName": "iOS",
        "systemVersion": "17.2", "browserName": "Chrome", "browserVersion": "143.0",
        "deviceName": "Hubert's \"phone\"\\ /\t", "deviceModel": "iPad", "iosPushToken": "ab" * 32,
        "gcmRegistrationId": "x:APA91b", "webPushSubscription": '{"endpoint":"https://e"}',
        "userAttributes": {"gender": "F", "age": 21, "tags": ["a", "b"]}, "locale": "en_US",
        "country": "US", "region": "ca", "city": "Zürich 東京", "location": "37.775,-122.4183",
        "locationAccuracyType": "GPS", "timezone": "PST", "timezoneOffsetSeconds": -28800,
        "background": False, "includeDefaults": True, "time": T0 + 0.125,
    }


def base_records() -> list[dict[str, Any]]:
    out = io.BytesIO()
    write_records(out, records=400, users=60, seed=11)
    generated = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return [*generated, every_parameter(), {"userId": "u"}, {"deviceId": "d", "time": T0}]


def lines(count: int, seed: int) -> list[RawLine]:
    rng = random.Random(seed)
    records = base_records()
    made = []
    for n in range(1, count + 1):
        record = dict(rng.choice(records))
        mutation = rng.choice(MUTATIONS)
        data = mutation(rng, record)
        if rng.random() < 0.3 and mutation is not deep_nesting:  # a second one on top
            try:
                again = orjson.loads(data)
            except orjson.JSONDecodeError:
                again = None
            if type(again) is dict:
                data = rng.choice(MUTATIONS)(rng, again)
        made.append(RawLine("in.ndjson", n, data, truncated=rng.random() < 0.005))
    return made


def same(typed: Session | RecordFailure, checked: Session | RecordFailure) -> bool:
    """Equal, and of the same types where == would let 1 == 1.0 or True == 1 pass."""
    if typed != checked or type(typed) is not type(checked):
        return False
    if isinstance(typed, Session) and isinstance(checked, Session):
        return type(typed.time_s) is type(checked.time_s)
    return True


def fits_in_its_row(parsed: Session | RecordFailure) -> None:
    """The row a result may end in can be written (no traceback at the sink)."""
    if isinstance(parsed, Session):
        orjson.dumps({"record": parsed.record, "params": parsed.params})  # a sent one that failed
    else:
        orjson.dumps(invalid_row(parsed))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_typed_pass_gives_check_lines_verdict_for_every_line(seed: int) -> None:
    raws = lines(4000, seed)
    typed_taken = sessions = 0
    for options in OPTIONS:
        checked = [check_line(raw, **options) for raw in raws]
        one_by_one = [parse_line(raw, **options) for raw in raws]
        in_chunks = [p for at in range(0, len(raws), 700)
                     for p in parse_lines(raws[at:at + 700], **options)]
        for raw, want, got, chunked in zip(raws, checked, one_by_one, in_chunks, strict=True):
            assert same(got, want), (raw, got, want)
            assert same(chunked, want), (raw, chunked, want)
            fits_in_its_row(want)
        later = options["now_s"] + 86400.0 if "now_s" in options else float("inf")
        typed_taken += sum(typed_session(raw, later) is not None for raw in raws)
        sessions += sum(isinstance(p, Session) for p in checked)
    # Both outcomes are common, and the typed pass takes most valid lines (the others are
    # spelled with spaces, escapes, a BOM, a whole float time, ...).
    assert 0.3 * len(raws) * len(OPTIONS) < sessions < 0.7 * len(raws) * len(OPTIONS)
    assert typed_taken > 0.6 * sessions


def test_the_mutations_reach_every_kind() -> None:
    """The lines above make sessions and every kind of failure (a cut line: by its flag)."""
    kinds = set()
    for raw in lines(3000, 4):
        result = check_line(raw, now_s=NOW_S)
        kinds.add("session" if isinstance(result, Session) else result.kind)
    assert kinds == {"session", *VALIDATION_KINDS}


def test_the_struct_has_a_field_for_every_parameter() -> None:
    assert frozenset(CHECKS) == FIELDS
    assert Record.__struct_config__.forbid_unknown_fields


def test_a_compact_line_that_needs_nothing_is_sent_as_its_own_bytes() -> None:
    data = b'{"userId":"u1","deviceId":"d1","time":1767225600.5,"country":"US"}'
    raw = RawLine("f", 1, data)
    for parsed in (parse_line(raw), parse_lines([raw])[0], check_line(raw)):
        assert isinstance(parsed, Session)
        assert parsed.body is data and parsed.source is data


@pytest.mark.parametrize(
    ("data", "body"),
    [
        (b'{"userId": "u1"}', b'{"userId":"u1"}'),
        (b'{"userId":"a\\/b"}', b'{"userId":"a/b"}'),
        (b'{"userId":"\\u00e9"}', '{"userId":"é"}'.encode()),
        (b'{"userId":"u1","userId":"u2"}', b'{"userId":"u2"}'),
        (b'{"userId":"u1","time":1767225600.0}', b'{"userId":"u1","time":1767225600}'),
        (b'{"userId":"u1","time":1767225600.50}', b'{"userId":"u1","time":1767225600.5}'),
        (b'{"userId":"","deviceId":"d"}', b'{"deviceId":"d"}'),
        (b'{"userId":"u","userAttributes":{"a": 1}}',
         b'{"userId":"u","userAttributes":"{\\"a\\":1}"}'),
        (b'{"userId":"u","webPushSubscription":{"e":"x"}}',
         b'{"userId":"u","webPushSubscription":"{\\"e\\":\\"x\\"}"}'),
        (b'\xef\xbb\xbf{"userId":"u1"}\r', b'{"userId":"u1"}'),
    ],
    ids=["spaces", "escaped-slash", "u-escape", "duplicate", "whole-float-time", "long-float",
         "blank-user", "attributes", "push-object", "bom-cr"],
)
def test_what_was_normalised_is_sent_as_orjson_writes_it(data: bytes, body: bytes) -> None:
    parsed = parse_line(RawLine("f", 1, data))
    assert isinstance(parsed, Session)
    assert parsed.body == body == orjson.dumps(parsed.params)
    assert parsed.source is data


def test_the_key_in_a_line_sent_as_is_is_masked_where_rows_and_dry_runs_mask_it() -> None:
    """Validation cannot see a key that no name announces; the files written mask its text,
    which works on the line's own bytes because they are spelled as orjson spells them."""
    key = "prod_Ab/cd+ef"
    data = orjson.dumps({"userId": "u1", "deviceName": key})
    parsed = parse_line(RawLine("f", 1, data))
    assert isinstance(parsed, Session) and parsed.body is data
    assert key.encode() not in KeyText(key).mask_json(parsed.body)
    escaped = data.replace(b"/", b"\\/")  # the key spelled otherwise: normalised, then masked
    parsed = parse_line(RawLine("f", 1, escaped))
    assert isinstance(parsed, Session) and parsed.body == data
    assert key.encode() not in KeyText(key).mask_json(parsed.body)


def test_a_secret_name_anywhere_keeps_a_line_from_the_typed_pass() -> None:
    for data in (b'{"userId":"u1","deviceName":"clientKey: s3cr3t"}',
                 b'{"userId":"u1","userAttributes":{"APPID":"s3cr3t"}}',
                 b'{"userId":"u1","webPushSubscription":"{\\"apiversion\\":1}"}',
                 b'{"userId":"u1","city":"\\u0063lientKey=s3cr3t"}'):
        parsed = parse_lines([RawLine("f", 1, b'{"userId":"u0"}'), RawLine("f", 2, data)])[1]
        assert isinstance(parsed, RecordFailure), data
        assert parsed.kind in ("secret_field", "config_field")
        assert "s3cr3t" not in repr(parsed)


def test_msgspec_writes_what_orjson_writes() -> None:
    """The premise of the typed pass's length test (typed.py): every character, and every
    time from 1 s to the year 5138, spelled the same by both; a raw value as it was read."""
    import msgspec

    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    for at in range(0, len(chars), 4096):
        block = "".join(chars[at:at + 4096])
        assert msgspec.json.encode(block) == orjson.dumps(block)
    for c in chars[:0x800]:
        assert msgspec.json.encode(c) == orjson.dumps(c)  # each, so none hides in a block
    rng = random.Random(0)
    for n in range(50_000):
        seconds = rng.uniform(1.0, 1e11) if n % 3 else round(rng.uniform(1.0, 1e11), n % 7)
        assert msgspec.json.encode(seconds) == orjson.dumps(seconds)
    for n in (1, 2**31, 10**11, -(14 * 3600)):
        assert msgspec.json.encode(n) == orjson.dumps(n)
    raw = b'{ "a" : [1 , 2.50] }'
    assert msgspec.json.encode(msgspec.Raw(raw)) == raw


@pytest.mark.parametrize("levels", [250, 251, 252, 253, 254, 255, 256])
@pytest.mark.parametrize("field", ["event", "webPushSubscription", "userAttributes"])
def test_a_deep_value_ends_in_a_row_that_can_be_written(field: str, levels: int) -> None:
    """Found by the comparison above: an unknown field 254 levels deep (with
    --allow-unknown-fields) raised from orjson, and one 253 deep made a failure row that
    could not be written; a push subscription 253 deep made a session whose failure row
    could not be. Now each is a session whose rows fit, or a failure that names it."""
    nested = b'{"a":' * levels + b"1" + b"}" * levels
    data = b'{"userId":"u1","' + field.encode() + b'":' + nested + b"}"
    for allow in (False, True):
        raw = RawLine("f", 1, data)
        parsed = check_line(raw, allow_unknown_fields=allow)
        assert same(parse_line(raw, allow_unknown_fields=allow), parsed)
        fits_in_its_row(parsed)
