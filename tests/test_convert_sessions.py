"""Table tests of the session rules and field mapping of each built-in source."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from replayer.source.convert.pipeline import ConvertOptions, convert
from replayer.source.convert.readers import ExportLine
from replayer.source.convert.sources import builtin_mapping
from replayer.source.convert.summary import ConvertSummary

T = 1767261600  # 2026-01-01 10:00:00 UTC
GAP = 1800


def amp(user: str, t: float, session: int | None = None, **fields: Any) -> dict[str, Any]:
    """An Amplitude export row; session None: session_id -1."""
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return {"device_id": user, "user_id": f"user-{user}", "event_time": stamp,
            "session_id": -1 if session is None else session * 1000, **fields}


def mix(user: str, t: float, **props: Any) -> dict[str, Any]:
    """A Mixpanel raw export row."""
    return {"event": "e", "properties": {"time": t, "distinct_id": user, **props}}


def seg(user: str, t: float, event: str = "Song Played", **context: Any) -> dict[str, Any]:
    """A Segment track call."""
    stamp = datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
    return {"type": "track", "event": event, "userId": user, "timestamp": stamp,
            "context": context}


def ga4(user: str, t: float, session: int | None = None, **fields: Any) -> dict[str, Any]:
    """A GA4 BigQuery export row (INT64 as strings); session None: no ga_session_id."""
    params = [] if session is None else [
        {"key": "ga_session_id", "value": {"int_value": str(session)}}]
    return {"event_timestamp": str(int(t * 1_000_000)), "event_name": "e",
            "event_params": params, "user_pseudo_id": user, **fields}


def run(source: str, files: dict[str, list[Any]], *, memory_limit: str = "256MB",
        source_zone: str | None = None,
        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], ConvertSummary]:
    """Converts rows (objects, or raw bytes) given per file; returns records, rejects, summary."""
    lines = [ExportLine(name, no, row if isinstance(row, bytes) else orjson.dumps(row))
             for name, rows in files.items() for no, row in enumerate(rows, start=1)]
    out, rejects = io.BytesIO(), io.BytesIO()
    summary = convert(builtin_mapping(source), lines, out=out, rejects=rejects,
                      options=ConvertOptions(now_s=T + 365 * 86400, gap_s=GAP,
                                             memory_limit=memory_limit,
                                             source_zone=source_zone and ZoneInfo(source_zone)))
    records = [orjson.loads(line) for line in out.getvalue().splitlines()]
    refused = [orjson.loads(line) for line in rejects.getvalue().splitlines()]
    assert summary.events_read == (summary.events_in_sessions + summary.events_rejected
                                   + summary.duplicates)
    assert len(refused) == summary.events_rejected
    return records, refused, summary


def starts(records: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return [(r.get("deviceId") or r.get("userId") or "", r["time"] - T) for r in records]


BUILD = {"amplitude": amp, "mixpanel": mix, "segment": seg, "ga4": ga4}
# (id, rows as (user, seconds after T), expected (user, start - T) per session, reject reasons)
GAP_CASES = [
    ("just-inside-the-gap", [("a", 0), ("a", GAP - 1)], [("a", 0)], []),
    ("exactly-the-gap", [("a", 0), ("a", GAP)], [("a", 0), ("a", GAP)], []),
    ("out-of-order-inside", [("a", 0), ("a", 600), ("a", 300)], [("a", 0)], []),
    ("late-event-is-the-new-first", [("a", 600), ("a", 300)], [("a", 300)], []),
    ("late-event-fills-a-pause", [("a", 0), ("a", 2000), ("a", 1000)], [("a", 0)], []),
    # Input order never matters: events are sorted by time before sessions are cut.
    ("out-of-order-beyond", [("a", 0), ("a", 3600), ("a", 1000)], [("a", 0), ("a", 3600)],
     []),
    ("late-by-exactly-the-gap", [("a", GAP), ("a", 0)], [("a", 0), ("a", GAP)], []),
    ("late-behind-another-user", [("b", 4000), ("a", 0)], [("a", 0), ("b", 4000)], []),
    ("two-users-interleaved", [("a", 0), ("b", 10), ("a", 20), ("b", 4000)],
     [("a", 0), ("b", 10), ("b", 4000)], []),
]


@pytest.mark.parametrize("source", ["mixpanel", "segment", "amplitude", "ga4"])
@pytest.mark.parametrize(("rows", "sessions", "reasons"),
                         [case[1:] for case in GAP_CASES], ids=[case[0] for case in GAP_CASES])
def test_the_gap_rule_places_events_by_time(source: str, rows: list[tuple[str, int]],
                                            sessions: list[tuple[str, int]],
                                            reasons: list[str]) -> None:
    # Amplitude's -1 sessions and GA4 rows without ga_session_id follow the gap rule too.
    records, refused, _ = run(source, {"f": [BUILD[source](u, T + s) for u, s in rows]})
    assert starts(records) == sessions
    assert [r["reason"] for r in refused] == reasons


def test_a_user_spanning_two_files_is_one_session_counted_per_file() -> None:
    records, _, summary = run("mixpanel", {"a.json": [mix("u", T)], "b.json": [mix("u", T + 600)]})
    assert starts(records) == [("u", 0)]
    assert [(f.file, f.events_read, f.sessions) for f in summary.files] == [
        ("a.json", 1, 1), ("b.json", 1, 0)]


def test_amplitude_session_ids_group_and_minus_one_falls_back_to_the_gap() -> None:
    rows = [amp("d", T, session=T), amp("d", T + 60, session=T + 60),  # two keys, one device
            amp("d", T + 120, session=T), amp("d", T + 200), amp("d", T + 300)]
    records, refused, summary = run("amplitude", {"f": rows})
    assert starts(records) == [("d", 0), ("d", 60), ("d", 200)]
    assert summary.events_in_sessions == 5 and not refused
    assert records[0]["userId"] == "user-d"


def test_a_session_id_never_spans_a_pause_of_the_gap() -> None:
    records, _, _ = run("amplitude", {"f": [amp("d", T, session=T),
                                            amp("d", T + GAP, session=T)]})
    assert starts(records) == [("d", 0), ("d", GAP)]


def test_ga4_sessions_are_user_pseudo_id_and_ga_session_id() -> None:
    rows = [ga4("p", T, 1), ga4("p", T + 10, 2), ga4("q", T + 20, 1), ga4("p", T + 30, 1),
            ga4("p", T + 40)]
    records, _, summary = run("ga4", {"f": rows})
    assert starts(records) == [("p", 0), ("p", 10), ("q", 20), ("p", 40)]
    assert summary.sessions_written == 4


def test_segment_application_opened_starts_a_session_inside_the_gap() -> None:
    rows = [seg("s", T, "Application Opened"), seg("s", T + 60),
            seg("s", T + 120, "Application Opened"), seg("s", T + 90)]
    records, _, summary = run("segment", {"f": rows})
    assert starts(records) == [("s", 0), ("s", 120)]
    assert summary.events_in_sessions == 4


@pytest.mark.parametrize(("row", "reason"), [
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    ({"event": "e", "properties": {"time": T}}, "no_user"),
    ({"event": "e", "properties": {"distinct_id": "u"}}, "no_time"),
    ({"event": "e", "properties": {"distinct_id": "u", "time": "soon"}}, "invalid_time"),
    ({"event": "e", "properties": {"distinct_id": "u", "time": T + 500 * 86400}}, "invalid_time"),
    ({"event": "e", "properties": {"distinct_id": "u" * 401, "time": T}}, "id_too_long"),
], ids=["json", "array", "no-user", "no-time", "bad-time", "future", "long-id"])
def test_events_that_cannot_be_placed_are_rejected_with_file_and_line(row: Any,
                                                                      reason: str) -> None:
    records, refused, _ = run("mixpanel", {"x.json": [mix("ok", T), row]})
    assert len(records) == 1
    assert [(r["file"], r["line"], r["reason"]) for r in refused] == [("x.json", 2, reason)]


FIELD_CASES = [
    ("amplitude", amp("d", T, country="United States", language="English", os_name="ios",
                      os_version=17.2, version_name="1.0", device_model="iPhone15,2",
                      location_lat=37.5, location_lng=-122.25, region="California",
                      city="SF", user_properties={"plan": "pro", "a,b": 1}),
     {"deviceId": "d", "userId": "user-d", "locale": "en", "country": "US", "systemName": "ios",
      "systemVersion": "17.2", "appVersion": "1.0", "deviceModel": "iPhone15,2",
      "location": "37.5,-122.25", "region": "California", "city": "SF",
      "userAttributes": {"plan": "pro", "a_b": 1}}),
    ("amplitude", amp("d", T, country="Atlantis", language="de-AT"),
     {"deviceId": "d", "userId": "user-d", "locale": "de_AT"}),
    ("mixpanel", mix("m", T, **{"$os": "Android", "$os_version": "14", "$model": "Pixel",
                                "$app_version_string": "2.0", "mp_country_code": "fr",
                                "$city": "Lyon", "$region": "ARA", "$device_id": "dev"}),
     {"userId": "m", "deviceId": "dev", "systemName": "Android", "systemVersion": "14",
      "deviceModel": "Pixel", "appVersion": "2.0", "country": "FR", "city": "Lyon",
      "region": "ARA"}),
    ("segment", seg("s", T, locale="fr", timezone="Europe/Paris",
                    app={"version": "1.2"}, os={"name": "iOS", "version": "17"},
                    device={"id": "dev-s", "model": "iPhone"},
                    location={"country": "France", "city": "Paris", "latitude": 48.85,
                              "longitude": 2.35}),
     {"userId": "s", "deviceId": "dev-s", "locale": "fr", "timezone": "CET",
      "timezoneOffsetSeconds": 3600, "appVersion": "1.2", "systemName": "iOS",
      "systemVersion": "17", "deviceModel": "iPhone", "country": "FR", "city": "Paris",
      "location": "48.85,2.35"}),
    ("segment", seg("s", T + 180 * 86400, timezone="America/New_York"),
     {"userId": "s", "timezone": "EDT", "timezoneOffsetSeconds": -14400}),
    ("ga4", ga4("p", T, 7, user_id="g", device={"language": "en-us",
                                                "time_zone_offset_seconds": "-18000",
                                                "operating_system": "iOS"},
                geo={"country": "Russia", "city": "Moscow"}, app_info={"version": "5"},
                user_properties=[{"key": "tier", "value": {"string_value": "gold"}},
                                 {"key": "n", "value": {"int_value": "3"}}]),
     {"userId": "g", "deviceId": "p", "locale": "en_US", "timezoneOffsetSeconds": -18000,
      "systemName": "iOS", "city": "Moscow", "appVersion": "5", "country": "RU",
      "userAttributes": {"tier": "gold", "n": 3}}),
    ("ga4", ga4("p", T, 7), {"deviceId": "p"}),  # missing fields: only the IDs and time
]


@pytest.mark.parametrize(("source", "row", "expected"), [case for case in FIELD_CASES],
                         ids=["amp-all", "amp-unknown-country", "mixpanel", "segment",
                              "segment-dst", "ga4-all", "ga4-missing"])
def test_the_first_event_fields_map_to_start_parameters(source: str, row: dict[str, Any],
                                                        expected: dict[str, Any]) -> None:
    records, _, _ = run(source, {"f": [row]})
    (record,) = records
    assert record.pop("time") == int(first_present_time(row))
    assert record == expected


def first_present_time(row: dict[str, Any]) -> float:
    """The row's time in UNIX seconds, read back the way each builder wrote it."""
    if "event_time" in row:
        return datetime.fromisoformat(row["event_time"]).replace(tzinfo=UTC).timestamp()
    if "properties" in row:
        return float(row["properties"]["time"])
    if "timestamp" in row:
        return datetime.fromisoformat(row["timestamp"]).timestamp()
    return int(row["event_timestamp"]) / 1e6


def test_unknown_values_are_dropped_and_counted_and_renames_reported_once() -> None:
    rows = [amp("a", T, country="Atlantis", user_properties={"a,b": 1}),
            amp("b", T, country="Atlantis", user_properties={"a,b": 2})]
    records, _, summary = run("amplitude", {"f": rows})
    assert all("country" not in r for r in records)
    encoded = summary.encode()
    assert encoded["unmapped"] == {"country": {"count": 2, "examples": ["Atlantis"]}}
    assert encoded["renamed_attributes"] == {"a,b": "a_b"}
    assert sum("renamed attribute" in line for line in summary.lines()) == 1
