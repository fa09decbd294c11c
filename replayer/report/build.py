"""`build_report`: an output folder in, report.html and its PNG charts out; `text_summary`."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replayer.config.settings import holds_schedule
from replayer.report import display
from replayer.report.load import load_run, read_summary
from replayer.report.page import CHARTS, render_html

DEFAULT_NAME = "report"


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """The files one report wrote: the page and its charts (also embedded in the page)."""

    html: Path
    throughput: Path
    latency: Path
    failures: Path
    retries: Path
    schedule: Path | None = None  # only for a run that followed a plan (--rate, --pace original)
    rate: Path | None = None  # only for a run with --rate auto

    def paths(self) -> tuple[Path, ...]:
        """Every file written, the page first, then the charts in the page's order."""
        schedule = () if self.schedule is None else (self.schedule,)
        rate = () if self.rate is None else (self.rate,)
        return (self.html, self.throughput, *schedule, *rate, self.latency, self.failures,
                self.retries)


def _files_in(dest: Path, name: str, charts: Collection[str]) -> ReportFiles:
    """Where a report named `name` goes in `dest`: NAME.html and NAME-CHART.png."""
    def png(chart: str) -> Path:
        return dest / f"{name}-{chart}.png"

    return ReportFiles(dest / f"{name}.html", png("throughput"), png("latency"),
                       png("failures"), png("retries"),
                       png("schedule") if "schedule" in charts else None,
                       png("rate") if "rate" in charts else None)


def build_report(out_dir: Path, *, dest: Path | None = None,
                 name: str = DEFAULT_NAME) -> ReportFiles:
    """Writes report.html and report-{throughput,latency,failures,retries}.png (and
    report-schedule.png for a run on a plan) for the run in `out_dir` into `dest`
    (default: `out_dir`). Raises NotAnOutputDir for other folders."""
    # Imported here: matplotlib takes a while to load, and `replayer run` never needs it.
    from replayer.report.charts import render_charts

    data = load_run(out_dir)
    images = render_charts(data)
    files = _files_in(dest if dest is not None else out_dir, name, images.keys())
    files.html.parent.mkdir(parents=True, exist_ok=True)
    drawn = [chart for chart in CHARTS if chart in images]  # in the order of paths()
    for chart, path in zip(drawn, files.paths()[1:], strict=True):
        _write_atomic(path, images[chart])
    _write_atomic(files.html, render_html(data, images).encode("utf-8"))
    return files


def text_summary(out_dir: Path) -> str:
    """A few lines on the run in `out_dir`: state, counts, rate, latency (both request views
    of a run that held a schedule), top failure kinds, threshold verdicts, why it stopped.

    Reads summary.json only. Raises NotAnOutputDir for other folders."""
    s, n = read_summary(out_dir), display.number
    latency = _dict(s.get("latency_ms"))
    raw = s.get("thresholds")
    verdicts = [t for t in raw if isinstance(t, dict)] if isinstance(raw, list) else []
    failed = any(t.get("failed") is True for t in verdicts)
    lines = [
        f"{out_dir}: {s.get('state')}, exit code {n(s.get('exit_code'))}"
        + (", thresholds failed" if failed else ""),
        (f"records {n(s.get('records'))}: delivered {n(s.get('delivered'))}, "
         f"failed {n(s.get('failed'))}, unfinished {n(s.get('unfinished'))}; "
         f"{n(s.get('records_per_s'))} records/s over {display.duration(s.get('elapsed_s'))}"),
        "latency (delivered): " + ", ".join(
            f"{p} {display.ms(latency.get(p))}" for p in ("p50", "p90", "p99", "max")),
    ]
    views = _dict(s.get("request_latency_ms"))
    if views:  # the scheduled view only for a run that held a schedule
        shown = ("service", "scheduled") if holds_schedule(_dict(s.get("settings"))) else (
            "service",)
        lines.append("request p99: " + ", ".join(
            f"{view} {display.ms(_dict(views.get(view)).get('p99'))}" for view in shown))
    kinds = s.get("failures_by_kind")
    if isinstance(kinds, dict) and kinds:
        ordered = sorted(((str(k), v) for k, v in kinds.items() if isinstance(v, int)),
                         key=lambda kv: (-kv[1], kv[0]))
        more = f" (+{len(ordered) - 5} more kinds)" if len(ordered) > 5 else ""
        lines.append(f"failures: {display.counts(ordered[:5])}{more}")
    lines += [f"threshold {t.get('threshold')}: {t.get('text', display.NONE)}"
              for t in verdicts]
    if s.get("stopped_by"):
        lines.append(f"stopped by: {s['stopped_by']}")
    if s.get("stopped_because"):
        lines.append(f"stopped because: {s['stopped_because']}")
    return "\n".join(lines)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _write_atomic(path: Path, data: bytes) -> None:
    """Writes through a temporary file, so a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
