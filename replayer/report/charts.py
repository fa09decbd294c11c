"""The report's charts as PNG bytes, drawn with matplotlib's Agg backend (no display).

Figures are built as `Figure` objects, not through pyplot's global state, so nothing is
left open between reports. Every value drawn comes from the output folder.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot can be imported anywhere: never a GUI backend

from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter

from replayer.report import display
from replayer.report.load import Metrics, RunData

DPI = 100
REQUESTS_COLOR = "#4c72b0"
DELIVERED_COLOR = "#2a9d55"
FAILED_COLOR = "#d62728"
WAITING_COLOR = "#8c6d31"
PLANNED_COLOR = "#222222"
SCHEDULED_COLOR = "#9467bd"
QUIET_COLOR = "#e8e8e8"
OUTAGE_COLOR = "#f4cccc"
KIND_COLORS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#1f77b4")
OTHER_COLOR = "#c7c7c7"
SERIES_COLORS = {"delivered": DELIVERED_COLOR, "failed": FAILED_COLOR,
                 "scheduled": SCHEDULED_COLOR}
SERIES_LABELS = {"delivered": "delivered", "failed": "failed",
                 "scheduled": "scheduled, per request"}
PERCENTILES = ("p50", "p90", "p99")
MAX_STEPS = 1200  # a longer run is drawn with rows grouped: a chart is ~900 px wide
BINS_PER_DECADE = 10  # the latency distribution is regrouped from 1% buckets to these


def render_charts(data: RunData) -> dict[str, bytes]:
    """PNG bytes of every chart, by name: throughput, latency, failures, retries, and
    schedule for a run that followed a plan (--rate, --pace original)."""
    planned = data.followed_a_plan
    charts = {"throughput": throughput_png(data.metrics)}
    if planned:
        charts["schedule"] = schedule_png(data.metrics)
    if data.metrics.has_auto_rate:
        charts["rate"] = rate_png(data.metrics)
    charts["latency"] = latency_png(data.summary, scheduled=planned)
    charts["failures"] = failures_png(data.metrics)
    charts["retries"] = retries_png(data.metrics)
    return charts


# ---- one chart each ------------------------------------------------------------------


def throughput_png(m: Metrics) -> bytes:
    """Requests, delivered and failed records per second over run time."""
    fig = Figure(figsize=(10, 3.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Throughput: requests, delivered and failed records per second")
    if not m.rows:
        return _no_data(fig, ax, "metrics.ndjson has no rows")
    line = Timeline.of(m)
    for values, name, color in ((m.requests, "requests", REQUESTS_COLOR),
                                (m.delivered, "delivered", DELIVERED_COLOR),
                                (m.failed, "failed", FAILED_COLOR)):
        ax.stairs(line.mean(values), line.edges, color=color, linewidth=1.2,
                  label=f"{name} ({display.number(sum(values))} in all)")
    line.frame(ax, ylabel=line.per_second)
    ax.legend(loc="upper right", fontsize="small")
    return _png(fig)


def schedule_png(m: Metrics) -> bytes:
    """Top: requests planned and sent per second; bottom: the p99 of each second in the
    scheduled view against delivered records' p99 (log ms), where a stall stands out."""
    title = "Schedule: requests planned and sent per second"
    if not m.rows:
        return _no_rows(title, height=5.6)
    fig, top, bottom = _two_panels(title, height=5.6)
    line = Timeline.of(m)
    top.stairs(line.mean(m.requests), line.edges, color=REQUESTS_COLOR, linewidth=1.4,
               label=f"sent ({display.number(sum(m.requests))} in all)")
    if m.has_plan:
        top.stairs(line.mean([p or 0.0 for p in m.planned]), line.edges, color=PLANNED_COLOR,
                   linestyle="--", linewidth=1.2,
                   label=f"planned ({display.number(m.planned_total)} in all)")
    else:  # --pace original: each record is planned at its own recorded time
        top.plot([], [], " ", label="planned: each record at its recorded time")
    line.frame(top, ylabel=f"requests {line.per_second}", xlabel=False)
    top.legend(**_LEGEND_OUTSIDE)
    bottom.set_title("p99 latency of each second: scheduled view (from the planned send "
                     "time) and delivered records", fontsize="medium")
    shown = _p99_lines(bottom, line)
    line.frame(bottom, ylabel="p99 ms (log)" if line.per_step == 1
               else f"p99 ms (log, worst of each {line.per_step} s)", log_y=shown)
    if shown:
        bottom.legend(**_LEGEND_OUTSIDE)
    return _png(fig)


def rate_png(m: Metrics) -> bytes:
    """--rate auto. Top: the controller's rate (planned), requests sent (achieved) and
    delivered per second; bottom: 429 answers per second, throttled and per user."""
    title = "Adaptive rate: the controller's rate, requests sent, and 429s per second"
    if not m.rows:
        return _no_rows(title, height=5.6)
    fig, top, bottom = _two_panels(title, height=5.6)
    line = Timeline.of(m)
    top.stairs(line.mean([r or 0.0 for r in m.rate_per_s]), line.edges, color=PLANNED_COLOR,
               linestyle="--", linewidth=1.2, label="planned: the controller's rate")
    top.stairs(line.mean(m.requests), line.edges, color=REQUESTS_COLOR, linewidth=1.4,
               label=f"achieved: requests sent ({display.number(sum(m.requests))} in all)")
    line.frame(top, ylabel=f"requests {line.per_second}", xlabel=False)
    top.legend(**_LEGEND_OUTSIDE)
    bottom.set_title("429 answers: throttled (the app-wide limit) and per user (profile "
                     "lock, devMode)", fontsize="medium")
    bottom.stairs(line.mean(m.throttled), line.edges, color=FAILED_COLOR, linewidth=1.2,
                  label=f"throttled ({display.number(sum(m.throttled))} in all)")
    bottom.stairs(line.mean(m.limited_per_user), line.edges, color=SCHEDULED_COLOR,
                  linewidth=1.0,
                  label=f"per user ({display.number(sum(m.limited_per_user))} in all)")
    line.frame(bottom, ylabel=f"429s {line.per_second}")
    bottom.legend(**_LEGEND_OUTSIDE)
    return _png(fig)


def _p99_lines(ax: Axes, line: Timeline) -> bool:
    """Draws both per-second p99 lines and shades the seconds with no answer; False (and a
    note) when no second has a latency."""
    scheduled = line.worst(line.m.scheduled_p99_ms)
    delivered = line.worst(line.m.delivered_p99_ms)
    series = ((scheduled, "scheduled view p99", SCHEDULED_COLOR),
              (delivered, "delivered p99", DELIVERED_COLOR))
    numbers = [v for v in (*scheduled, *delivered) if v > 0]
    if not numbers:
        _say(ax, "no latency in metrics.ndjson (nothing was answered)")
        return False
    quiet = [math.isnan(a) and math.isnan(b) for a, b in zip(scheduled, delivered, strict=True)]
    for k, (first, last) in enumerate(_runs(quiet)):
        ax.axvspan(line.edges[first], line.edges[last + 1], color=QUIET_COLOR, zorder=0,
                   label=None if k else "no request answered")
    for values, label, color in series:
        peak = max((v for v in values if v > 0), default=None)
        ax.stairs(values, line.edges, baseline=None, color=color, linewidth=1.4,
                  label=f"{label}\n(worst {display.ms(peak)})" if peak else f"{label}: none")
    ax.set_ylim(*_log_span(min(numbers) / 1.5, max(numbers) * 1.5))  # off the frame
    return True


def latency_png(summary: dict[str, Any], *, scheduled: bool = False) -> bytes:
    """Left: latency distribution by outcome with p50/p90/p99 markers; right: percentiles.
    With `scheduled`, the scheduled view (per request, from its planned time) is a third
    series when summary.json has it."""
    fig = Figure(figsize=(10, 4.2), dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    hist = _dict(summary.get("latency_histogram_ms"))
    pairs = {outcome: _pairs(hist.get(outcome)) for outcome in ("delivered", "failed")}
    tops = {"delivered": _dict(summary.get("latency_ms")),
            "failed": _dict(summary.get("failed_latency_ms"))}
    views = _dict(summary.get("request_latency_ms"))
    if scheduled and _pairs(hist.get("scheduled")):
        pairs["scheduled"] = _pairs(hist.get("scheduled"))
        tops["scheduled"] = _dict(views.get("scheduled"))
    _distribution(left, pairs, tops)
    _percentile_bars(right, tops)
    return _png(fig)


def failures_png(m: Metrics) -> bytes:
    """Failed records per second, stacked by failure kind."""
    fig = Figure(figsize=(10, 3.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Failures per second, by kind")
    if not m.rows:
        return _no_data(fig, ax, "metrics.ndjson has no rows")
    totals = sorted(((sum(p.values()), k) for k, p in m.failed_by_kind.items()),
                    key=lambda tk: (-tk[0], tk[1]))
    if not totals:
        return _no_data(fig, ax, "no failures in metrics.ndjson")
    line = Timeline.of(m)
    shown = totals if len(totals) <= len(KIND_COLORS) else totals[:len(KIND_COLORS) - 1]
    layers = [(m.kind_series(kind), f"{_plain(kind)} ({display.number(n)})", KIND_COLORS[i])
              for i, (n, kind) in enumerate(shown)]
    rest = [kind for _, kind in totals[len(shown):]]
    if rest:
        series = [sum(col) for col in zip(*(m.kind_series(k) for k in rest), strict=True)]
        layers.append((series, f"{len(rest)} other kinds ({display.number(sum(series))})",
                       OTHER_COLOR))
    bottom = [0.0] * (len(line.edges) - 1)
    for values, label, color in layers:
        top = [b + v for b, v in zip(bottom, line.mean(values), strict=True)]
        ax.stairs(top, line.edges, baseline=bottom, fill=True, color=color, label=label)
        bottom = top
    line.frame(ax, ylabel=f"failed records {line.per_second}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    return _png(fig)


def retries_png(m: Metrics) -> bytes:
    """Top: retries sent per second; bottom: records waiting to be retried."""
    title = "Retries per second, and records waiting to be retried"
    if not m.rows:
        return _no_rows(title, height=4.4)
    fig, top, bottom = _two_panels(title, height=4.4)
    line = Timeline.of(m)
    top.stairs(line.mean(m.retries), line.edges, fill=True, color=WAITING_COLOR, alpha=0.8,
               label=f"retries ({display.number(sum(m.retries))} in all)")
    bottom.stairs(line.peak(m.retry_waiting), line.edges, color=WAITING_COLOR, linewidth=1.2,
                  label=f"waiting to retry (peak {display.number(max(m.retry_waiting))})")
    line.frame(top, ylabel=line.per_second, xlabel=False)
    line.frame(bottom, ylabel="records" if line.per_step == 1
               else f"records (peak of each {line.per_step} s)")
    for ax in (top, bottom):
        ax.legend(loc="upper right", fontsize="small")
    return _png(fig)


# ---- the time axis -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timeline:
    """The x axis of the time charts: metrics rows (about 1 s each) drawn as steps, and
    grouped `per_step` at a time when a run has more rows than MAX_STEPS."""

    m: Metrics
    per_step: int
    edges: list[float]  # in `unit`
    unit: str
    unit_s: float

    @classmethod
    def of(cls, m: Metrics) -> Timeline:
        """The timeline of a run with at least one metrics row."""
        per_step = max(1, math.ceil(m.rows / MAX_STEPS))
        span_s = m.edges_s[-1]
        unit, unit_s = (("s", 1.0) if span_s <= 900 else
                        ("min", 60.0) if span_s <= 54_000 else ("h", 3600.0))
        edges = [m.edges_s[i] / unit_s for i in range(0, m.rows, per_step)]
        return cls(m, per_step, [*edges, span_s / unit_s], unit, unit_s)

    @property
    def per_second(self) -> str:
        """The y label of a count per row."""
        return "per second" if self.per_step == 1 else f"per second (mean of {self.per_step} s)"

    def mean(self, values: Sequence[float]) -> list[float]:
        """A count per row, as the mean of each step (the rows themselves when not grouped)."""
        n = self.per_step
        return [sum(values[i:i + n]) / len(values[i:i + n]) for i in range(0, len(values), n)]

    def peak(self, values: Sequence[int]) -> list[int]:
        """A level per row (e.g. records waiting), as the highest of each step."""
        n = self.per_step
        return [max(values[i:i + n]) for i in range(0, len(values), n)]

    def worst(self, values: Sequence[float | None]) -> list[float]:
        """A latency per row, as the highest of each step; NaN (a gap) for a step without one."""
        n = self.per_step
        return [max((v for v in values[i:i + n] if v is not None), default=math.nan)
                for i in range(0, len(values), n)]

    def frame(self, ax: Axes, *, ylabel: str, xlabel: bool = True, log_y: bool = False) -> None:
        """Axes, labels and grid; shades outages; a dashed line where a resumed run begins."""
        ax.set_xlim(0, max(self.edges[-1], 1.0 / self.unit_s))  # at least a second
        if log_y:
            ax.set_yscale("log")
            _plain_log_ticks(ax.yaxis)
        else:
            ax.set_ylim(bottom=0)
        ax.set_ylabel(ylabel)
        if xlabel:
            ax.set_xlabel(f"run time ({self.unit})")
        ax.grid(alpha=0.3)
        n, outage = self.per_step, self.m.outage
        steps = [any(outage[i:i + n]) for i in range(0, len(outage), n)]
        for k, (first, last) in enumerate(_runs(steps)):
            ax.axvspan(self.edges[first], self.edges[last + 1], color=OUTAGE_COLOR, zorder=0,
                       label=None if k else "outage")
        for k, at_s in enumerate(self.m.resumed_at_s):
            ax.axvline(at_s / self.unit_s, color="gray", linestyle="--", linewidth=1,
                       label=None if k else "resumed")


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """(first, last) index of each run of consecutive True values."""
    runs: list[tuple[int, int]] = []
    for i, flag in enumerate(flags):
        if flag and runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        elif flag:
            runs.append((i, i))
    return runs


# ---- latency panels ------------------------------------------------------------------


def _distribution(ax: Axes, pairs: dict[str, list[tuple[float, int]]],
                  tops: dict[str, dict[str, Any]]) -> None:
    ax.set_title("Latency distribution")
    uppers = [u for series in pairs.values() for u, _ in series]
    if not uppers:
        _say(ax, "no latency recorded (no request was answered)")
        return
    k_lo = math.floor(math.log10(min(uppers) * 0.999) * BINS_PER_DECADE)
    k_hi = max(k_lo + 1, math.ceil(math.log10(max(uppers)) * BINS_PER_DECADE))
    edges = [10 ** (k / BINS_PER_DECADE) for k in range(k_lo, k_hi + 1)]
    for name, series in pairs.items():
        total = sum(n for _, n in series)
        if not total:
            continue
        shares = [0.0] * (len(edges) - 1)
        for upper, n in series:
            k = math.floor(math.log10(upper * 0.999) * BINS_PER_DECADE) - k_lo
            shares[min(max(k, 0), len(shares) - 1)] += 100.0 * n / total
        ax.stairs(shares, edges, color=SERIES_COLORS[name], fill=name == "delivered",
                  alpha=0.9 if name == "scheduled" else 0.6, linewidth=1.5,
                  label=f"{SERIES_LABELS[name]} ({display.number(total)})")
    marked = "delivered" if pairs["delivered"] else "failed"
    for p, style in zip(PERCENTILES, ("-", "--", ":"), strict=True):
        value = tops[marked].get(p)
        if isinstance(value, int | float) and value > 0:
            ax.axvline(value, color="black", linestyle=style, linewidth=1,
                       label=f"{marked} {p} {display.ms(value)}")
    ax.set_xscale("log")
    bin_step = 10 ** (1 / BINS_PER_DECADE)  # a bin's room on each side, off the frame
    ax.set_xlim(*_log_span(edges[0] / bin_step, edges[-1] * bin_step))
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("% of the outcome's records" if "scheduled" not in pairs
                  else "% of each series")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)


def _percentile_bars(ax: Axes, tops: dict[str, dict[str, Any]]) -> None:
    with_scheduled = "scheduled" in tops
    ax.set_title("Latency percentiles" if with_scheduled else "Latency percentiles by outcome")
    names = (*PERCENTILES, "max")
    values = {o: [tops[o].get(n) for n in names] for o in tops}
    numbers = [v for vs in values.values() for v in vs if isinstance(v, int | float) and v > 0]
    if not numbers:
        _say(ax, "no latency recorded")
        return
    heights = {o: [v if isinstance(v, int | float) and v > 0 else 0.0 for v in values[o]]
               for o in tops}
    # With the scheduled view, bars only for the series that have values, labels upright.
    drawn = [o for o in tops if any(heights[o])] if with_scheduled else list(tops)
    rotation = 90 if with_scheduled and len(drawn) > 1 else 0
    width = 0.76 / len(drawn)
    handles: list[Any] = []
    for outcome in tops:
        color = SERIES_COLORS[outcome]
        if outcome not in drawn:
            handles.append(Patch(color=color, alpha=0.8, label=f"{outcome}: none"))
            continue
        i = drawn.index(outcome)
        xs = [j + (i - (len(drawn) - 1) / 2) * width for j in range(len(names))]
        label = outcome if any(heights[outcome]) else f"{outcome}: none"
        bars = ax.bar(xs, heights[outcome], width, color=color, alpha=0.8, label=label)
        ax.bar_label(bars, labels=[display.number(v) if h else "" for v, h in
                                   zip(values[outcome], heights[outcome], strict=True)],
                     fontsize="x-small", padding=2, rotation=rotation)
        handles.append(bars)
    if max(numbers) / min(numbers) > 20:
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
    ax.margins(y=0.3 if rotation else 0.15)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("ms")
    if with_scheduled:  # tall bars with upright labels leave no free corner: below the axes
        ax.legend(handles=handles, fontsize="small", loc="upper center", frameon=False,
                  bbox_to_anchor=(0.5, -0.1), ncols=len(handles))
    else:
        ax.legend(handles=handles, fontsize="small")
    ax.grid(alpha=0.3, axis="y")


# ---- helpers -------------------------------------------------------------------------


_LEGEND_OUTSIDE: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.0, 1.0),
                                   "fontsize": "small", "frameon": False}


def _log_span(lo: float, hi: float) -> tuple[float, float]:
    """Limits of a log axis around lo..hi, at least two decades wide, so that two or more
    powers of ten (`0.1`, `1`, `10`) mark it."""
    widen = max(1.0, 100.0 / (hi / lo)) ** 0.5
    return lo / widen, hi * widen


def _plain_log_ticks(axis: Axis) -> None:
    """Powers of ten written `0.1`, `1`, `100` rather than in scientific notation."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _plain(text: str) -> str:
    """Text from the files, shown as is: a `$` would otherwise start matplotlib's math mode."""
    return text.replace("$", r"\$")


def _pairs(raw: Any) -> list[tuple[float, int]]:
    """[[upper_ms, count], ...] from summary.json, keeping only well-formed positive pairs."""
    out: list[tuple[float, int]] = []
    for item in raw if isinstance(raw, list) else []:
        if (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int | float)
                and isinstance(item[1], int) and item[0] > 0 and item[1] > 0):
            out.append((float(item[0]), item[1]))
    return out


def _dict(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


def _say(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def _two_panels(title: str, *, height: float) -> tuple[Figure, Axes, Axes]:
    """A figure of two charts over one time axis, the title on the top one."""
    fig = Figure(figsize=(10, height), dpi=DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.set_title(title)
    return fig, top, bottom


def _no_rows(title: str, *, height: float) -> bytes:
    """The chart of a run whose metrics.ndjson holds no row."""
    fig = Figure(figsize=(10, height), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    return _no_data(fig, ax, "metrics.ndjson has no rows")


def _no_data(fig: Figure, ax: Axes, text: str) -> bytes:
    _say(ax, text)
    return _png(fig)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # No "Software" text chunk: the same folder gives the same bytes.
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
