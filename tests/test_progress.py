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
    format_eta,
    format_ms,
    format_status,
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
    return base | fields


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
    _row(elapsed_s=10.0, delivered=100_000, lines_read=100_000, bytes_read=10_000,
         bytes_total=100_000),
    _row(elapsed_s=20.0, delivered=85_120, failed=34_577, failed_by_kind=_FAILED,
         lines_read=1_234_567, bytes_read=12_300, bytes_total=100_000, in_flight=64,
         retry_waiting=12, latency_buckets_ms=_latency(*[4.1] * 98, 38.0, 38.0),
         latency_ms={"max": 38.0}),
)
UNKNOWN = _totals(
    _row(elapsed_s=1.0, delivered=10, lines_read=10),
    _row(elapsed_s=2.0, delivered=20, lines_read=30, in_flight=2,
         latency_buckets_ms=_latency(0.42, 0.42), latency_ms={"max": 0.42}),
)
OUTAGE = _totals(_row(elapsed_s=5.0, lines_read=50, bytes_read=50, bytes_total=100,
                      retry_waiting=40, outage=True))
BIG = _totals(_row(elapsed_s=86_000.0, delivered=9_876_543_210, lines_read=9_876_543_210,
                   bytes_read=999_000, bytes_total=1_000_000,
                   latency_buckets_ms=_latency(12_345.0), latency_ms={"max": 12_345.0}))


@pytest.mark.parametrize(
    ("totals", "expected"),
    [
        (KNOWN, ("12.3% 1,234,567 lines | 11,970 rec/s | ETA 2m23s | delivered 185,120 "
                 "skipped 3 failed 34,574 retrying 12 | in flight 64 | p50 4.1 ms p99 38 ms")),
        (UNKNOWN, ("30 lines | 20 rec/s | delivered 30 skipped 0 failed 0 retrying 0 "
                   "| in flight 2 | p50 0.42 ms p99 0.42 ms")),
        (OUTAGE, ("server unavailable: waiting | 50.0% 50 lines | 0 rec/s | ETA 5s | delivered 0 "
                  "skipped 0 failed 0 retrying 40 | in flight 0 | p50 -- p99 --")),
        (Totals(), ("0 lines | 0 rec/s | delivered 0 skipped 0 failed 0 retrying 0 "
                    "| in flight 0 | p50 -- p99 --")),
        (BIG, ("99.9% 9,876,543,210 lines | 0 rec/s | ETA 1m26s | delivered 9,876,543,210 "
               "skipped 0 failed 0 retrying 0 | in flight 0 | p50 12,345 ms p99 12,345 ms")),
    ],
    ids=["known-size", "unknown-size", "outage", "zero-rows", "big-numbers"],
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


def test_full_input_read_is_100_percent_and_never_before() -> None:
    assert format_status(_totals(_row(bytes_read=9_999, bytes_total=10_000))).startswith("99.9%")
    assert format_status(_totals(_row(bytes_read=10_000, bytes_total=10_000))).startswith("100.0%")


def test_top_failure_kinds_leave_out_the_skipped() -> None:
    totals = Totals(failed_by_kind=Counter({"warning": 99, "timeout": 5, "rejected": 5, "a": 1,
                                            "b": 1}))
    assert top_failure_kinds(totals) == [("rejected", 5), ("timeout", 5), ("a", 1)]


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
    for part in ("12.3%", "1,234,567 lines", "ETA 2m23s", "11,970 rec/s", "185,120", "34,574",
                 "in flight 64", "p50 4.1 ms", "p99 38 ms", "timeout 30,000", "rejected 4,000",
                 "server_error 567", "━"):
        assert part in text
    assert "invalid_json" not in text  # only the top 3 kinds
    assert "\x1b[" in text  # drawn for a terminal: styled, redrawn in place


def test_tty_display_without_size_shows_a_spinner_and_the_outage() -> None:
    text = _tty_output(UNKNOWN, final=OUTAGE)
    assert "30 lines" in text and "size unknown" in text
    assert OUTAGE_TEXT in text


def test_tty_close_alone_draws_the_final_state_once() -> None:
    text = _tty_output(final=KNOWN)
    assert text.count("1,234,567 lines") == 1


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
