"""The progress display: the plain status line, its cadence off a TTY, the rich display on one."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import pytest
from rich.console import Console

from replayer.observe.live import Totals
from replayer.observe.progress import (
    OUTAGE_TEXT,
    Progress,
    Tally,
    format_eta,
    format_ms,
    format_status,
    format_tally,
    percent_done,
    percent_of,
    render,
    top_failure_kinds,
)
from replayer.observe.stats import Histogram


def _row(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "elapsed_s": 1.0, "requests": 0, "delivered": 0, "failed": 0, "failed_by_kind": {},
        "retries": 0, "latency_buckets_ms": [], "latency_ms": {}, "latency_sum_ms": 0.0,
        "in_flight": 0, "retry_waiting": 0, "pending": 0, "lines_read": 0, "bytes_read": 0,
        "bytes_total": None, "outage": False,
    }
    row = base | fields
    # Unless a test says otherwise: no shard (every line read is owned), the reader not ahead.
    row.setdefault("records_seen", row.get("records_read", 0))
    if "records_read" in fields and "lines_read" not in fields:
        row["lines_read"] = row["records_read"]
    return row


def _totals(*rows: dict[str, Any]) -> Totals:
    totals = Totals()
    for row in rows:
        totals.add("metrics.ndjson", row)
        totals.mark()  # as Follower.poll does after each poll
    return totals


def _latency(*values_ms: float) -> list[list[float]]:
    h = Histogram()
    for v in values_ms:
        h.add(v)
    return h.buckets_ms()


_FAILED = {"warning": 3, "timeout": 30_000, "rejected": 4_000, "server_error": 567,
           "invalid_json": 7}
KNOWN = _totals(
    _row(elapsed_s=10.0, delivered=100_000, lines_read=100_000, records_read=100_000,
         bytes_read=10_000, bytes_total=1_000_000),
    _row(elapsed_s=20.0, delivered=85_120, failed=34_577, failed_by_kind=_FAILED,
         lines_read=246_000, records_read=246_000, bytes_read=246_000, bytes_total=1_000_000,
         in_flight=64, retry_waiting=12, pending=26_303,
         latency_buckets_ms=_latency(*[4.1] * 98, 38.0, 38.0), latency_ms={"max": 38.0}),
)
UNKNOWN = _totals(
    _row(elapsed_s=1.0, delivered=10, lines_read=10, records_read=10),
    _row(elapsed_s=2.0, delivered=20, lines_read=30, records_read=30, in_flight=2, pending=10,
         latency_buckets_ms=_latency(0.42, 0.42), latency_ms={"max": 0.42}),
)
OUTAGE = _totals(_row(elapsed_s=5.0, lines_read=50, records_read=50, bytes_read=50,
                      bytes_total=100, retry_waiting=40, pending=50, outage=True))
BIG = _totals(
    _row(elapsed_s=85_990.0, delivered=9_876_543_200, lines_read=9_876_543_210,
         records_read=9_876_543_210, bytes_read=1_000_000, bytes_total=1_000_000,
         input_ended=True, pending=10),
    _row(elapsed_s=86_000.0, delivered=5, lines_read=9_876_543_210, records_read=9_876_543_210,
         bytes_read=1_000_000, bytes_total=1_000_000, input_ended=True, pending=5,
         latency_buckets_ms=_latency(12_345.0), latency_ms={"max": 12_345.0}))
RESUMED = _totals(
    _row(elapsed_s=2.0, delivered=400, failed=20, failed_by_kind={"timeout": 20},
         lines_read=2_000, records_read=1_990, bytes_read=2_000, bytes_total=2_000,
         input_ended=True, prior_delivered=800, prior_failed_by_kind={"warning": 4, "rejected": 6},
         pending=760))


@pytest.mark.parametrize(
    ("totals", "expected"),
    [
        (KNOWN, ("21.9% of records finished (219,697 of ~1,000,000) | 11,970 records/s "
                 "| ETA 1m05s | delivered 185,120 failed 34,577 (3 received with a warning) "
                 "| users waiting to retry 12 | requests in flight 64 "
                 "| latency p50 4.1 ms p99 38 ms")),
        (UNKNOWN, ("30 records finished | 20 records/s | delivered 30 failed 0 "
                   "| users waiting to retry 0 | requests in flight 2 "
                   "| latency p50 0.42 ms p99 0.42 ms")),
        (OUTAGE, ("server unavailable: waiting | 0.0% of records finished (0 of ~100) "
                  "| 0 records/s | ETA -- | delivered 0 failed 0 | users waiting to retry 40 "
                  "| requests in flight 0 | latency p50 -- p99 --")),
        (Totals(), ("0 records finished | 0 records/s | delivered 0 failed 0 "
                    "| users waiting to retry 0 | requests in flight 0 | latency p50 -- p99 --")),
        (BIG, ("99.9% of records finished (9,876,543,205 of 9,876,543,210) | 0 records/s "
               "| ETA 10s | delivered 9,876,543,205 failed 0 | users waiting to retry 0 "
               "| requests in flight 0 | latency p50 12,345 ms p99 12,345 ms")),
        (RESUMED, ("61.8% of records finished (1,230 of 1,990) | 0 records/s | ETA -- "
                   "| delivered 1,200 (800 before this session) "
                   "failed 30 (4 received with a warning, 10 before this session) "
                   "| users waiting to retry 0 | requests in flight 0 | latency p50 -- p99 --")),
    ],
    ids=["known-size", "unknown-size", "outage", "zero-rows", "big-numbers", "resumed"],
)
def test_format_status(totals: Totals, expected: str) -> None:
    assert format_status(totals) == expected


@pytest.mark.parametrize(
    ("eta_s", "expected"),
    [(None, "--"), (float("inf"), "--"), (-1.0, "0s"), (0.4, "0s"), (42.0, "42s"),
     (252.0, "4m12s"), (3599.6, "1h00m"), (11_100.0, "3h05m"), (400_000.0, "111h06m")],
    ids=["unknown", "infinite", "negative", "under-1s", "seconds", "minutes", "rounds-up",
         "hours", "days"],
)
def test_format_eta(eta_s: float | None, expected: str) -> None:
    assert format_eta(eta_s) == expected


@pytest.mark.parametrize(
    ("value_ms", "expected"),
    [(None, "--"), (0.123, "0.12 ms"), (4.14, "4.1 ms"), (38.2, "38 ms"), (1234.5, "1,234 ms")],
    ids=["empty", "sub-ms", "ms", "tens", "thousands"],
)
def test_format_ms(value_ms: float | None, expected: str) -> None:
    assert format_ms(value_ms) == expected


@pytest.mark.parametrize(
    ("done", "known", "exact", "unfinished", "expected"),
    [(0, 0, True, 0, 100.0), (0, 0, False, 0, 0.0), (123, 1000, True, 0, 12.3),
     (1, 3, True, 0, 33.3), (9_999, 10_000, True, 0, 99.9), (199_999, 200_000, True, 0, 99.9),
     (1000, 1000, True, 0, 100.0), (1000, 1000, False, 0, 99.9), (1000, 1000, True, 1, 99.9),
     (1200, 1000, True, 0, 100.0)],
    ids=["empty-input", "nothing-known", "rounds-down", "a-third", "one-left",
         "one-of-200k-left", "all-done", "estimate-never-100", "one-in-flight",
         "more-rows-than-known"],
)
def test_percent_of(done: int, known: int, exact: bool, unfinished: int,
                    expected: float) -> None:
    assert percent_of(done, known, exact=exact, unfinished=unfinished) == expected


@pytest.mark.parametrize(
    ("tally", "expected"),
    [(Tally(), "delivered 0 failed 0"),
     (Tally(delivered=5, failed=3, warned=3), "delivered 5 failed 3 (3 received with a warning)"),
     (Tally(delivered=1_200, delivered_before=800),
      "delivered 1,200 (800 before this session) failed 0"),
     (Tally(delivered=1, failed=27, warned=2, failed_before=20),
      "delivered 1 failed 27 (2 received with a warning, 20 before this session)")],
    ids=["nothing", "warnings-are-failure-rows", "resumed", "both-notes"],
)
def test_format_tally(tally: Tally, expected: str) -> None:
    assert format_tally(tally) == expected


def _reading(**fields: Any) -> dict[str, Any]:
    return _row(bytes_total=1_000, **fields)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # Bytes all read, records still going out: the old display said 100% and ETA 0s.
        ([_reading(records_read=100, bytes_read=1_000, input_ended=True, delivered=60,
                   pending=40, in_flight=10, retry_waiting=30)], "60.0%"),
        # The reader is ahead of the sends: the share is of records, not of bytes.
        ([_reading(records_read=50, bytes_read=500, delivered=10, pending=40)], "10.0%"),
        # The last record waits for a retry.
        ([_reading(records_read=1_000, bytes_read=1_000, input_ended=True, delivered=999,
                   pending=1, retry_waiting=1)], "99.9%"),
        ([_reading(records_read=1_000, bytes_read=1_000, input_ended=True, delivered=990,
                   failed=10, failed_by_kind={"timeout": 10})], "100.0%"),
    ],
    ids=["retries-draining", "reader-ahead", "last-one-waits", "all-rows-written"],
)
def test_percent_counts_records_finished_not_bytes_read(rows: list[dict[str, Any]],
                                                        expected: str) -> None:
    assert format_status(_totals(*rows)).startswith(expected)


def test_eta_comes_from_records_left_at_the_recent_pace() -> None:
    # 900 rows in 10 s, 100 records left, all read: 100 / 90 per s.
    totals = _totals(
        _reading(elapsed_s=10.0, records_read=1_000, bytes_read=1_000, input_ended=True,
                 pending=1_000),
        _reading(elapsed_s=20.0, records_read=1_000, bytes_read=1_000, input_ended=True,
                 delivered=900, pending=100))
    assert totals.eta_s() == pytest.approx(100 / 90)
    # A slow run whose reader is far ahead: the ETA is of the records, not of the bytes.
    slow = _totals(
        _reading(elapsed_s=10.0, records_read=500, bytes_read=500, pending=500),
        _reading(elapsed_s=20.0, records_read=600, bytes_read=600, delivered=20, pending=580))
    assert slow.eta_s() == pytest.approx((1_000 - 20) / 2)


@pytest.mark.parametrize(
    ("reading", "expected"),
    [({"lines_read": 60_000, "records_read": 50_000}, 200_000),
     ({"lines_read": 60_000, "blank_lines": 6_000, "records_read": 45_000}, 180_000),
     ({"lines_read": 60_000, "records_read": 25_000, "records_seen": 50_000}, 100_000),
     ({"lines_read": 60_000, "records_read": 0, "records_seen": 0}, None)],
    ids=["reader-ahead-of-the-intake", "blank-lines", "a-shard-owns-half", "nothing-taken-yet"],
)
def test_records_known_are_extrapolated_from_what_the_reader_read(
    reading: dict[str, int], expected: int | None
) -> None:
    totals = _totals(_row(bytes_read=60_000, bytes_total=200_000, **reading))
    known = totals.records_known()
    assert (None if known is None else known[0]) == expected


def test_workers_reach_100_only_when_every_worker_ended_its_input() -> None:
    totals = Totals(sources_expected=2)
    totals.add("0", _reading(records_read=10, bytes_read=1_000, input_ended=True, delivered=10))
    assert percent_done(totals) == 0.0, "the other worker has not said how far it got"
    totals.add("1", _reading(records_read=5, bytes_read=500, delivered=5))
    assert percent_done(totals) == 75.0  # 15 of ~20
    totals.add("1", _reading(records_read=10, bytes_read=1_000, input_ended=True, delivered=5))
    assert percent_done(totals) == 100.0
    assert Tally.of(totals).delivered == 20


def test_top_failure_kinds_name_warnings_and_earlier_sessions_too() -> None:
    totals = Totals(failed_by_kind=Counter({"warning": 99, "timeout": 5, "rejected": 5, "a": 1,
                                            "b": 1}))
    assert top_failure_kinds(totals) == [("warning", 99), ("rejected", 5), ("timeout", 5)]
    totals.add("m", _row(prior_failed_by_kind={"a": 10}))
    assert top_failure_kinds(totals) == [("warning", 99), ("a", 11), ("rejected", 5)]


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_plain_lines_come_once_per_interval_then_a_last_one_on_close() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(stream=out, tty=False, interval_s=10.0, now=clock)
    written = []
    for _ in range(25):  # one update a second for 25 s
        clock.now_s += 1.0
        progress.update(UNKNOWN)
        written.append(out.getvalue().count("\n"))
    assert written[8] == 0 and written[9] == 1  # the first line after 10 s, not at once
    assert written[18] == 1 and written[19] == 2
    assert written[-1] == 2
    progress.close(KNOWN)
    progress.close(KNOWN)
    progress.update(KNOWN)
    lines = out.getvalue().splitlines()
    assert lines == [format_status(UNKNOWN)] * 2 + [format_status(KNOWN)]
    assert "\x1b" not in out.getvalue()


def test_a_late_update_does_not_shift_the_cadence_into_a_burst() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(stream=out, tty=False, interval_s=10.0, now=clock)
    clock.now_s += 35.0  # the caller was stalled
    progress.update(UNKNOWN)
    progress.update(UNKNOWN)
    clock.now_s += 9.9
    progress.update(UNKNOWN)
    assert out.getvalue().count("\n") == 1


def _tty_output(*updates: Totals, final: Totals) -> str:
    out = io.StringIO()
    progress = Progress(stream=out, tty=True, interval_s=10.0)
    for totals in updates:
        progress.update(totals)
    progress.close(final)
    return out.getvalue()


def test_tty_display_shows_bar_counts_latency_and_top_failures() -> None:
    text = _tty_output(KNOWN, KNOWN, final=KNOWN)
    for part in ("21.9%", "219,697 of ~1,000,000", "ETA 1m05s", "11,970 records/s", "185,120",
                 "34,577", "in flight 64", "p50 4.1 ms", "p99 38 ms", "timeout 30,000",
                 "rejected 4,000", "server_error 567", "━"):
        assert part in text
    assert "invalid_json" not in text  # only the top 3 kinds
    assert "\x1b[" in text  # drawn for a terminal: styled, redrawn in place


def test_tty_display_without_size_shows_a_spinner_and_the_outage() -> None:
    text = _tty_output(UNKNOWN, final=OUTAGE)
    assert "30 records finished" in text and "total unknown" in text
    assert OUTAGE_TEXT in text


def test_tty_close_alone_draws_the_final_state_once() -> None:
    text = _tty_output(final=KNOWN)
    assert text.count("219,697 of") == 1


def test_render_fits_a_narrow_terminal() -> None:
    narrow = io.StringIO()
    Console(file=narrow, width=40, color_system=None).print(render(KNOWN))
    assert all(len(line) <= 40 for line in narrow.getvalue().splitlines())


@pytest.mark.parametrize("tty", [True, False], ids=["tty", "plain"])
def test_no_output_names_the_client_key(tty: bool) -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(stream=out, tty=tty, interval_s=1.0, now=clock)
    for totals in (KNOWN, UNKNOWN, OUTAGE, BIG, Totals()):
        clock.now_s += 1.0
        progress.update(totals)
    progress.close(KNOWN)
    assert out.getvalue()
    assert "clientkey" not in out.getvalue().lower()
    for totals in (KNOWN, UNKNOWN, OUTAGE, BIG, Totals()):
        assert "clientkey" not in format_status(totals).lower()
