"""The charts of a run on a plan: the schedule (planned against sent, scheduled against
delivered p99) and the adaptive rate of --rate auto."""

from __future__ import annotations

import math

from matplotlib.axes import Axes

from replayer.report import display
from replayer.report.chart_kit import (
    DELIVERED_COLOR,
    FAILED_COLOR,
    LEGEND_OUTSIDE,
    PLANNED_COLOR,
    QUIET_COLOR,
    REQUESTS_COLOR,
    SCHEDULED_COLOR,
    Timeline,
    log_span,
    no_rows,
    png,
    runs_of,
    say,
    two_panels,
)
from replayer.report.load import Metrics


def schedule_png(m: Metrics) -> bytes:
    """Top: requests planned and sent per second; bottom: the p99 of each second in the
    scheduled view against delivered records' p99 (log ms), where a stall stands out."""
    title = "Schedule: requests planned and sent per second"
    if not m.rows:
        return no_rows(title, height=5.6)
    fig, top, bottom = two_panels(title, height=5.6)
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
    top.legend(**LEGEND_OUTSIDE)
    bottom.set_title("p99 latency of each second: scheduled view (from the planned send "
                     "time) and delivered records", fontsize="medium")
    shown = _p99_lines(bottom, line)
    line.frame(bottom, ylabel="p99 ms (log)" if line.per_step == 1
               else f"p99 ms (log, worst of each {line.per_step} s)", log_y=shown)
    if shown:
        bottom.legend(**LEGEND_OUTSIDE)
    return png(fig)


def rate_png(m: Metrics) -> bytes:
    """--rate auto. Top: the controller's rate (planned), requests sent (achieved) and
    delivered per second; bottom: 429 answers per second, throttled and per user."""
    title = "Adaptive rate: the controller's rate, requests sent, and 429s per second"
    if not m.rows:
        return no_rows(title, height=5.6)
    fig, top, bottom = two_panels(title, height=5.6)
    line = Timeline.of(m)
    top.stairs(line.mean([r or 0.0 for r in m.rate_per_s]), line.edges, color=PLANNED_COLOR,
               linestyle="--", linewidth=1.2, label="planned: the controller's rate")
    top.stairs(line.mean(m.requests), line.edges, color=REQUESTS_COLOR, linewidth=1.4,
               label=f"achieved: requests sent ({display.number(sum(m.requests))} in all)")
    line.frame(top, ylabel=f"requests {line.per_second}", xlabel=False)
    top.legend(**LEGEND_OUTSIDE)
    bottom.set_title("429 answers: throttled (the app-wide limit) and per user (profile "
                     "lock, devMode)", fontsize="medium")
    bottom.stairs(line.mean(m.throttled), line.edges, color=FAILED_COLOR, linewidth=1.2,
                  label=f"throttled ({display.number(sum(m.throttled))} in all)")
    bottom.stairs(line.mean(m.limited_per_user), line.edges, color=SCHEDULED_COLOR,
                  linewidth=1.0,
                  label=f"per user ({display.number(sum(m.limited_per_user))} in all)")
    line.frame(bottom, ylabel=f"429s {line.per_second}")
    bottom.legend(**LEGEND_OUTSIDE)
    return png(fig)


def _p99_lines(ax: Axes, line: Timeline) -> bool:
    """Draws both per-second p99 lines and shades the seconds with no answer; False (and a
    note) when no second has a latency."""
    scheduled = line.worst(line.m.scheduled_p99_ms)
    delivered = line.worst(line.m.delivered_p99_ms)
    series = ((scheduled, "scheduled view p99", SCHEDULED_COLOR),
              (delivered, "delivered p99", DELIVERED_COLOR))
    numbers = [v for v in (*scheduled, *delivered) if v > 0]
    if not numbers:
        say(ax, "no latency in metrics.ndjson (nothing was answered)")
        return False
    quiet = [math.isnan(a) and math.isnan(b) for a, b in zip(scheduled, delivered, strict=True)]
    for k, (first, last) in enumerate(runs_of(quiet)):
        ax.axvspan(line.edges[first], line.edges[last + 1], color=QUIET_COLOR, zorder=0,
                   label=None if k else "no request answered")
    for values, label, color in series:
        peak = max((v for v in values if v > 0), default=None)
        ax.stairs(values, line.edges, baseline=None, color=color, linewidth=1.4,
                  label=f"{label}\n(worst {display.ms(peak)})" if peak else f"{label}: none")
    ax.set_ylim(*log_span(min(numbers) / 1.5, max(numbers) * 1.5))  # off the frame
    return True

