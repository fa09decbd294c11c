"""`replayer report`: a self-contained HTML report, with PNG charts, of a run's output folder.

`build_report(out_dir)` writes report.html and report-*.png; `text_summary(out_dir)` is the
few lines the command prints. matplotlib is loaded only when a report is built.
"""

from __future__ import annotations

from replayer.report.build import ReportFiles, build_report, text_summary
from replayer.report.load import NotAnOutputDir

__all__ = ["NotAnOutputDir", "ReportFiles", "build_report", "text_summary"]
