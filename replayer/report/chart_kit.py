"""What the report's charts share: matplotlib's Agg backend (no display), the palette,
the time axis (`Timeline`), and making a figure into PNG bytes.

Figures are built as `Figure` objects, not through pyplot's global state, so nothing is
left open between reports.
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
from matplotlib.ticker import FuncFormatter, NullFormatter

from replayer.report.load import Metrics

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
MAX_STEPS = 1200  # a longer run is drawn with rows grouped: a chart is ~900 px wide


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
            plain_log_ticks(ax.yaxis)
        else:
            ax.set_ylim(bottom=0)
        ax.set_ylabel(ylabel)
        if xlabel:
            ax.set_xlabel(f"run time ({self.unit})")
        ax.grid(alpha=0.3)
        n, outage = self.per_step, self.m.outage
        steps = [any(outage[i:i + n]) for i in range(0, len(outage), n)]
        for k, (first, last) in enumerate(runs_of(steps)):
            ax.axvspan(self.edges[first], self.edges[last + 1], color=OUTAGE_COLOR, zorder=0,
                       label=None if k else "outage")
        for k, at_s in enumerate(self.m.resumed_at_s):
            ax.axvline(at_s / self.unit_s, color="gray", linestyle="--", linewidth=1,
                       label=None if k else "resumed")


def runs_of(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """(first, last) index of each run of consecutive True values."""
    runs: list[tuple[int, int]] = []
    for i, flag in enumerate(flags):
        if flag and runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        elif flag:
            runs.append((i, i))
    return runs


LEGEND_OUTSIDE: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.0, 1.0),
                                  "fontsize": "small", "frameon": False}


def log_span(lo: float, hi: float) -> tuple[float, float]:
    """Limits of a log axis around lo..hi, at least two decades wide, so that two or more
    powers of ten (`0.1`, `1`, `10`) mark it."""
    widen = max(1.0, 100.0 / (hi / lo)) ** 0.5
    return lo / widen, hi * widen


def plain_log_ticks(axis: Axis) -> None:
    """Powers of ten written `0.1`, `1`, `100` rather than in scientific notation."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def plain(text: str) -> str:
    """Text from the files, shown as is: a `$` would otherwise start matplotlib's math mode."""
    return text.replace("$", r"\$")


def say(ax: Axes, text: str) -> None:
    """`text` in the middle of an empty chart, without ticks."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def panels(title: str, *, count: int, height: float) -> tuple[Figure, list[Axes]]:
    """A figure of `count` charts over one time axis, each with its own y axis (a series
    of a few requests a second stays readable beside thousands of records), the title on
    the top one."""
    fig = Figure(figsize=(10, height), dpi=DPI, layout="constrained")
    axes = list(fig.subplots(count, 1, sharex=True, squeeze=False)[:, 0])
    axes[0].set_title(title)
    return fig, axes


def two_panels(title: str, *, height: float) -> tuple[Figure, Axes, Axes]:
    """A figure of two charts over one time axis, the title on the top one."""
    fig, (top, bottom) = panels(title, count=2, height=height)
    return fig, top, bottom


def no_rows(title: str, *, height: float) -> bytes:
    """The chart of a run whose metrics.ndjson holds no row."""
    fig = Figure(figsize=(10, height), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    return no_data(fig, ax, "metrics.ndjson has no rows")


def no_data(fig: Figure, ax: Axes, text: str) -> bytes:
    """The chart with `text` in place of data, as PNG bytes."""
    say(ax, text)
    return png(fig)


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    # No "Software" text chunk: the same folder gives the same bytes.
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
