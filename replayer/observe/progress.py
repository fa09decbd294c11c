"""The live progress display of a run: a redrawn rich panel on a terminal, plain lines elsewhere.

`format_status` is pure; `Progress` only renders the `Totals` it is handed, so the caller
decides when (about once a second) and the display never touches the pipeline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from replayer.observe.live import Totals

SKIPPED_KIND = "warning"  # a 200 with a warning: received, most likely not taken
OUTAGE_TEXT = "server unavailable: waiting"
TOP_KINDS = 3
_BAR_WIDTH = 40


def format_status(totals: Totals) -> str:
    """One plain line: progress, pace, ETA, outcomes, requests in flight, p50/p99 latency."""
    fields = [
        _reading(totals),
        f"{_count(round(totals.records_per_s()))} rec/s",
    ]
    if totals.bytes_total is not None:
        fields.append(f"ETA {format_eta(totals.eta_s())}")
    fields += [_outcomes(totals), f"in flight {_count(totals.gauge('in_flight'))}", _latency(totals)]
    auto = format_auto(totals)
    if auto:
        fields.insert(2, auto)
    if totals.outage:
        fields.insert(0, OUTAGE_TEXT)
    return " | ".join(fields)


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


def percent_read(totals: Totals) -> float | None:
    """Share of the input's bytes read, 0..100 rounded down to 0.1; None when the size is unknown."""
    if totals.bytes_total is None:
        return None
    if totals.bytes_total <= 0:
        return 100.0
    share = min(1.0, totals.bytes_read / totals.bytes_total)
    # Rounded down, so 100.0% means every byte was read.
    return math.floor(share * 1000) / 10


def skipped_count(totals: Totals) -> int:
    """Records received with a warning (the `warning` kind)."""
    return totals.failed_by_kind.get(SKIPPED_KIND, 0)


def failed_count(totals: Totals) -> int:
    """Records that failed, not counting the skipped ones."""
    return max(0, totals.failed - skipped_count(totals))


def top_failure_kinds(totals: Totals, n: int = TOP_KINDS) -> list[tuple[str, int]]:
    """The `n` most common failure kinds (skipped excluded), most common first."""
    kinds = [(k, c) for k, c in totals.failed_by_kind.items() if k != SKIPPED_KIND and c > 0]
    return sorted(kinds, key=lambda kc: (-kc[1], kc[0]))[:n]


class Progress:
    """Shows `Totals` on `stream`: redrawn on a TTY, a plain line every `interval_s` elsewhere."""

    def __init__(
        self,
        *,
        stream: TextIO,
        tty: bool,
        interval_s: float,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
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
        self._stream.write(format_status(totals) + "\n")
        self._stream.flush()


def render(totals: Totals, *, spinner: Spinner | None = None) -> RenderableType:
    """The TTY display of `totals`: a bar (or a spinner), pace and outcomes, latency, top failures."""
    head = Table.grid(padding=(0, 1))
    pct = percent_read(totals)
    lines = Text(f"{_count(totals.lines_read)} lines")
    if pct is not None:
        bar = ProgressBar(total=100.0, completed=pct, width=_BAR_WIDTH)
        eta = Text(f"ETA {format_eta(totals.eta_s())}")
        head.add_row(bar, Text(f"{pct:5.1f}%"), lines, eta)
    else:
        head.add_row(spinner or Spinner("dots"), lines, Text("(input size unknown)", style="dim"))
    rows: list[RenderableType] = [head]
    if totals.outage:
        rows.append(Text(OUTAGE_TEXT, style="bold yellow"))
    rows.append(Text.assemble(
        (f"{_count(round(totals.records_per_s()))} rec/s", "bold"),
        "   delivered ", (_count(totals.delivered), "green"),
        "  skipped ", (_count(skipped_count(totals)), "yellow"),
        "  failed ", (_count(failed_count(totals)), "red"),
        "  retrying ", _count(totals.gauge("retry_waiting")),
        no_wrap=True, overflow="ellipsis",
    ))
    auto = format_auto(totals)
    rows.append(Text(
        f"in flight {_count(totals.gauge('in_flight'))}   {_latency(totals)}"
        + (f"   {auto}" if auto else ""),
        no_wrap=True, overflow="ellipsis",
    ))
    kinds = top_failure_kinds(totals)
    if kinds:
        top = Text("top failures: ", style="dim", no_wrap=True, overflow="ellipsis")
        top.append("  ".join(f"{kind} {_count(n)}" for kind, n in kinds), style="red")
        rows.append(top)
    return Group(*rows)


def _reading(totals: Totals) -> str:
    pct = percent_read(totals)
    lines = f"{_count(totals.lines_read)} lines"
    return lines if pct is None else f"{pct:.1f}% {lines}"


def _outcomes(totals: Totals) -> str:
    return (
        f"delivered {_count(totals.delivered)} skipped {_count(skipped_count(totals))} "
        f"failed {_count(failed_count(totals))} "
        f"retrying {_count(totals.gauge('retry_waiting'))}"
    )


def _latency(totals: Totals) -> str:
    p50, p99 = totals.latency.percentile(50), totals.latency.percentile(99)
    return f"p50 {format_ms(p50)} p99 {format_ms(p99)}"


def _count(n: int) -> str:
    return f"{n:,}"
