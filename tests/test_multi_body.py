"""The `multi` body: every action is the record's parameters after `"action":"start"`, with the
record's own time or, for a record without one, the request's."""

from __future__ import annotations

import orjson

from replayer.engine.lanes import Work
from replayer.engine.send import auth_prefix, multi_body
from replayer.records import Session


def _work(body: bytes, time_s: float | None) -> Work:
    return Work(Session("in.ndjson", 1, "u1", None, body, body, time_s))


def test_each_action_carries_its_record_and_its_own_time_or_the_requests() -> None:
    works = [
        _work(b'{"userId":"u1","time":1700000000.5}', 1700000000.5),
        _work(b'{"userId":"u2","locale":"en_US"}', None),
        _work(b"{}", None),  # not a valid record (no ID), but the body is still JSON
        _work(b"{}", 1.0),
    ]
    body = multi_body(auth_prefix("app", "key"), works, now_s=1800000000.25)
    parsed = orjson.loads(body)
    assert parsed == {
        "appId": "app", "clientKey": "key", "apiVersion": parsed["apiVersion"],
        "time": 1800000000.25,
        "data": [
            {"action": "start", "userId": "u1", "time": 1700000000.5},
            {"action": "start", "time": 1800000000.25, "userId": "u2", "locale": "en_US"},
            {"action": "start", "time": 1800000000.25},
            {"action": "start"},
        ],
    }
    # the record's own bytes, member for member, after the action's opening
    assert b'{"action":"start","userId":"u1","time":1700000000.5}' in body
