"""Fields by platform in `replayer convert`: web events' browser and OS for every vendor,
user agents, vendor placeholders, OS version prefixes, bookkeeping properties, nested
traits and CLDR's country names."""

from __future__ import annotations

from typing import Any

import pytest

from replayer.source.convert.agents import agent_fields
from replayer.source.convert.normalise import country_code, os_version
from tests.test_convert_sessions import T, amp, ga4, mix, run, seg

CHROME_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
              "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1")
EDGE_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                "Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91")

HINTS_MAC = {"brands": [{"brand": "Not_A Brand", "version": "8"},
                        {"brand": "Chromium", "version": "120"},
                        {"brand": "Google Chrome", "version": "120"}],
             "mobile": False, "platform": "macOS"}


def seg_web(user: str, t: float, **context: Any) -> dict[str, Any]:
    """A Segment track call from analytics.js: no context.os, a userAgent."""
    return seg(user, t, **context)


# (id, source, row, the record expected, without its time)
FIELD_CASES = [
    ("amplitude-web", "amplitude",
     amp("d", T, platform="Web", os_name="Chrome", os_version="120", device_model="Mac OS",
         version_name="2.0"),
     {"deviceId": "d", "userId": "user-d", "browserName": "Chrome", "browserVersion": "120",
      "systemName": "Mac OS", "appVersion": "2.0"}),
    ("amplitude-ios", "amplitude",
     amp("d", T, platform="iOS", os_name="ios", os_version="17.2", device_model="iPhone15,2"),
     {"deviceId": "d", "userId": "user-d", "systemName": "ios", "systemVersion": "17.2",
      "deviceModel": "iPhone15,2"}),
    ("ga4-web", "ga4",
     ga4("p", T, 7, platform="WEB",
         device={"category": "desktop", "operating_system": "Web",
                 "operating_system_version": "(not set)", "mobile_model_name": "Chrome",
                 "web_info": {"browser": "Chrome", "browser_version": "120.0.6099.109"}},
         geo={"country": "(not set)", "region": "(not set)", "city": "(not set)"}),
     {"deviceId": "p", "browserName": "Chrome", "browserVersion": "120.0.6099.109"}),
    ("ga4-mobile-web", "ga4",
     ga4("p", T, 7, platform="WEB",
         device={"category": "mobile", "operating_system": "Android",
                 "operating_system_version": "Android 13.0.0", "mobile_model_name": "SM-G781B",
                 "web_info": {"browser": "Chrome", "browser_version": "119.0.6045.194"}}),
     {"deviceId": "p", "systemName": "Android", "systemVersion": "13.0.0",
      "deviceModel": "SM-G781B", "browserName": "Chrome", "browserVersion": "119.0.6045.194"}),
    ("ga4-android", "ga4",
     ga4("p", T, 7, platform="ANDROID",
         device={"operating_system": "Android", "operating_system_version": "Android 11",
                 "mobile_model_name": "Pixel 5"},
         geo={"country": "Turkey", "city": "(not set)"}),
     {"deviceId": "p", "systemName": "Android", "systemVersion": "11", "deviceModel": "Pixel 5",
      "country": "TR"}),
    ("segment-web", "segment", seg_web("s", T, userAgent=CHROME_MAC, locale="en-US"),
     {"userId": "s", "browserName": "Chrome", "browserVersion": "120.0.0",
      "systemName": "Mac OS X", "systemVersion": "10.15.7", "locale": "en_US"}),
    ("segment-mobile-web", "segment", seg_web("s", T, userAgent=SAFARI_IPHONE),
     {"userId": "s", "browserName": "Mobile Safari", "browserVersion": "17.2",
      "systemName": "iOS", "systemVersion": "17.2"}),
    ("segment-os-wins", "segment",
     seg_web("s", T, userAgent=CHROME_MAC, os={"name": "iOS", "version": "17"}),
     {"userId": "s", "systemName": "iOS", "systemVersion": "17"}),
    ("segment-unreadable-agent", "segment", seg_web("s", T, userAgent="x"), {"userId": "s"}),
    ("segment-client-hints", "segment",
     seg_web("s", T, userAgent=CHROME_MAC, userAgentData=HINTS_MAC),
     {"userId": "s", "browserName": "Chrome", "browserVersion": "120.0.0",
      "systemName": "macOS"}),
    ("segment-os-wins-over-hints", "segment",
     seg_web("s", T, userAgentData=HINTS_MAC, os={"name": "iOS", "version": "17"}),
     {"userId": "s", "systemName": "iOS", "systemVersion": "17"}),
    ("mixpanel-web", "mixpanel",
     mix("m", T, **{"$os": "Windows", "$os_version": "Windows 10", "$browser": "Edge",
                    "$browser_version": 120, "$city": "(none)", "$region": ""}),
     {"userId": "m", "systemName": "Windows", "systemVersion": "10", "browserName": "Edge",
      "browserVersion": "120"}),
    ("amplitude-unknown-os", "amplitude", amp("d", T, os_name="Unknown"),
     {"deviceId": "d", "userId": "user-d"}),
    ("amplitude-placeholders", "amplitude",
     amp("d", T, city="(none)", region="", country="(not set)", os_name="android",
         os_version="Android 14"),
     {"deviceId": "d", "userId": "user-d", "systemName": "android", "systemVersion": "14"}),
]


@pytest.mark.parametrize(("source", "row", "expected"), [c[1:] for c in FIELD_CASES],
                         ids=[c[0] for c in FIELD_CASES])
def test_fields_by_platform(source: str, row: dict[str, Any], expected: dict[str, Any]) -> None:
    records, _, summary = run(source, {"f": [row]})
    (record,) = records
    record.pop("time")
    assert record == expected
    assert summary.encode()["unmapped"] == {}, "placeholders are absent values, not misses"


@pytest.mark.parametrize(("agent", "fields"), [
    (CHROME_MAC, {"browserName": "Chrome", "browserVersion": "120.0.0",
                  "systemName": "Mac OS X", "systemVersion": "10.15.7"}),
    (EDGE_WINDOWS, {"browserName": "Edge", "browserVersion": "120.0.2210",
                    "systemName": "Windows", "systemVersion": "10"}),
    ("curl/8.0", {"browserName": "curl", "browserVersion": "8.0"}),
    ("", {}), ("x" * 5000, {}),
], ids=["chrome-mac", "edge-windows", "no-os", "empty", "too-long"])
def test_user_agents_give_browser_and_os(agent: str, fields: dict[str, str]) -> None:
    assert agent_fields(agent) == fields


# (id, userAgent, userAgentData, fields): the system from the hints' platform, else the
# string; the browser from the string, else the hints' brands.
HINT_CASES = [
    ("platform-over-string", CHROME_MAC, HINTS_MAC,
     {"browserName": "Chrome", "browserVersion": "120.0.0", "systemName": "macOS"}),
    ("brands-without-string", None, HINTS_MAC,
     {"browserName": "Chrome", "browserVersion": "120", "systemName": "macOS"}),
    ("unknown-platform", CHROME_MAC, {**HINTS_MAC, "platform": "Unknown"},
     {"browserName": "Chrome", "browserVersion": "120.0.0", "systemName": "Mac OS X",
      "systemVersion": "10.15.7"}),
    ("empty-platform", None, {**HINTS_MAC, "platform": ""},
     {"browserName": "Chrome", "browserVersion": "120"}),
    ("windows-11", EDGE_WINDOWS, {"platform": "Windows", "platformVersion": "15.0.0"},
     {"browserName": "Edge", "browserVersion": "120.0.2210", "systemName": "Windows",
      "systemVersion": "11"}),
    ("windows-10", None, {"platform": "Windows", "platformVersion": "10.0.0"},
     {"systemName": "Windows", "systemVersion": "10"}),
    ("windows-8", None, {"platform": "Windows", "platformVersion": "0.3.0"},
     {"systemName": "Windows"}),
    ("android-high-entropy", None,
     {"platform": "Android", "platformVersion": "14.0.0", "model": "Pixel 7", "mobile": True,
      "fullVersionList": [{"brand": "Chromium", "version": "120.0.6099.144"},
                          {"brand": "Google Chrome", "version": "120.0.6099.144"},
                          {"brand": "Not_A Brand", "version": "8.0.0.0"}],
      "brands": [{"brand": "Google Chrome", "version": "120"}]},
     {"systemName": "Android", "systemVersion": "14.0.0", "deviceModel": "Pixel 7",
      "browserName": "Chrome", "browserVersion": "120.0.6099.144"}),
    ("desktop-model-is-empty", None, {"platform": "Linux", "model": "", "platformVersion": ""},
     {"systemName": "Linux"}),
    ("edge-brand", None, {"brands": [{"brand": " Not A;Brand", "version": "99"},
                                     {"brand": "Microsoft Edge", "version": "120"},
                                     {"brand": "Chromium", "version": "120"}]},
     {"browserName": "Edge", "browserVersion": "120"}),
    ("engine-alone", None, {"brands": [{"brand": "Chromium", "version": "120"},
                                       {"brand": "Not?A_Brand", "version": "24"}]},
     {"browserName": "Chromium", "browserVersion": "120"}),
    ("not-hints", CHROME_MAC, "macOS",
     {"browserName": "Chrome", "browserVersion": "120.0.0", "systemName": "Mac OS X",
      "systemVersion": "10.15.7"}),
    ("broken-brands", None, {"brands": ["Chrome", {"brand": 7}, None], "platform": 3}, {}),
    ("overlong-hints", None, {"platform": "x" * 101, "model": "m" * 500,
                              "brands": [{"brand": "b" * 200, "version": "1"}]}, {}),
]


@pytest.mark.parametrize(("agent", "hints", "fields"), [c[1:] for c in HINT_CASES],
                         ids=[c[0] for c in HINT_CASES])
def test_client_hints_give_the_system_before_the_user_agent(
        agent: str | None, hints: Any, fields: dict[str, str]) -> None:
    assert agent_fields(agent, hints) == fields


@pytest.mark.parametrize(("text", "version"), [
    ("Android 11", "11"), ("iOS 17.2", "17.2"), ("Windows 11", "11"),
    ("Mac OS X 10.15.7", "10.15.7"), ("17.2", "17.2"), ("10_15_7", "10_15_7"),
    ("Windows NT 10.0", "10.0"), ("Vista", "Vista"),
])
def test_os_versions_lose_their_os_prefix(text: str, version: str) -> None:
    assert os_version(text) == version


# (id, source, row, userAttributes expected, unmapped expected)
ATTRIBUTE_CASES = [
    ("ga4-bookkeeping", "ga4",
     ga4("p", T, 7, user_properties=[
         {"key": k, "value": {"int_value": "1767261600"}}
         for k in ("ga_session_id", "ga_session_number", "first_open_time",
                   "engaged_session_event")] + [{"key": "tier", "value": {"string_value": "g"}}]),
     {"tier": "g"}, {}),
    ("amplitude-insert-id", "amplitude",
     amp("d", T, user_properties={"$insert_id": "x", "plan": "pro"}), {"plan": "pro"}, {}),
    ("segment-nested-traits", "segment",
     {**seg("s", T), "traits": {"name": "Ann", "address": {"city": "Paris",
                                                           "geo": {"lat": 48.8}},
                                "tags": [{"a": 1}], "mp_lib": "web"}},
     {"name": "Ann", "address.city": "Paris", "address.geo.lat": 48.8},
     {"userAttributes": {"count": 1, "examples": ["tags"]}}),
    ("segment-group-traits-are-the-groups", "segment",
     {**seg("s", T), "type": "group", "groupId": "g",
      "traits": {"name": "Initech", "industry": "Software"}}, None, {}),
]


@pytest.mark.parametrize(("source", "row", "attributes", "unmapped"),
                         [c[1:] for c in ATTRIBUTE_CASES], ids=[c[0] for c in ATTRIBUTE_CASES])
def test_bookkeeping_is_no_attribute_and_nested_traits_are_flattened(
        source: str, row: dict[str, Any], attributes: dict[str, Any],
        unmapped: dict[str, Any]) -> None:
    records, _, summary = run(source, {"f": [row]})
    (record,) = records
    assert record.get("userAttributes") == attributes
    assert summary.encode()["unmapped"] == unmapped


@pytest.mark.parametrize(("name", "code"), [
    ("Turkey", "TR"), ("Russia", "RU"), ("UK", "GB"), ("Côte d'Ivoire", "CI"),
    ("Côte d\u2019Ivoire", "CI"), ("Myanmar (Burma)", "MM"), ("Congo - Kinshasa", "CD"),
    ("Bosnia & Herzegovina", "BA"), ("Trinidad & Tobago", "TT"), ("St. Lucia", "LC"),
    ("U.S. Virgin Islands", "VI"), ("Palestine", "PS"), ("Kosovo", "XK"), ("Brunei", "BN"),
    ("Cape Verde", "CV"), ("türkiye", "TR"), ("uk", "GB"), ("Canary Islands", None),
    ("Narnia", None),
], ids=lambda v: repr(v))
def test_cldr_country_names_map(name: str, code: str | None) -> None:
    assert country_code(name) == code
