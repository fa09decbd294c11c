"""The `replayer report` click command: a run's output folder to report.html and charts."""

from __future__ import annotations

from pathlib import Path

import click

from replayer.commands.base import cannot_write
from replayer.commands.flags import ShownDefault
from replayer.records import ExitCode
from replayer.report.build import build_report, text_summary
from replayer.report.load import NotAnOutputDir

_EPILOG = """\b
Examples:
  replayer report replay-out/20260101T120000Z
  replayer report runs/backfill -o /tmp/backfill.html

\b
Writes report.html (one file, charts embedded, nothing loaded from the
network) and the same charts as PNGs: report-throughput.png,
report-latency.png, report-failures.png and report-retries.png, plus
report-schedule.png (planned vs sent, scheduled vs delivered p99) for a
load test paced by --rate or --pace original. --fail-if verdicts are
listed, and the headline says when thresholds failed. A run that stopped
early is reported too; the headline says how it ended.

\b
Exit codes:
  0    the report was written
  2    usage error, or DIR is not a replayer output folder with a
       summary.json (its run is still going, or was killed)
  7    the report could not be written (one line says which file and why)
  130  stopped by SIGINT (Ctrl-C)
"""


class NotAReportableDir(click.ClickException):
    """DIR is not a replayer output folder (or its run has not written summary.json)."""

    exit_code = ExitCode.USAGE


@click.command("report", epilog=_EPILOG)
@click.argument("out_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option("-o", "--output", "html_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, cls=ShownDefault, show_default="DIR/report.html",
              help="The HTML file to write; the PNGs go beside it, named after it "
                   "(NAME-throughput.png, ...).")
@click.option("--out", "old_html_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, hidden=True, help="Deprecated spelling of -o/--output.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def report(out_dir: Path, html_path: Path | None, old_html_path: Path | None,
           quiet: bool) -> None:
    """Write an HTML report with charts of the run whose output folder is DIR."""
    html_path = html_path or old_html_path  # --out FILE, its old name: scripts may use it
    if html_path is not None and html_path.suffix != ".html":
        raise click.UsageError(f"-o {html_path}: the report is HTML; name it *.html")
    try:
        summary = text_summary(out_dir)
        files = build_report(out_dir, dest=html_path.parent if html_path else None,
                             name=html_path.stem if html_path else "report")
    except NotAnOutputDir as e:
        raise NotAReportableDir(str(e)) from None
    except OSError as e:  # e.g. a destination that cannot be written
        raise cannot_write(html_path or out_dir, e) from None
    if quiet:
        return
    click.echo(summary)
    click.echo("wrote:")
    for path in files.paths():
        click.echo(f"  {path}")
