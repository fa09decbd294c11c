"""`replayer convert` on real export lines that third parties published (tests/data/exports/,
sources and licences in tests/data/exports/SOURCES.md): no crash, every event accounted for,
output that `replayer validate` accepts, the same bytes in any order, exactly the expected
rejects and duplicates, and the start fields real lines should give. Where today's converter
maps a real line wrongly, the right behaviour is written down as a strict xfail."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from replayer import cli

ROOT = Path(__file__).resolve().parent.parent
EXPORTS = ROOT / "tests" / "data" / "exports"


@dataclass(frozen=True, slots=True)
class Fixture:
    """One published excerpt: its vendor, and the events that must not become sessions."""

    vendor: str
    path: str  # relative to EXPORTS
    rejects: tuple[tuple[int, str], ...] = ()  # (line or array element, reason), in order
    duplicates: int = 0  # copies of an event read earlier that must count once


FIXTURES = {f.path: f for f in (
    Fixture("amplitude", "amplitude/migrate-amplitude-to-posthog.jsonl"),
    # Ad-spend rows that Amplitude's Google Ads integration writes into the export: they have
    # a device, a time and a session_id of -1, so they are valid events and become sessions
    # (whether rows that no person made should be replayed at all is left open).
    Fixture("amplitude", "amplitude/airbyte-source-amplitude.jsonl"),
    Fixture("amplitude", "amplitude/amplitude2split-readme.jsonl"),
    Fixture("mixpanel", "mixpanel/airbyte-source-mixpanel.jsonl"),
    Fixture("mixpanel", "mixpanel/numetric-connectors.jsonl"),
    # Ten events, three $insert_ids: Mixpanel drops a copy only when event name, distinct_id,
    # time and $insert_id all match (its "Event Deduplication" reference; raw exports keep
    # every copy), and no two of these events match on all four.
    Fixture("mixpanel", "mixpanel/adobe-experience-platform-docs.jsonl"),
    Fixture("mixpanel", "mixpanel/camunda-docs-data-collection.jsonl"),
    # Typewriter's end-to-end snapshots strip the volatile fields (timestamp, messageId,
    # sentAt) so that they compare equal from run to run: without a time no event can be
    # placed in a session, so each of the six is rightly refused.
    Fixture("segment", "segment/typewriter-ios-snapshots.jsonl",
            rejects=tuple((line, "no_time") for line in range(1, 7))),
    Fixture("segment", "segment/datart-s3-archive.jsonl"),
    # The second line is the first one after a live plugin edited it: same messageId, so a
    # copy of the same call.
    Fixture("segment", "segment/substrata-kotlin-tests.jsonl", duplicates=1),
    # analytics.js calls from one site: a page, then identify, track, group and alias calls of
    # another visitor; the alias call (userId "newid") is that visitor's new id.
    Fixture("segment", "segment/opensnowcat-analytics-js.jsonl"),
    # The publisher's test inputs repeat rows: the Swiss form_visibility row three times,
    # the German purchase row twice, and the Swedish page_view of user 950658449.1697698900
    # three times (same event_bundle_sequence_id, event_name and event_timestamp per user).
    Fixture("ga4", "ga4/dataform-ga4-sessions.jsonl", duplicates=5),
    Fixture("ga4", "ga4/firebase-blog-sign-up.json"),
    Fixture("ga4", "ga4/velir-dbt-ga4.jsonl"),
)}
NAMES = sorted(FIXTURES)


@dataclass(frozen=True, slots=True)
class Converted:
    """What one conversion wrote."""

    exit_code: int
    output: str
    records: list[dict[str, Any]]
    data: bytes
    rejects: list[dict[str, Any]]
    summary: dict[str, Any]


def _events(path: Path) -> list[bytes]:
    """The fixture's events as bytes: its lines, or the elements of a JSON array."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"["):
        return [orjson.dumps(item) for item in orjson.loads(data)]
    return [line for line in data.splitlines() if line.strip()]


def _convert(vendor: str, source: Path, out: Path) -> Converted:
    result = CliRunner().invoke(cli.main, ["convert", "--from", vendor, str(source),
                                           "-o", str(out)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    data = out.read_bytes()
    rejects = Path(f"{out}.rejects.ndjson").read_bytes().splitlines()
    return Converted(result.exit_code, result.output,
                     [orjson.loads(line) for line in data.splitlines()], data,
                     [orjson.loads(line) for line in rejects],
                     orjson.loads(Path(f"{out}.summary.json").read_bytes()))


Conversions = Callable[[str], Converted]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Conversions:
    """Each fixture converted once for this module: the tests only read the results."""
    done: dict[str, Converted] = {}

    def get(name: str) -> Converted:
        if name not in done:
            out = tmp_path_factory.mktemp("real") / "out.ndjson"
            done[name] = _convert(FIXTURES[name].vendor, EXPORTS / name, out)
        return done[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_each_fixture_converts_and_accounts_for_every_event(
        name: str, converted: Conversions) -> None:
    fixture, result = FIXTURES[name], converted(name)
    summary = result.summary
    assert result.exit_code == (1 if fixture.rejects else 0), result.output
    assert summary["events_read"] == len(_events(EXPORTS / name))
    assert summary["events_read"] == (summary["events_in_sessions"] + summary["events_rejected"]
                                      + summary["duplicates"])
    assert summary["sessions_written"] == len(result.records)
    assert summary["events_rejected"] == len(result.rejects) == sum(summary["rejects"].values())
    assert all(row["reason"] and row["message"] and row["raw"] for row in result.rejects)
    assert not summary["dropped_attributes"]


@pytest.mark.parametrize("name", NAMES)
def test_each_fixture_rejects_exactly_the_events_that_are_invalid(
        name: str, converted: Conversions) -> None:
    result = converted(name)
    assert [(row["line"], row["reason"]) for row in result.rejects] == list(
        FIXTURES[name].rejects)


@pytest.mark.parametrize("name", NAMES)
def test_each_fixture_drops_exactly_its_true_duplicates(
        name: str, converted: Conversions) -> None:
    assert converted(name).summary["duplicates"] == FIXTURES[name].duplicates


@pytest.mark.parametrize("name", NAMES)
def test_each_fixture_output_passes_validate(name: str,
                                             converted: Conversions, tmp_path: Path) -> None:
    out = tmp_path / "out.ndjson"
    out.write_bytes(converted(name).data)
    result = CliRunner().invoke(cli.main, ["validate", str(out)])
    assert result.exit_code == 0, result.output
    assert " 0 invalid" in result.output


@pytest.mark.parametrize("name", NAMES)
def test_a_shuffled_copy_of_each_fixture_gives_the_same_bytes(
        name: str, tmp_path: Path, converted: Conversions) -> None:
    events = _events(EXPORTS / name)
    shuffled = events[:]
    random.Random(23).shuffle(shuffled)
    if len(events) > 1 and shuffled == events:
        shuffled.reverse()
    copy = tmp_path / Path(name).name
    if (EXPORTS / name).suffix == ".json":
        copy.write_bytes(b"[" + b",\n".join(shuffled) + b"]\n")
    else:
        copy.write_bytes(b"".join(event + b"\n" for event in shuffled))
    again = _convert(FIXTURES[name].vendor, copy, tmp_path / "shuffled.ndjson")
    first = converted(name)
    assert again.data == first.data
    assert sorted(row["reason"] for row in again.rejects) == sorted(
        row["reason"] for row in first.rejects)


def _record(name: str, converted: Conversions, *,
            key: str, value: str) -> dict[str, Any]:
    """The first start record of `name` whose `key` is `value`."""
    records = converted(name).records
    return next(record for record in records if record.get(key) == value)


# (fixture, identifying field and value, fields the record must have as given)
MAPPED = [
    ("amplitude/migrate-amplitude-to-posthog.jsonl",
     ("userId", "06cdb68f-885b-4b6e-be54-69b38b5b0d95"),
     {"deviceId": "25241593-7196-5c00-b70c-170eb85bb4a6", "time": 1672599772.749}),
    ("amplitude/airbyte-source-amplitude.jsonl",  # event_time as RFC 3339, as Airbyte emits it
     ("deviceId", "google-ad-4651612872-643022056303"), {"time": 1692860400}),
    ("amplitude/amplitude2split-readme.jsonl",  # country and language are names in the export
     ("userId", "408a6f60-513d-11e9-9f5e-1268881cf0a2"),
     {"country": "DK", "locale": "da", "region": "Central Jutland", "city": "Aarhus C"}),
    ("amplitude/amplitude2split-readme.jsonl",
     ("userId", "1fa23f90-c215-11ea-a639-02ed1811fa3b"),
     {"country": "CA", "locale": "en", "city": "St. John's"}),
    ("mixpanel/numetric-connectors.jsonl",
     ("userId", "094223fe-4009-42c7-aa10-e0e70de59aa2"),
     {"time": 1486793881, "systemName": "Mac OS X", "browserName": "Chrome",
      "browserVersion": "56", "country": "US", "region": "Utah", "city": "Draper"}),
    ("mixpanel/airbyte-source-mixpanel.jsonl",
     ("userId", "1d694fd9-31a5-4b99-9eef-ae63112063ed"),
     {"browserName": "Chrome", "browserVersion": "91.0.4472.101"}),
    ("mixpanel/camunda-docs-data-collection.jsonl",  # ID merge: $user_id and $device_id
     ("userId", "auth0|669533a8339ceebe5e8f7fed"),
     {"deviceId": "190b6d254651ec-0a7e1ef548a163-4c657b58-e1000-190b6d2518f1ec",
      "time": 1721228056.002, "systemName": "Windows", "browserName": "Microsoft Edge",
      "browserVersion": "126", "country": "US", "region": "New Jersey"}),
    ("segment/datart-s3-archive.jsonl",  # America/Los_Angeles in November
     ("deviceId", "1f45380a-ecee-4e74-a2f5-dcc9886698a4"),
     {"userId": "data-test-site", "locale": "en_US", "timezone": "PST",
      "timezoneOffsetSeconds": -28800}),
    ("segment/datart-s3-archive.jsonl",
     ("deviceId", "ce4ccb58-7780-468e-8751-159ca7378219"),
     {"timezone": "JST", "timezoneOffsetSeconds": 32400}),
    ("segment/substrata-kotlin-tests.jsonl",  # Android: numbers as versions, userId ""
     ("deviceId", "87bc73d4e4ca1608da083975d36421aef0411dff765c9766b9bfaf266b7c1586"),
     {"userId": None, "time": 1714063255.994, "appVersion": "1", "systemName": "Android",
      "systemVersion": "14", "deviceModel": "sdk_gphone64_arm64", "locale": "en_US",
      "timezone": "CDT", "timezoneOffsetSeconds": -18000}),
    ("ga4/dataform-ga4-sessions.jsonl",
     ("deviceId", "107079580.1702642286"),
     {"locale": "de_CH", "country": "CH", "region": "Zurich", "deviceModel": "SM-G781B",
      "browserName": "Chrome"}),
    ("segment/opensnowcat-analytics-js.jsonl",  # client hints: the OS from their platform
     ("userId", "562927"),
     {"deviceId": "e09fac9f-16e4-43f1-8753-c55023820f81", "time": 1713127013.131,
      "systemName": "macOS", "systemVersion": None, "browserName": "Chrome",
      "browserVersion": "123.0.0", "locale": "en_US", "timezone": "CEST",
      "timezoneOffsetSeconds": 7200}),
    ("segment/opensnowcat-analytics-js.jsonl",  # identify's traits are the user's
     ("userId", "668679"), {"time": 1715977807.948, "systemName": "macOS"}),
    ("ga4/velir-dbt-ga4.jsonl",  # mobile web: the phone's model and OS, the browser
     ("deviceId", "745846450.1644156613"),
     {"time": 1653679818.348, "systemName": "Android", "systemVersion": "12",
      "deviceModel": "SM-M426B", "browserName": "Chrome", "browserVersion": "101.0.4951.61",
      "locale": "en_GB", "country": "IN", "region": "Uttar Pradesh", "city": "Noida"}),
    ("ga4/firebase-blog-sign-up.json",  # a Firebase app's row: version, offset, user props
     ("deviceId", "8d59ce7133e03f6170eadbce40174c91"),
     {"appVersion": "1.2.8", "systemName": "Android", "deviceModel": "M2104K10AC",
      "locale": "zh_CN", "country": "CN", "timezoneOffsetSeconds": 28800}),
]


@pytest.mark.parametrize(("name", "which", "expected"), MAPPED,
                         ids=[f"{n.split('/')[1]}-{w[1][:8]}" for n, w, _ in MAPPED])
def test_real_lines_give_these_start_fields(name: str, which: tuple[str, str],
                                            expected: dict[str, Any],
                                            converted: Conversions) -> None:
    record = _record(name, converted, key=which[0], value=which[1])
    assert {key: record.get(key) for key in expected} == expected


def test_sessions_of_real_lines_follow_each_vendors_rule(
        converted: Conversions) -> None:
    # GA4: the three Swedish users share a ga_session_id, which identifies a session only
    # with user_pseudo_id; the Indian user's four events share one session.
    ga4 = converted("ga4/dataform-ga4-sessions.jsonl")
    assert sorted(r["deviceId"] for r in ga4.records if r.get("country") == "SE") == [
        "950658449.1697698900", "950658449.1697698901", "950658449.1697698986"]
    assert [r["time"] for r in ga4.records if r.get("country") == "IN"] == [1702644703.708]
    # Amplitude session_id -1: the gap rule; the same ad-metrics device a day apart is two.
    amplitude = converted("amplitude/airbyte-source-amplitude.jsonl")
    assert [r["time"] for r in amplitude.records
            if r["deviceId"] == "google-ad-4651612872-19959839954"] == [1692860400, 1692946800]
    # Mixpanel: gap rule; 130 s apart is one session, the next user's events their own.
    mixpanel = converted("mixpanel/numetric-connectors.jsonl")
    assert [r["time"] for r in mixpanel.records
            if r["userId"] == "7260c156-07b0-4c9f-8be2-49bf2a85ca32"] == [1486810955, 1486816702]
    assert mixpanel.summary["sessions_written"] == 6


# --- gaps: the right behaviour on real lines, documented until the mapping does it ----------


# Amplitude's browser SDK (Amplitude-JavaScript, `_logEvent`) sets os_name and os_version from
# the user agent's browser name and major version, and device_model from its OS name.
def test_amplitude_web_events_give_the_browser_as_browser(
        converted: Conversions) -> None:
    for record in converted("amplitude/amplitude2split-readme.jsonl").records:
        assert (record.get("browserName"), record.get("browserVersion")) == ("Chrome", "86")
        assert record.get("systemName") != "Chrome"


# In these rows GA4 gives category "desktop", mobile_model_name "Edge"/"Chrome" and the same
# name in web_info.browser: the model field holds the browser, not a device.
def test_ga4_desktop_rows_give_no_browser_as_device_model(
        converted: Conversions) -> None:
    records = converted("ga4/dataform-ga4-sessions.jsonl").records
    desktop = [r for r in records if r["deviceId"] in ("1385813245.1702644703",
                                                       "427292018.1702650951")]
    assert len(desktop) == 2
    assert all(r.get("deviceModel") not in ("Chrome", "Edge") for r in desktop)


def test_ga4_system_version_is_the_version_alone(
        converted: Conversions) -> None:
    versions = {r["deviceId"]: r.get("systemVersion") for name in (
        "ga4/dataform-ga4-sessions.jsonl", "ga4/firebase-blog-sign-up.json")
        for r in converted(name).records}
    assert versions["107079580.1702642286"] == "13.0.0"
    assert versions["950658449.1697698900"] == "17.0"
    assert versions["8d59ce7133e03f6170eadbce40174c91"] == "11"


# Segment's analytics.js adds context.userAgentData (the browser's user-agent client hints,
# whose platform is the operating system) and sends no context.os from a browser. Chrome's
# user-agent string says "Mac OS X 10_15_7" on every Mac (its frozen version): the hints'
# platform names the system, with no version, and the string still names the browser.
def test_segment_browser_events_give_the_system_from_user_agent_data(
        converted: Conversions) -> None:
    record = _record("segment/datart-s3-archive.jsonl", converted,
                     key="deviceId", value="b230d590-d442-45a8-982e-6eb1b99bc12c")
    assert {key: record.get(key) for key in (
        "systemName", "systemVersion", "browserName", "browserVersion")} == {
        "systemName": "macOS", "systemVersion": None, "browserName": "Chrome",
        "browserVersion": "119.0.0"}
    safari = _record("segment/datart-s3-archive.jsonl", converted,  # no hints: the string
                     key="deviceId", value="1f45380a-ecee-4e74-a2f5-dcc9886698a4")
    assert (safari.get("systemName"), safari.get("browserName")) == ("Mac OS X", "Safari")


# Segment's spec: a group call's traits describe the group (company, plan, industry), not the
# user; identify's traits (and context.traits) are the user's. The group call here follows
# the identify call in the same session: its site and industry must not become the user's.
def test_segment_group_traits_are_not_the_users_attributes(
        converted: Conversions) -> None:
    record = _record("segment/opensnowcat-analytics-js.jsonl", converted,
                     key="userId", value="668679")
    assert record.get("userAttributes") == {"email": "test@sample.com"}


def test_every_vendor_has_two_independent_licensed_sources() -> None:
    # Part 7 of issue 23: at least two independent publishers per vendor whose licence lets
    # us quote them; SOURCES.md names each fixture's repository and licence.
    sources = (EXPORTS / "SOURCES.md").read_text(encoding="utf-8")
    for vendor in sorted({f.vendor for f in FIXTURES.values()}):
        rows = [[cell.strip() for cell in row.split("|")] for row in sources.splitlines()]
        owners = {cells[3].split("/")[0] for cells in rows
                  if len(cells) > 5 and cells[1] == vendor and cells[2].strip("`") in FIXTURES
                  and "no licence stated" not in cells[5] and "not verified" not in cells[5]}
        assert len(owners) >= 2, (vendor, owners)
    assert all(f"`{name}`" in sources for name in FIXTURES), "every fixture has its source"


@pytest.mark.parametrize("vendor", sorted({f.vendor for f in FIXTURES.values()}))
def test_a_vendors_fixtures_converted_together_give_the_union_of_their_sessions(
        vendor: str, tmp_path: Path, converted: Conversions) -> None:
    # No user appears in two fixtures of a vendor, so one conversion of the whole folder
    # must give exactly the sessions of the fixtures converted one by one, in time order.
    names = [name for name in NAMES if FIXTURES[name].vendor == vendor]
    together = _convert(vendor, EXPORTS / vendor, tmp_path / "all.ndjson")
    alone = [line for name in names for line in converted(name).data.splitlines()]
    assert sorted(together.data.splitlines()) == sorted(alone)
    times = [record["time"] for record in together.records]
    assert times == sorted(times)
    assert together.summary["events_read"] == sum(
        converted(name).summary["events_read"] for name in names)
    assert together.summary["duplicates"] == sum(
        converted(name).summary["duplicates"] for name in names)
