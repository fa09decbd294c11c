"""An endpoint that cannot be reached is an outage, never a record's failure: the run
waits, stops resumable at the outage limit, and its resume delivers every line once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from replayer.engine.attempt import Attempter
from replayer.engine.flow import Flow
from replayer.engine.health import Health
from replayer.engine.lanes import Lane, Lanes, Work
from replayer.engine.outage import Outage
from replayer.output.layout import FAILURES, RESULTS
from replayer.records import Attempt, ExitCode, Session
from tests.conftest import (
    FakeClock,
    StartEmulator,
    closed_port,
    generated,
    input_records,
    read_rows,
    run_cli,
    summary_of,
)

REFUSED = Attempt(None, None, "connect", "Connection refused", sent=False)
CONNECT_TIMEOUT = Attempt(None, None, "timeout", sent=False)
LOST = Attempt(None, None, "disconnected", "Server disconnected")  # sent, answer lost
OK = Attempt(200, b'{"response":[{"success":true}]}')
DOWN_503 = Attempt(503, None)


def outage(clock: FakeClock, *, limit_s: float = 900.0, flow: Flow | None = None) -> Outage:
    return Outage(window_s=60.0, probe_max_s=30.0, limit_s=limit_s, clock=clock,
                  flow=flow or Flow(Lanes(lane_cap=16)))


@pytest.mark.parametrize(("attempts", "down"), [
    ([REFUSED], True),
    ([CONNECT_TIMEOUT], True),
    ([LOST], True),  # the endpoint never answered yet: not known to be up
    ([OK, LOST], False),  # known up: the record's own lost answer, no outage
    ([OK, REFUSED], True),
    ([REFUSED, OK], False),
    ([REFUSED, DOWN_503], False),  # reachable again; 5xx only count over the window
    ([DOWN_503, DOWN_503, DOWN_503], False),
], ids=["refused", "connect-timeout", "lost-before-up", "lost-after-up", "refused-after-up",
        "back", "503-after-refused", "503s-within-window"])
def test_what_puts_the_run_into_an_outage(attempts: list[Attempt], down: bool) -> None:
    clock = FakeClock()
    watch = outage(clock)
    for attempt in attempts:
        watch.note(attempt)
    assert watch.down() is down


def test_health_unreachable_is_down_until_an_answer() -> None:
    health = Health(window_s=60.0, probe_max_s=30.0, last_ok_s=0.0)
    health.cut_off(now_s=1.0)
    assert health.down(now_s=1.0)
    health.reachable()
    assert not health.down(now_s=1.0)
    assert health.down(now_s=61.0) is False, "one failure is not an outage over the window"


async def test_the_outage_limit_stops_the_run_with_a_resumable_code() -> None:
    clock = FakeClock()
    flow = Flow(Lanes(lane_cap=16))
    watch = outage(clock, limit_s=5.0, flow=flow)
    watch.note(REFUSED)
    while flow.abort is None:
        assert watch.down()
        await watch.probe_turn()
        watch.note(REFUSED)  # the probe fails too
    assert flow.abort.code == ExitCode.OUTAGE and ExitCode.OUTAGE.resumable
    assert clock.sleeps == [1.0, 2.0, 2.0], "probes 1 s, then 2 s, the last cut at the limit"
    assert clock.now_s - 1000.0 == 5.0


# ---- end to end: a port nobody listens on, then the emulator on it ---------------------

def assert_delivered_once(state: dict[str, Any], data: Path) -> None:
    """The emulator took each input record once: as many actions per user as it has lines."""
    taken = Counter({user: len(actions) for user, actions in state["users"].items()})
    expected = Counter(r.get("userId") or r["deviceId"] for _, r in input_records(data))
    assert taken == expected
    assert state["counters"]["actions_accepted"] == expected.total()


@pytest.mark.parametrize(("records", "workers"), [(50_000, "1"), (3_000, "2")],
                         ids=["50k", "workers-2"])
async def test_an_unreachable_endpoint_fails_no_record_and_the_resume_sends_them_all(
    start_emulator: StartEmulator, tmp_path: Path, records: int, workers: str
) -> None:
    data = generated(tmp_path / "in.ndjson", records=records, users=records // 10)
    out, port = tmp_path / "out", closed_port()

    code, output = await run_cli(data, out, port, "--workers", workers)

    assert code == ExitCode.OUTAGE, output
    assert read_rows(out / FAILURES) == [] and read_rows(out / RESULTS) == []
    summary = summary_of(out)
    assert (summary["failed"], summary["delivered"], summary["state"]) == (0, 0, "aborted")
    assert summary["resume_with"] and "resume with:" in output
    assert "--outage-limit" in output

    emulator = await start_emulator(port=port)
    code, output = await run_cli(data, out, port, "--workers", workers, "--resume")

    assert code == ExitCode.OK, output
    rows = read_rows(out / RESULTS)
    assert sorted(r["line"] for r in rows) == [n for n, _ in input_records(data)]
    assert read_rows(out / FAILURES) == []
    assert_delivered_once(await emulator.state(), data)
    assert summary_of(out)["possible_duplicates"] == 0, "nothing had reached a server"


# ---- what the journal hears of a request that never left -------------------------------


async def test_a_request_that_never_left_is_journaled_unless_an_earlier_try_may_have_landed(
) -> None:
    clock, noted = FakeClock(), []

    async def refused(url: str, body: bytes, *, actions: int) -> Attempt:
        return REFUSED

    def work(line_no: int, **state: Any) -> Work:
        return Work(Session("f", line_no, f"u{line_no}", None, b"{}", b"{}"), **state)

    works = (work(1), work(2, ambiguous=1), work(3, resent=True))
    attempter = Attempter(poster=refused, url="http://127.0.0.1:9/api", auth=b"{", batch=True,
                          clock=clock, outage=outage(clock),
                          before_send=lambda lines: None, never_left=noted.append)

    await attempter.attempt(tuple((Lane(w.session.lane), (w,)) for w in works),
                            planned_s=clock.now())

    assert noted == [[("f", 1)]], "2 may have landed before, 3 may have in an earlier run"
