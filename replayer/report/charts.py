"""The report's charts as PNG bytes, drawn with matplotlib's Agg backend (no display).

Here the charts of every run (throughput, failures, retries); plan_charts.py and
latency_chart.py draw the others, on what chart_kit.py shares. Every value drawn comes
from the output folder.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from replayer.report import display
from replayer.report.chart_kit import (
    DELIVERED_COLOR,
    DPI,
    FAILED_COLOR,
    KIND_COLORS,
    OTHER_COLOR,
    REQUESTS_COLOR,
    WAITING_COLOR,
    Timeline,
    no_data,
    no_rows,
    panels,
    plain,
    png,
    two_panels,
)
from replayer.report.latency_chart import latency_png
from replayer.report.load import Metrics, RunData
from replayer.report.plan_charts import rate_png, schedule_png


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


THROUGHPUT_TITLE = "Throughput: requests, delivered and failed records per second"


def throughput_png(m: Metrics) -> bytes:
    """Requests, delivered and failed records per second over run time."""
    if not m.rows:
        return no_rows(THROUGHPUT_TITLE, height=3.8)
    return png(throughput_figure(m))


def throughput_figure(m: Metrics) -> Figure:
    """The throughput chart of a run with metrics rows: one panel per series, each on its
    own y axis (a batched run sends a few requests a second for thousands of records)."""
    fig, axes = panels(THROUGHPUT_TITLE, count=3, height=6.4)
    line = Timeline.of(m)
    series = ((m.requests, "requests", REQUESTS_COLOR),
              (m.delivered, "delivered records", DELIVERED_COLOR),
              (m.failed, "failed records", FAILED_COLOR))
    for ax, (values, name, color) in zip(axes, series, strict=True):
        ax.stairs(line.mean(values), line.edges, color=color, linewidth=1.2,
                  label=f"{name} ({display.number(sum(values))} in all)")
        line.frame(ax, ylabel=line.per_second, xlabel=ax is axes[-1])
        ax.legend(loc="upper right", fontsize="small")
    return fig

def failures_png(m: Metrics) -> bytes:
    """Failed records per second, stacked by failure kind."""
    fig = Figure(figsize=(10, 3.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Failures per second, by kind")
    if not m.rows:
        return no_data(fig, ax, "metrics.ndjson has no rows")
    totals = sorted(((sum(p.values()), k) for k, p in m.failed_by_kind.items()),
                    key=lambda tk: (-tk[0], tk[1]))
    if not totals:
        return no_data(fig, ax, "no failures in metrics.ndjson")
    line = Timeline.of(m)
    shown = totals if len(totals) <= len(KIND_COLORS) else totals[:len(KIND_COLORS) - 1]
    layers = [(m.kind_series(kind), f"{plain(kind)} ({display.number(n)})", KIND_COLORS[i])
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
    return png(fig)


def retries_png(m: Metrics) -> bytes:
    """Top: retries sent per second; bottom: records waiting to be retried."""
    title = "Retries per second, and records waiting to be retried"
    if not m.rows:
        return no_rows(title, height=4.4)
    fig, top, bottom = two_panels(title, height=4.4)
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
    return png(fig)


