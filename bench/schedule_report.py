"""How closely a `replayer run --rate SCHEDULE` run followed its schedule, from arrival times.

Pure: `analyze()` compares the server's arrival log with `parse_rate(spec).count_by(t)`,
second by second from the first arrival; `markdown()` writes one section per schedule.
Used by bench/run.py (the `schedule` section).
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from replayer.engine.schedule import RateSchedule, parse_rate

WINDOW_S = 0.1
TABLE_STEP_S = 10  # the table shows every 10th second


def ramp_seconds(spec: str) -> float:
    """Seconds until the schedule's last stage with a duration ends (its ramps)."""
    return sum(s.duration_s for s in parse_rate(spec).stages if s.duration_s is not None)


def duration_text(seconds: float) -> str:
    """`65s`, `20.5s`: a --duration value."""
    return f"{seconds:g}s"


@dataclass(slots=True)
class Second:
    start_s: int  # [start_s, start_s + 1) after the first arrival
    planned: float  # count_by(t + 1) - count_by(t), cut at the run's --duration
    achieved: int  # arrivals in that second
    planned_by_end: float  # count_by(t + 1): the cumulative plan
    sent_by_end: int  # arrivals in [0, t + 1)

    @property
    def deviation(self) -> float:
        """(achieved - planned) / planned, in %; nan when nothing was planned."""
        return (self.achieved - self.planned) / self.planned * 100 if self.planned else math.nan


@dataclass(slots=True)
class Window:
    start_s: float  # after the first arrival
    count: int
    planned: float

    @property
    def ratio(self) -> float:
        return self.count / self.planned if self.planned else math.inf


@dataclass(slots=True)
class ScheduleStats:
    spec: str
    duration_s: float
    arrivals: int
    span_s: float  # last - first arrival
    planned_total: float  # count_by(duration): what --rate SPEC --duration D asks for
    seconds: list[Second]
    worst: Second | None  # largest |deviation|, first and last second left out
    mean_abs: float  # mean |achieved - planned| per second, requests (same seconds)
    mean_abs_pct: float  # mean of |deviation| %, same seconds
    largest: Window  # the 100 ms window with the most arrivals
    highest: Window  # the 100 ms window with the highest count / planned
    highest_later: Window  # the same among windows starting after the first second

    @property
    def sent_pct(self) -> float:
        return self.arrivals / self.planned_total * 100


def analyze(spec: str, duration_s: float, times: Sequence[float]) -> ScheduleStats:
    """Per-second planned vs achieved, relative to the first of `times` (sorted monotonic s)."""
    schedule = parse_rate(spec)
    if not times:
        raise ValueError("no arrivals")
    rel = [t - times[0] for t in times]

    def plan(t: float) -> float:
        return schedule.count_by(min(t, duration_s))

    count = max(math.ceil(duration_s), math.floor(rel[-1]) + 1)
    seconds = []
    for s in range(count):
        upto = bisect_left(rel, s + 1.0)
        achieved = upto - bisect_left(rel, float(s))
        seconds.append(Second(s, plan(s + 1.0) - plan(float(s)), achieved, plan(s + 1.0), upto))
    inner = [s for s in seconds[1:-1] if s.planned > 0]
    worst = max(inner, key=lambda s: abs(s.deviation)) if inner else None
    mean_abs = statistics.fmean(abs(s.achieved - s.planned) for s in inner) if inner else math.nan
    mean_abs_pct = statistics.fmean(abs(s.deviation) for s in inner) if inner else math.nan
    largest, highest = windows(schedule, rel)
    _, highest_later = windows(schedule, rel, after_s=1.0)
    return ScheduleStats(
        spec=spec, duration_s=duration_s, arrivals=len(rel), span_s=rel[-1],
        planned_total=schedule.count_by(duration_s), seconds=seconds, worst=worst,
        mean_abs=mean_abs, mean_abs_pct=mean_abs_pct, largest=largest, highest=highest,
        highest_later=highest_later,
    )


def windows(schedule: RateSchedule, rel: Sequence[float],
            after_s: float = 0.0) -> tuple[Window, Window]:
    """(most arrivals, highest arrivals / planned) over the 100 ms windows [t, t + 0.1)
    starting at each arrival at or after `after_s`."""
    largest = highest = Window(0.0, 0, 0.0)
    for i in range(bisect_left(rel, after_s), len(rel)):
        t = rel[i]
        n = bisect_left(rel, t + WINDOW_S, i) - i
        w = Window(t, n, schedule.count_by(t + WINDOW_S) - schedule.count_by(t))
        if n > largest.count:
            largest = w
        if highest.count == 0 or w.ratio > highest.ratio:
            highest = w
    return largest, highest


def window_text(w: Window) -> str:
    return (f"{w.count} at t = {w.start_s:.1f} s vs {w.planned:.1f} planned "
            f"({w.ratio:.2f}x)")


def summary_line(st: ScheduleStats) -> str:
    worst = (f"t = {st.worst.start_s} s, {st.worst.achieved:,} vs {st.worst.planned:,.1f} "
             f"({st.worst.deviation:+.2f} %)" if st.worst else "–")
    return (
        f"planned {st.planned_total:,.0f} in {duration_text(st.duration_s)}, "
        f"sent {st.arrivals:,} ({st.sent_pct:.2f} %); "
        f"worst second (first and last left out): {worst}; "
        f"mean |deviation| per second: {st.mean_abs:.1f} requests ({st.mean_abs_pct:.2f} %); "
        f"largest 100 ms window: {window_text(st.largest)}; "
        f"highest 100 ms window over its share: {window_text(st.highest)}, "
        f"after the first second: {window_text(st.highest_later)}"
    )


def table(st: ScheduleStats) -> list[str]:
    """Planned vs achieved in every TABLE_STEP_S-th second, then the summary line."""
    lines = [
        ("| second after first arrival | planned | achieved | deviation "
         "| planned by its end | sent by its end |"),
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in st.seconds:
        if s.start_s % TABLE_STEP_S:
            continue
        dev = "–" if math.isnan(s.deviation) else f"{s.deviation:+.2f} %"
        lines.append(f"| {s.start_s}–{s.start_s + 1} | {s.planned:,.1f} | {s.achieved:,} "
                     f"| {dev} | {s.planned_by_end:,.0f} | {s.sent_by_end:,} |")
    return [*lines, "", f"Summary: {summary_line(st)}."]
