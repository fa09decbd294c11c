"""The `replayer report` click command: a run's output folder to report.html and charts."""

from __future__ import annotations

from pathlib import Path

import click

from replayer.records import ExitCode
from replayer.report.build import build_report, text_summary
from replayer.report.load import NotAnOutputDir

_EPILOG = """\b
Examples:
  replayer report replay-out/20260101T120000Z
  replayer report runs/backfill --out /tmp/backfill.html

\b
Writes report.html (one file, charts embedded, nothing loaded from the
network) and the same charts as PNGs: report-throughput.png,
report-latency.png, report-failures.png and report-retries.png, plus
report-schedule.png (planned vs sent, scheduled vs delivered p99) for a
load test paced by --rate or --pace original. --fail-if verdicts are
listed, and the headline says when thresholds failed.
Exit code 2 when DIR is not a finished replayer output folder.
"""


class NotAReportableDir(click.ClickException):
    """DIR is not a replayer output folder (or its run has not written summary.json)."""

    exit_code = ExitCode.USAGE


@click.command("report", epilog=_EPILOG)
@click.argument("out_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--out", "html_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None,
              help="The HTML file to write (default: DIR/report.html); the PNGs go beside "
                   "it, named after it (NAME-throughput.png, ...).")
def report(out_dir: Path, html_path: Path | None) -> None:
    """Write an HTML report with charts of the run whose output folder is DIR."""
    if html_path is not None and html_path.suffix != ".html":
        raise click.UsageError(f"--out {html_path}: the report is HTML; name it *.html")
    try:
        summary = text_summary(out_dir)
        files = build_report(out_dir, dest=html_path.parent if html_path else None,
                             name=html_path.stem if html_path else "report")
    except NotAnOutputDir as e:
        raise NotAReportableDir(str(e)) from None
    except OSError as e:  # e.g. a destination that cannot be written
        raise click.ClickException(f"cannot write the report: {e}") from None
    click.echo(summary)
    click.echo("wrote:")
    for path in files.paths():
        click.echo(f"  {path}")
