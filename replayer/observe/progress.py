"""The live progress display of a run: a redrawn rich panel on a terminal, plain lines elsewhere.

`format_status` is pure; `Progress` only renders the `Totals` it is handed, so the caller
decides when (about once a second) and the display never touches the pipeline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from replayer.observe.live import Totals
from replayer.observe.logs import json_line
from replayer.records import FailureKind

WARNING_TEXT = "received with a warning"
BEFORE_TEXT = "before this session"
OUTAGE_TEXT = "server unavailable: waiting"
TOP_KINDS = 3
_BAR_WIDTH = 40


@dataclass(frozen=True, slots=True)
class Tally:
    """The rows of the whole run, as summary.json counts them, and how many came before
    this session (a resume). `failed` counts every failure row, `warned` those among them
    that are warnings (a 200 with a warning: received, most likely not taken)."""

    delivered: int = 0
    failed: int = 0
    warned: int = 0
    delivered_before: int = 0
    failed_before: int = 0

    @classmethod
    def of(cls, totals: Totals) -> Tally:
        """The tally of live totals: this session's rows plus earlier sessions'."""
        before = totals.prior_failed_by_kind()
        delivered_before = totals.prior_delivered()
        return cls(delivered=totals.delivered + delivered_before,
                   failed=totals.failed + before.total(),
                   warned=totals.failed_by_kind[FailureKind.WARNING] + before[FailureKind.WARNING],
                   delivered_before=delivered_before, failed_before=before.total())


def format_status(totals: Totals) -> str:
    """One plain line: progress, pace, ETA, outcomes, requests in flight, p50/p99 latency."""
    fields = [format_progress(totals), f"{_count(round(totals.records_per_s()))} records/s"]
    if totals.bytes_total is not None or totals.input_ended():
        fields.append(f"ETA {format_eta(totals.eta_s())}")
    fields += [format_tally(Tally.of(totals)),
               f"users waiting to retry {_count(totals.gauge('retry_waiting'))}",
               f"requests in flight {_count(totals.gauge('in_flight'))}", _latency(totals)]
    auto = format_auto(totals)
    if auto:
        fields.insert(2, auto)
    if totals.outage:
        fields.insert(0, OUTAGE_TEXT)
    return " | ".join(fields)


def format_progress(totals: Totals) -> str:
    """`12.3% of records finished (24,600 of ~200,000)`: `~` while the total is an
    estimate; `24,600 records finished` when the total is unknown."""
    pct = percent_done(totals)
    if pct is None:
        return format_records(totals)
    known = totals.records_known()
    return (f"{pct:.1f}% of records finished"
            + ("" if known is None else f" ({_of_known(totals, known)})"))


def format_records(totals: Totals) -> str:
    """`24,600 of ~200,000 records finished`, or `24,600 records finished` with no total."""
    known = totals.records_known()
    if known is None:
        return f"{_count(totals.records_done())} records finished"
    return f"{_of_known(totals, known)} records finished"


def _of_known(totals: Totals, known: tuple[int, bool]) -> str:
    total, exact = known
    return f"{_count(totals.records_done())} of {'' if exact else '~'}{_count(total)}"


def format_tally(tally: Tally) -> str:
    """`delivered 1,200 (800 before this session) failed 30 (3 received with a warning)`."""
    failed_notes = []
    if tally.warned:
        failed_notes.append(f"{_count(tally.warned)} {WARNING_TEXT}")
    if tally.failed_before:
        failed_notes.append(f"{_count(tally.failed_before)} {BEFORE_TEXT}")
    delivered = f"delivered {_count(tally.delivered)}"
    if tally.delivered_before:
        delivered += f" ({_count(tally.delivered_before)} {BEFORE_TEXT})"
    failed = f"failed {_count(tally.failed)}"
    if failed_notes:
        failed += f" ({', '.join(failed_notes)})"
    return f"{delivered} {failed}"


def format_auto(totals: Totals) -> str:
    """--rate auto: `rate auto 412/s holding` (the controller's rate and what it does); "" else."""
    auto = totals.auto_rate()
    if auto is None:
        return ""
    rate, state = auto
    return f"rate auto {_count(round(rate))}/s {state}".rstrip()


def format_eta(eta_s: float | None) -> str:
    """`42s`, `4m12s` or `3h05m`; `--` when unknown."""
    if eta_s is None or not math.isfinite(eta_s):
        return "--"
    secs = max(0, round(eta_s))
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m{secs % 60:02d}s"
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m"


def format_ms(value_ms: float | None) -> str:
    """A latency with two or three significant digits (`0.42 ms`, `4.1 ms`, `38 ms`)."""
    if value_ms is None:
        return "--"
    if value_ms < 1:
        return f"{value_ms:.2f} ms"
    if value_ms < 10:
        return f"{value_ms:.1f} ms"
    return f"{value_ms:,.0f} ms"


def percent_of(done: int, known: int, *, exact: bool, unfinished: int = 0) -> float:
    """`done` of `known` records as 0..100, rounded down to 0.1; 100.0 only when the total
    is exact, every record has its row and none is unfinished (in flight, waiting)."""
    if known <= 0:
        share = 1.0 if exact else 0.0
    else:
        share = min(1.0, done / known)
    pct = math.floor(share * 1000) / 10
    if not exact or done < known or unfinished > 0:
        pct = min(pct, 99.9)
    return pct


def percent_done(totals: Totals) -> float | None:
    """Share of the records finished (rows written, earlier sessions included) of the records
    known; 0.0 before anything is read, None when the input's size is unknown."""
    known = totals.records_known()
    if known is None:
        return None if totals.bytes_total is None else 0.0
    return percent_of(totals.records_done(), known[0], exact=known[1],
                      unfinished=totals.gauge("pending"))


def progress_fields(totals: Totals) -> dict[str, Any]:
    """The numbers of a progress line, for a JSON log line."""
    known = totals.records_known()
    tally = Tally.of(totals)
    eta_s = totals.eta_s()
    return {
        "percent": percent_done(totals), "records_finished": totals.records_done(),
        "records_known": None if known is None else known[0],
        "records_known_exact": None if known is None else known[1],
        "records_per_s": round(totals.records_per_s(), 1),
        "eta_s": None if eta_s is None else round(eta_s, 1),
        "delivered": tally.delivered, "failed": tally.failed,
        "received_with_warning": tally.warned, "delivered_before": tally.delivered_before,
        "failed_before": tally.failed_before, "retry_waiting": totals.gauge("retry_waiting"),
        "in_flight": totals.gauge("in_flight"), "outage": totals.outage,
    }


def top_failure_kinds(totals: Totals, n: int = TOP_KINDS) -> list[tuple[str, int]]:
    """The `n` most common kinds of failure rows of the run (a warning's too), most first."""
    kinds = totals.failed_by_kind + totals.prior_failed_by_kind()
    return sorted(kinds.items(), key=lambda kc: (-kc[1], kc[0]))[:n]


class Progress:
    """Shows `Totals` on `stream`: redrawn on a TTY, a plain line every `interval_s` elsewhere."""

    def __init__(
        self,
        *,
        stream: TextIO,
        tty: bool,
        interval_s: float,
        json_lines: bool = False,
        now: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._stream = stream
        self._json_lines = json_lines  # off a TTY: the lines of --log-format json
        self._wall = wall
        self._interval_s = interval_s
        self._now = now
        self._last_line_s = now()  # the first plain line comes interval_s after the start
        self._closed = False
        self._console = Console(file=stream, force_terminal=True) if tty else None
        self._spinner = Spinner("dots")
        self._live: Live | None = None

    @property
    def console(self) -> Console | None:
        """The rich console drawing on the TTY (to print log lines above the display); else None."""
        return self._console

    def update(self, totals: Totals) -> None:
        """Redraws the display on a TTY; off a TTY writes a line if `interval_s` has passed."""
        if self._closed:
            return
        if self._console is not None:
            self._redraw(self._console, totals)
            return
        now_s = self._now()
        if now_s - self._last_line_s >= self._interval_s:
            self._last_line_s = now_s
            self._write_line(totals)

    def close(self, totals: Totals) -> None:
        """Renders the final state (it stays on a TTY) and gives the terminal back; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._console is None:
            self._write_line(totals)
            return
        live = self._live_on(self._console)
        live.update(render(totals, spinner=self._spinner))
        live.stop()  # draws it a last time, ends the line and shows the cursor again

    def _redraw(self, console: Console, totals: Totals) -> None:
        self._live_on(console).update(render(totals, spinner=self._spinner), refresh=True)

    def _live_on(self, console: Console) -> Live:
        if self._live is None:
            # Our own refreshes only, and no stream redirection: stdout stays the program's.
            self._live = Live(console=console, auto_refresh=False,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        return self._live

    def _write_line(self, totals: Totals) -> None:
        line = format_status(totals)
        if self._json_lines:
            line = json_line(ts=self._wall(), level="info", msg=line,
                             fields={"progress": progress_fields(totals)})
        self._stream.write(line + "\n")
        self._stream.flush()


def render(totals: Totals, *, spinner: Spinner | None = None) -> RenderableType:
    """The TTY display of `totals`: a bar (or a spinner), pace and outcomes, latency, top failures."""
    head = Table.grid(padding=(0, 1))
    pct = percent_done(totals)
    if pct is not None:
        bar = ProgressBar(total=100.0, completed=pct, width=_BAR_WIDTH)
        eta = Text(f"ETA {format_eta(totals.eta_s())}")
        head.add_row(bar, Text(f"{pct:5.1f}%"), eta)
    else:
        head.add_row(spinner or Spinner("dots"),
                     Text("(total unknown until the input ends)", style="dim"))
    rows: list[RenderableType] = [head, Text(format_records(totals), no_wrap=True,
                                             overflow="ellipsis")]
    if totals.outage:
        rows.append(Text(OUTAGE_TEXT, style="bold yellow"))
    tally = Tally.of(totals)
    rows.append(Text.assemble(
        (f"{_count(round(totals.records_per_s()))} records/s", "bold"),
        "   ", (format_tally(tally), "red" if tally.failed else "green"),
        "   users waiting to retry ", _count(totals.gauge("retry_waiting")),
        no_wrap=True, overflow="ellipsis",
    ))
    auto = format_auto(totals)
    rows.append(Text(
        f"requests in flight {_count(totals.gauge('in_flight'))}   {_latency(totals)}"
        + (f"   {auto}" if auto else ""),
        no_wrap=True, overflow="ellipsis",
    ))
    kinds = top_failure_kinds(totals)
    if kinds:
        top = Text("top failure kinds: ", style="dim", no_wrap=True, overflow="ellipsis")
        top.append("  ".join(f"{kind} {_count(n)}" for kind, n in kinds), style="red")
        rows.append(top)
    return Group(*rows)


def _latency(totals: Totals) -> str:
    p50, p99 = totals.latency.percentile(50), totals.latency.percentile(99)
    return f"latency p50 {format_ms(p50)} p99 {format_ms(p99)}"


def _count(n: int) -> str:
    return f"{n:,}"
