"""results.ndjson's row of a delivered record, whatever shape the server's element has."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from replayer.engine.classify import Outcome, Verdict
from replayer.engine.lanes import Work
from replayer.output.sinks import result_row
from replayer.records import Session


def work(**state: Any) -> Work:
    w = Work(Session("in.ndjson", 7, "u1", "d1", b'{"userId":"u1"}', b'{"userId":"u1"}',
                     pass_no=state.pop("pass_no", 1)))
    w.attempts, w.latency_ms = 2, 12.34567
    for name, value in state.items():
        setattr(w, name, value)
    return w


@pytest.mark.parametrize(("element", "vars", "variants"), [
    (None, 0, []), ({}, 0, []), ({"success": True}, 0, []),
    ({"vars": {"a": 1, "b": {"c": 2}}, "variants": [{"id": 11}, {"id": "x"}]}, 2, [11, "x"]),
    ({"vars": {}, "variants": []}, 0, []),
    ({"vars": [1, 2, 3], "variants": [{"id": 1}, 5, "s", None, {"no": "id"}]}, 3, [1, None]),
    # what a broken or hostile server may put there: counted as nothing, never a crash
    ({"vars": 5, "variants": 5}, 0, []), ({"vars": True, "variants": True}, 0, []),
    ({"vars": "abc", "variants": "ab"}, 0, []), ({"vars": None, "variants": None}, 0, []),
    ({"vars": 0.5, "variants": {"id": 1}}, 0, []),
])
def test_vars_and_variants_of_any_element(element: Any, vars: int, variants: list[Any]) -> None:
    row = result_row(work(), Outcome(Verdict.DELIVERED, "", "", 200, element),
                     save_response=True)
    assert (row["vars"], row["variants"]) == (vars, variants)
    assert row["response"] == (element or {})
    orjson.dumps(row)  # always writable


def test_the_row_in_order_and_its_marks() -> None:
    element = {"vars": {"a": 1}, "variants": [{"id": 3}]}
    plain = result_row(work(), Outcome(Verdict.DELIVERED, "", "", 200, element),
                       save_response=False, status="dry_run")
    assert list(plain.items()) == [
        ("file", "in.ndjson"), ("line", 7), ("userId", "u1"), ("deviceId", "d1"),
        ("status", "dry_run"), ("http_status", 200), ("attempts", 2), ("latency_ms", 12.346),
        ("vars", 1), ("variants", [3])]
    marked = result_row(work(ambiguous=1, resent=True, pass_no=3),
                        Outcome(Verdict.DELIVERED, "", "", 200, element), save_response=False)
    assert list(marked)[-3:] == ["ambiguous_attempts", "possible_duplicate", "pass"]
    assert (marked["ambiguous_attempts"], marked["possible_duplicate"], marked["pass"]) == (
        1, True, 3)
    assert "response" not in marked
