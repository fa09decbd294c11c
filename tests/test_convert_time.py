"""Event times that are a local wall clock (--source-timezone, and their detection from a
UTC processing time), and Amplitude sessions that start at their session_id."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from click.testing import CliRunner

from replayer.commands.convert import convert
from replayer.source.convert.clock import LagTally
from replayer.source.convert.normalise import unix_seconds
from tests.test_convert_sessions import GAP, T, amp, mix, run

JUNE = T + 181 * 86400  # 2026-07-01 10:00:00 UTC: daylight saving time in the US
H = 3600
LA = ZoneInfo("America/Los_Angeles")


@pytest.mark.parametrize(("value", "unit", "zone", "seconds"), [
    (T, "s", LA, T + 8 * H),  # December: PST, 8 h behind UTC
    (JUNE, "s", LA, JUNE + 7 * H),  # July: PDT, 7 h behind
    (T * 1000, "ms", LA, T + 8 * H),
    (T, "auto", ZoneInfo("Asia/Kolkata"), T - 5.5 * H),
    ("2026-01-01 10:00:00", "iso", LA, T + 8 * H),  # no offset: the zone's wall clock
    ("2026-01-01T10:00:00Z", "iso", LA, T),  # an offset is kept whatever the zone
    ("2026-01-01T11:00:00+01:00", "auto", LA, T),
    (T, "s", None, T),
], ids=["dec", "june", "ms", "half-hour-zone", "naive-date", "utc-date", "offset-date",
        "no-zone"])
def test_local_times_become_utc_in_the_source_zone(value: Any, unit: str,
                                                   zone: ZoneInfo | None,
                                                   seconds: float) -> None:
    assert unix_seconds(value, unit, zone) == seconds


def local(user: str, utc_s: float, *, delay_s: float = 3, zone: ZoneInfo = LA,
          **props: Any) -> dict[str, Any]:
    """A Mixpanel row of a project in `zone`: `time` its wall clock, processing time UTC."""
    offset = datetime.fromtimestamp(utc_s, UTC).astimezone(zone).utcoffset()
    assert offset is not None
    return mix(user, utc_s + offset.total_seconds(),
               mp_processing_time_ms=int((utc_s + delay_s) * 1000), **props)


# (id, rows, --source-timezone, expected lag hours detected (None: nothing), zone suggested)
DETECT_CASES = [
    ("pacific-december", [local("a", T), local("b", T + 60, delay_s=200)], None,
     {8: 2}, "America/Los_Angeles"),
    ("pacific-both-seasons", [local("a", T), local("a", JUNE)], None, {7: 1, 8: 1},
     "America/Los_Angeles"),
    ("tokyo", [local("a", T, zone=ZoneInfo("Asia/Tokyo"))], None, {-9: 1}, "Asia/Tokyo"),
    ("utc-project", [mix("a", T, mp_processing_time_ms=(T + 5) * 1000)], None, None, None),
    ("zone-given", [local("a", T), local("a", JUNE)], "America/Los_Angeles", None, None),
    ("no-processing-time", [mix("a", T)], None, None, None),
    ("inconsistent", [local("a", T), mix("b", T, mp_processing_time_ms=(T + 5) * 1000),
                      mix("c", T, mp_processing_time_ms=(T + 5) * 1000)], None, None, None),
]


@pytest.mark.parametrize(("rows", "zone", "hours", "suggested"),
                         [case[1:] for case in DETECT_CASES],
                         ids=[case[0] for case in DETECT_CASES])
def test_a_consistent_whole_hour_lag_is_detected_and_names_the_flag(
        rows: list[dict[str, Any]], zone: str | None, hours: dict[int, int] | None,
        suggested: str | None) -> None:
    records, _, summary = run("mixpanel", {"f": rows}, source_zone=zone)
    found = summary.local_times
    if hours is None:
        assert found is None
        assert summary.encode()["local_times"] is None
    else:
        assert found is not None
        assert (found.hours, found.zone) == (hours, suggested)
        assert f"pass --source-timezone {suggested}" in "\n".join(summary.lines())
    if zone is not None:  # the records are at the events' UTC times
        assert [r["time"] for r in records] == [T, JUNE]


def test_the_lag_tally_tolerates_upload_delay_but_not_a_stray_share() -> None:
    tally = LagTally()
    for i in range(9):
        tally.add(T, T + 8 * H + 10 * 60)  # ten minutes late: still +8 h
    tally.add(T, T + 3 * 86400)  # uploaded days later: a stray
    found = tally.detected()
    assert found is not None and found.hours == {8: 9}
    tally.add(T, T + 30)
    tally.add(T, T + 40)
    assert tally.detected() is None  # 9 of 12 is not nearly all


def test_the_cli_takes_an_iana_zone(tmp_path: Path) -> None:
    export = tmp_path / "e.json"
    export.write_bytes(orjson.dumps(local("a", T)) + b"\n")
    out = tmp_path / "o.ndjson"
    result = CliRunner().invoke(convert, ["--from", "mixpanel", str(export), "-o", str(out),
                                          "--source-timezone", "America/Los_Angeles"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(out.read_bytes())["time"] == T
    plain = CliRunner().invoke(convert, ["--from", "mixpanel", str(export), "-o", str(out)])
    assert "pass --source-timezone America/Los_Angeles" in plain.stderr
    assert orjson.loads(Path(f"{out}.summary.json").read_bytes())["local_times"] == {
        "lag_hours": {"+8": 1}, "events": 1, "suggested_zone": "America/Los_Angeles"}


@pytest.mark.parametrize("zone", ["Pacific Time", "PST", "Mars/Olympus_Mons", "../etc/passwd",
                                  ""])
def test_a_zone_that_is_not_an_iana_name_is_one_line_and_exit_2(zone: str,
                                                                tmp_path: Path) -> None:
    export = tmp_path / "e.json"
    export.write_bytes(orjson.dumps(mix("a", T)) + b"\n")
    result = CliRunner().invoke(convert, ["--from", "mixpanel", str(export), "-o",
                                          str(tmp_path / "o.ndjson"), "--source-timezone", zone])
    assert result.exit_code == 2
    assert result.output.startswith("Error: --source-timezone") and result.output.count("\n") == 1
    assert not (tmp_path / "o.ndjson").exists()


# (id, rows as (seconds after T, session_id as seconds after T), expected starts - T)
KEY_START_CASES = [
    ("session-id-earlier", [(40, 0), (100, 0)], [0]),
    ("session-id-later", [(40, 60), (100, 60)], [40]),  # clock skew: the first event wins
    ("split-by-the-gap", [(40, 0), (40 + GAP, 0)], [0, 40 + GAP]),
    ("session-id-a-gap-earlier", [(GAP, 0), (GAP + 10, 0)], [GAP]),  # no start vouched for
    ("two-sessions", [(10, 0), (70, 60), (80, 60)], [0, 60]),
]


@pytest.mark.parametrize(("rows", "expected"), [case[1:] for case in KEY_START_CASES],
                         ids=[case[0] for case in KEY_START_CASES])
def test_amplitude_sessions_start_at_their_session_id_when_earlier(
        rows: list[tuple[int, int]], expected: list[int]) -> None:
    records, _, _ = run("amplitude", {"f": [amp("d", T + t, session=T + k) for t, k in rows]})
    assert [r["time"] - T for r in records] == expected
