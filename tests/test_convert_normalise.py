"""Table tests of the pure normalisation behind `replayer convert`, and of --map parsing."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from replayer.records import RawLine, Session
from replayer.source.convert.mapping import Mapping, MappingError, lookup, parse_mapping, parse_path
from replayer.source.convert.normalise import (
    attribute_name,
    country_code,
    locale_tag,
    offset_seconds,
    unix_seconds,
    zone_at,
)
from replayer.source.convert.sources import SOURCE_TOML
from replayer.source.validate import parse_line


@pytest.mark.parametrize(("text", "code"), [
    ("United States", "US"), ("united states", "US"), ("United States of America", "US"),
    ("US", "US"), ("de", "DE"), ("Germany", "DE"), ("South Korea", "KR"), ("Vietnam", "VN"),
    ("United Kingdom", "GB"), ("USA", "US"), ("Atlantis", None), ("Untied States", None),
    ("(not set)", None), ("", None), ("ZZ", None),
], ids=lambda v: repr(v))
def test_country_names_and_codes_map_to_iso2_exactly(text: str, code: str | None) -> None:
    assert country_code(text) == code


@pytest.mark.parametrize(("text", "tag"), [
    ("en-US", "en_US"), ("en-us", "en_US"), ("en_US", "en_US"), ("EN_us", "en_US"),
    ("en", "en"), ("fr", "fr"), ("zh-Hans-CN", "zh_CN"), ("es-419", "es_419"),
    ("en_US.UTF-8", "en_US"), ("English", "en"), ("German", "de"), ("??", None), ("", None),
], ids=lambda v: repr(v))
def test_locales_become_ll_CC_and_language_only_stays(text: str, tag: str | None) -> None:
    assert locale_tag(text) == tag


@pytest.mark.parametrize(("zone", "time_s", "expected"), [
    ("America/New_York", 1767261600, ("EST", -18000)),  # January: standard time
    ("America/New_York", 1783000000, ("EDT", -14400)),  # July: daylight time
    ("Europe/Paris", 1767261600, ("CET", 3600)),
    ("Asia/Kolkata", 1767261600, ("IST", 19800)),
    ("UTC", 1767261600, ("UTC", 0)),
    ("Mars/Olympus_Mons", 1767261600, None),
    ("", 1767261600, None),
], ids=lambda v: repr(v))
def test_iana_zones_give_the_abbreviation_and_offset_at_that_time(
        zone: str, time_s: float, expected: tuple[str, int] | None) -> None:
    assert zone_at(zone, time_s) == expected


@pytest.mark.parametrize("zone", [
    "y" * 5000, "America", "../../etc/passwd", "a\x00b", "\udcff", "Europe/", "/etc/localtime",
    "Europe/Paris/x",
], ids=lambda v: repr(v[:20]))
def test_a_name_that_is_no_zone_is_none_whatever_holds_the_zones(
        zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile time zone in an event is an absent one, never an error that stops the
    conversion; with zones read from the tzdata package (no system database, as in a
    fresh virtualenv on some machines) a long name or a folder of zones fails as the file
    it names does: OSError. The second half plays that part on any machine."""
    from replayer.source.convert import normalise

    assert zone_at(zone, 1767261600) is None
    normalise._zone.cache_clear()

    def from_tzdata(name: str) -> Any:
        raise OSError(36, "File name too long", name)

    monkeypatch.setattr(normalise, "ZoneInfo", from_tzdata)
    try:
        assert zone_at(zone, 1767261600) is None
        assert normalise.source_zone(zone) is None
    finally:
        normalise._zone.cache_clear()


@pytest.mark.parametrize(("value", "unit", "seconds"), [
    (1767261600, "s", 1767261600), (1767261600123, "ms", 1767261600.123),
    ("1767261600000000", "us", 1767261600), (1767261600000000, "auto", 1767261600),
    (1767261600000, "auto", 1767261600), (1767261600, "auto", 1767261600),
    ("2026-01-01 10:00:00.500000", "iso", 1767261600.5),
    ("2026-01-01T10:00:00Z", "iso", 1767261600), ("2026-01-01T11:00:00+01:00", "auto", 1767261600),
    ("yesterday", "iso", None), (None, "s", None), (True, "s", None), (-5, "s", None),
    ("12x", "s", None),
], ids=lambda v: repr(v))
def test_times_become_unix_seconds(value: Any, unit: str, seconds: float | None) -> None:
    assert unix_seconds(value, unit) == seconds


@pytest.mark.parametrize(("value", "seconds"), [
    ("3600", 3600), (-18000, -18000), (3600.0, 3600), (3600.5, None), (15 * 3600, None),
    ("x", None),
])
def test_offsets_are_whole_seconds_within_14h(value: Any, seconds: int | None) -> None:
    assert offset_seconds(value) == seconds


@pytest.mark.parametrize(("name", "valid"), [
    ("plan", "plan"), ("a,b", "a_b"), ('say "hi"', "say _hi_"), ("x|y{z", "x_y_z"),
    ("-beta", "beta"), (".hidden", "hidden"), ("path/", "path"), ("12", "_12"), ("1.5e3", "_1.5e3"),
    ("", "_"), ("---", "_"), ("t\tab", "t_ab"), ("x" * 200, "x" * 139),
    ("[Amplitude] cohort", "[Amplitude] cohort"),
], ids=lambda v: repr(v)[:20])
def test_attribute_names_are_made_valid(name: str, valid: str) -> None:
    assert attribute_name(name) == valid
    line = RawLine("t", 1, f'{{"userId":"u","userAttributes":{{"{_json(valid)}":1}}}}'.encode())
    assert isinstance(parse_line(line), Session), "the validator accepts the fixed name"


def _json(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")


def test_paths_pick_keys_and_list_elements() -> None:
    path = parse_path("event_params[key=ga_session_id].value.int_value")
    assert path == (("event_params", "key", "ga_session_id"), "value", "int_value")
    row = {"event_params": [{"key": "other", "value": {"int_value": "1"}},
                            {"key": "ga_session_id", "value": {"int_value": "42"}}]}
    assert lookup(row, path) == "42"
    assert lookup({"event_params": []}, path) is None
    assert lookup({"a": "text"}, ("a", "b")) is None


@pytest.mark.parametrize("source", sorted(SOURCE_TOML))
def test_builtin_sources_are_valid_mappings(source: str) -> None:
    assert isinstance(parse_mapping(tomllib.loads(SOURCE_TOML[source]), name=source), Mapping)


@pytest.mark.parametrize(("toml", "message"), [
    ("[start]\nuserId = 'u'", "event.time"),
    ("[event]\ntime = { path = 't', unit = 'days' }\n[start]\nuserId = 'u'", "unit"),
    ("[event]\ntime = { path = 't' }\n[start]\nappVersion = 'v'", "userId or deviceId"),
    ("[event]\ntime = { path = 't' }\n[start]\nuserId = 'u'\nclientKey = 'k'", "clientKey"),
    ("[event]\ntime = { path = 't' }\n[session]\nrule = 'key'\n[start]\nuserId = 'u'",
     "session.key"),
    (("[event]\ntime = { path = 't' }\n[start]\nuserId = 'u'\ncountry = { path = 'c', "
     "transform = 'iana' }"), "iana"),
    ("[event]\ntime = { path = 't' }\n[start]\nuserId = 'u'\n[extra]\n", "unknown table"),
    ("[event]\ntime = { path = 't' }\nid = { any = ['a'] }\n[start]\nuserId = 'u'",
     "event.id"),
    ("[event]\ntime = { path = 't' }\nid = 3\n[start]\nuserId = 'u'", "event.id"),
    (("[event]\ntime = { path = 't' }\n[start]\nuserId = 'u'\nuserAttributes = { path = 'a', "
     "unless = { path = 'type' } }"), "start.userAttributes.unless"),
    (("[event]\ntime = { path = 't' }\n[start]\nuserId = 'u'\nuserAttributes = { path = 'a', "
     "unles = { path = 'type', values = ['group'] } }"), "unknown key(s): unles"),
], ids=["no-time", "bad-unit", "no-id", "secret", "key-rule", "iana-misuse", "extra-table",
        "insert-id-table", "insert-id-type", "attributes-unless-no-values",
        "attributes-unknown-key"])
def test_bad_mappings_are_refused_with_a_reason(toml: str, message: str) -> None:
    refused = parse_mapping(tomllib.loads(toml), name="t")
    assert isinstance(refused, MappingError)
    assert message in refused.message
