"""The latency chart: the distribution of latency by outcome, and its percentiles."""

from __future__ import annotations

import math
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from replayer.report import display
from replayer.report.chart_kit import (
    DELIVERED_COLOR,
    DPI,
    FAILED_COLOR,
    SCHEDULED_COLOR,
    log_span,
    plain_log_ticks,
    png,
    say,
)

SERIES_COLORS = {"delivered": DELIVERED_COLOR, "failed": FAILED_COLOR,
                 "scheduled": SCHEDULED_COLOR}
SERIES_LABELS = {"delivered": "delivered", "failed": "failed",
                 "scheduled": "scheduled, per request"}
PERCENTILES = ("p50", "p90", "p99")
BINS_PER_DECADE = 10  # the latency distribution is regrouped from 1% buckets to these


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
    return png(fig)



def _distribution(ax: Axes, pairs: dict[str, list[tuple[float, int]]],
                  tops: dict[str, dict[str, Any]]) -> None:
    ax.set_title("Latency distribution")
    uppers = [u for series in pairs.values() for u, _ in series]
    if not uppers:
        say(ax, "no latency recorded (no request was answered)")
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
    ax.set_xlim(*log_span(edges[0] / bin_step, edges[-1] * bin_step))
    plain_log_ticks(ax.xaxis)
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
        say(ax, "no latency recorded")
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
        plain_log_ticks(ax.yaxis)
    ax.margins(y=0.3 if rotation else 0.15)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("ms")
    if with_scheduled:  # tall bars with upright labels leave no free corner: below the axes
        ax.legend(handles=handles, fontsize="small", loc="upper center", frameon=False,
                  bbox_to_anchor=(0.5, -0.1), ncols=len(handles))
    else:
        ax.legend(handles=handles, fontsize="small")
    ax.grid(alpha=0.3, axis="y")


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


