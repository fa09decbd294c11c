"""Identity in `replayer convert`: a change of user ID inside a session (login, logout, an
identity merge) starts a new session under the new ID, and anonymous IDs are device IDs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from replayer.commands.convert import convert
from replayer.source.convert.pipeline import ConvertOptions
from replayer.source.convert.pipeline import convert as run_conversion
from replayer.source.convert.readers import ExportLine
from replayer.source.convert.sources import builtin_mapping
from tests.test_convert_sessions import GAP, T, amp, ga4, mix, run

DEV = "$device:0f3c"  # Mixpanel ID merge's anonymous distinct_id


def amp_as(user_id: str | None, t: int, session: int = 0) -> dict[str, Any]:
    """An Amplitude row of device d in session T + `session`, under `user_id`."""
    return {**amp("d", T + t, session=T + session), "user_id": user_id}


def ga4_as(user_id: str | None, t: int) -> dict[str, Any]:
    row = ga4("p", T + t, 7)
    return row if user_id is None else {**row, "user_id": user_id}


def ids(records: list[dict[str, Any]]) -> list[tuple[str | None, str | None, float]]:
    return [(r.get("userId"), r.get("deviceId"), r["time"] - T) for r in records]


# (id, source, rows, expected (userId, deviceId, start - T) per session)
CHANGE_CASES = [
    ("amplitude-login", "amplitude", [amp_as(None, 0), amp_as("u1", 60), amp_as("u1", 120)],
     [(None, "d", 0), ("u1", "d", 60)]),
    ("amplitude-logout", "amplitude", [amp_as("u1", 0), amp_as(None, 60)],
     [("u1", "d", 0), (None, "d", 60)]),
    ("amplitude-switch", "amplitude", [amp_as("u1", 0), amp_as("u2", 60), amp_as("u2", 90)],
     [("u1", "d", 0), ("u2", "d", 60)]),
    ("amplitude-switch-back", "amplitude",
     [amp_as("u1", 0), amp_as("u2", 60), amp_as("u1", 90)],
     [("u1", "d", 0), ("u2", "d", 60), ("u1", "d", 90)]),
    ("amplitude-same-user", "amplitude", [amp_as("u1", 0), amp_as("u1", 60)],
     [("u1", "d", 0)]),
    ("amplitude-gap-rule-login", "amplitude",
     [{**amp("d", T), "user_id": None}, {**amp("d", T + 60), "user_id": "u1"}],
     [(None, "d", 0), ("u1", "d", 60)]),
    ("ga4-login", "ga4", [ga4_as(None, 0), ga4_as("g1", 30), ga4_as("g1", 40)],
     [(None, "p", 0), ("g1", "p", 30)]),
    ("mixpanel-merge", "mixpanel",
     [mix(DEV, T, **{"$device_id": "0f3c"}),
      mix("u1", T + 60, **{"$user_id": "u1", "$distinct_id_before_identity": DEV}),
      mix("u1", T + 90, **{"$user_id": "u1", "$device_id": "0f3c"})],
     [(None, "0f3c", 0), ("u1", "0f3c", 60)]),
]


@pytest.mark.parametrize(("source", "rows", "expected"), [c[1:] for c in CHANGE_CASES],
                         ids=[c[0] for c in CHANGE_CASES])
def test_a_change_of_user_id_starts_a_session_under_the_new_id(
        source: str, rows: list[dict[str, Any]],
        expected: list[tuple[str | None, str | None, float]]) -> None:
    records, refused, summary = run(source, {"f": rows})
    assert ids(records) == expected
    assert not refused and summary.events_in_sessions == len(rows)


# (id, Mixpanel properties besides time and distinct_id, distinct_id, expected (userId,
# deviceId) by default, with --anonymous-as-user)
ANONYMOUS_CASES = [
    ("device-prefix", {}, DEV, (None, "0f3c"), (DEV, None)),
    ("device-prefix-and-device-id", {"$device_id": "0f3c"}, DEV, (None, "0f3c"),
     (DEV, "0f3c")),
    ("distinct-id-is-the-device", {"$device_id": "5e1d-uuid"}, "5e1d-uuid",
     (None, "5e1d-uuid"), ("5e1d-uuid", "5e1d-uuid")),
    ("identified", {"$user_id": "u1", "$device_id": "0f3c"}, "u1", ("u1", "0f3c"),
     ("u1", "0f3c")),
    ("legacy-identified", {}, "u1", ("u1", None), ("u1", None)),
    ("before-identity-is-the-device", {"$distinct_id_before_identity": DEV}, "u1",
     ("u1", "0f3c"), ("u1", "0f3c")),
]


@pytest.mark.parametrize("as_user", [False, True], ids=["default", "anonymous-as-user"])
@pytest.mark.parametrize(("props", "distinct_id", "default", "as_user_ids"),
                         [c[1:] for c in ANONYMOUS_CASES], ids=[c[0] for c in ANONYMOUS_CASES])
def test_anonymous_ids_are_device_ids_unless_asked(props: dict[str, Any], distinct_id: str,
                                                   default: tuple[str | None, str | None],
                                                   as_user_ids: tuple[str | None, str | None],
                                                   as_user: bool) -> None:
    line = ExportLine("f", 1, orjson.dumps(mix(distinct_id, T, **props)))
    out = io.BytesIO()
    run_conversion(builtin_mapping("mixpanel"), [line], out=out, rejects=io.BytesIO(),
                   options=ConvertOptions(now_s=T + 86400, gap_s=GAP, anonymous_as_user=as_user))
    (record,) = [orjson.loads(r) for r in out.getvalue().splitlines()]
    assert (record.get("userId"), record.get("deviceId")) == (as_user_ids if as_user else default)


def test_the_cli_flag_keeps_anonymous_ids_as_user_ids(tmp_path: Path) -> None:
    export = tmp_path / "e.json"
    export.write_bytes(orjson.dumps(mix(DEV, T)) + b"\n")
    out = tmp_path / "o.ndjson"
    for flags, expected in (([], {"deviceId": "0f3c"}), (["--anonymous-as-user"],
                                                         {"userId": DEV})):
        result = CliRunner().invoke(convert, ["--from", "mixpanel", str(export), "-o", str(out),
                                              *flags])
        assert result.exit_code == 0, result.output
        assert orjson.loads(out.read_bytes()) == {**expected, "time": T}
