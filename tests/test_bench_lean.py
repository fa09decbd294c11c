"""bench/lean.py, the lean yardstick: one row per line, with the verdicts of `replayer run`."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from replayer.emulator import FaultConfig
from replayer.engine.control import RunControl
from replayer.engine.replay import replay
from replayer.engine.retry import RetryPolicy
from replayer.output.layout import FAILURES, RESULTS
from tests.conftest import (
    REPO,
    TEST_APP_ID,
    TEST_KEY,
    StartEmulator,
    generated,
    read_rows,
    settings_for,
)

pytest.importorskip("msgspec", reason="bench/lean.py needs the bench extra")
sys.path.insert(0, str(REPO / "bench"))
import lean

# Lines that take every way through the fast path and out of it: each needs normalising
# (kept valid) or is refused by the validator (its kind).
ODD_LINES = [
    b'not json',
    b'[1, 2]',
    b'{"deviceId": "d-spaced", "time": 1767229427.5}',  # whitespace: still the line's bytes
    b'\xef\xbb\xbf{"userId": "bom", "time": 1767229427.5}',
    b'{"userId": "cr", "time": 1767229427.5}\r',
    b'{"userId": "whole", "time": 1767229427.0}',
    b'{"userId": "iso", "time": "2026-01-01T00:00:00Z"}',
    b'{"userId": "future", "time": 99999999999}',
    b'{"userId": "", "deviceId": "empty-user"}',
    b'{"time": 1767229427.5}',
    b'{"userId": 7}',
    b'{"userId": "' + b"x" * 401 + b'"}',
    b'{"userId": "unknown", "colour": "red"}',
    b'{"userId": "secret", "clientKey": "k"}',
    b'{"userId": "nested", "userAttributes": {"appId": 1}}',
    b'{"userId": "attrs", "userAttributes": {"plan": "a", "n": [1, 2]}}',
    b'{"userId": "attrs-text", "userAttributes": "{\\"plan\\":\\"b\\"}"}',
    b'{"userId": "bad-name", "userAttributes": {"-x": 1}}',
    b'{"userId": "push", "webPushSubscription": {"endpoint": "e"}}',
    b'{"userId": "push-text", "webPushSubscription": "not an object"}',
    b'{"userId": "country", "country": "Poland"}',
    b'{"userId": "where", "location": "91,0"}',
    b'{"userId": "mode", "createDisposition": "Sometimes"}',
    b'{"userId": "offset", "timezoneOffsetSeconds": 3600.0}',
    b'{"userId": "blocked-user", "time": 1767229428.5}',
    b'{"userId": "blocked-user", "time": 1767229429.5}',
]


def kinds(out: Path) -> dict[int, str]:
    """line -> "delivered" or the failure kind; fails on a line with two rows."""
    found: dict[int, str] = {}
    rows: list[tuple[int, str]] = [(r["line"], r["status"]) for r in read_rows(out / RESULTS)]
    rows += [(r["line"], r["kind"]) for r in read_rows(out / FAILURES)]
    for line, kind in rows:
        assert line not in found, f"line {line} has two rows"
        found[line] = kind
    return found


@pytest.mark.parametrize("batch", [True, False], ids=["batched", "no-batch"])
async def test_lean_writes_one_row_per_line_with_the_verdicts_of_replayer_run(
    start_emulator: StartEmulator, tmp_path: Path, batch: bool
) -> None:
    source = generated(tmp_path / "gen.ndjson", records=300, users=30)
    path = tmp_path / "in.ndjson"
    lines = source.read_bytes().splitlines()
    for i, odd in enumerate(ODD_LINES):  # spread through the file, one blank line too
        lines.insert(7 * i + 3, odd)
    lines.insert(100, b"")
    path.write_bytes(b"\n".join(lines) + b"\n")
    emulator = await start_emulator(blocked_users=frozenset({"blocked-user"}),
                                    faults=FaultConfig(status_503=0.2), seed=3)
    settings = settings_for(emulator.url, max_attempts=30, batch=batch)
    tree, yardstick = tmp_path / "tree", tmp_path / "lean"
    tree.mkdir()
    await replay(settings, [str(path)], tree, control=RunControl(), rng=random.Random(1))

    runner = lean.Lean(path, yardstick, endpoint=emulator.url, app_id=TEST_APP_ID, key=TEST_KEY,
                       concurrency=8, timeout_s=5.0,
                       retry=RetryPolicy(max_attempts=30, base_s=0.01, max_s=0.05),
                       batch=batch)
    await runner.run()

    expected = kinds(tree)
    got = kinds(yardstick)
    assert len(got) == len(lines) - 1 == runner.lines  # the blank line has no row
    assert got == expected
    assert set(expected.values()) >= {"delivered", "invalid_json", "not_an_object",
                                      "missing_user_id", "wrong_type", "id_too_long",
                                      "unknown_field", "secret_field", "config_field",
                                      "invalid_attribute_name", "invalid_value",
                                      "invalid_time",
                                      # a blocked user's answer, inside a multi or alone
                                      "rejected" if batch else "blocked"}
    journal = (yardstick / "journal.log").read_bytes().splitlines()
    assert len(journal) == runner.requests > 0  # one journal line per request
    if not batch:  # one record per request, each a `start` call (both runs)
        assert all(len(orjson.loads(line)[1]) == 1 for line in journal)
        counters = (await emulator.state())["counters"]
        assert set(counters["requests_by_action"]) == {"start"}


def test_the_fast_path_sends_what_the_validator_would() -> None:
    from replayer.records import RawLine, Session
    from replayer.source.validate import parse_line

    later = 2e9
    checked: list[Any] = []
    for n, data in enumerate(ODD_LINES, start=1):
        record = lean.Lean._one(data)
        sent = lean.fast_line(record, data, later) if record is not None else None
        if sent is not None:
            parsed = parse_line(RawLine("f", n, data), now_s=later - 86400.0)
            assert isinstance(parsed, Session)
            assert lean.orjson.loads(sent) == lean.orjson.loads(parsed.body)
            checked.append(data)
    assert len(checked) >= 3  # the spaced line, and attributes and text attributes spliced
