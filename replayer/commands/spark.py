"""`replayer spark PATH... --out DIR [--master URL] [run settings]`: the click layer of the job.

Also the entry for spark-submit: `spark-submit replayer/spark/__main__.py PATH... --out DIR`
(or `python -m replayer.spark`). Without pyspark it exits 2 with the install command.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from replayer.commands.base import Command
from replayer.commands.console import print_summary
from replayer.commands.flags import ShownDefault, settings_flags, shown
from replayer.commands.source import check_paths
from replayer.config import CONFIG_ENV, ConfigError, load_settings
from replayer.observe.logs import setup_logging
from replayer.output.layout import OutDirError, check_inputs, prepare_out_dir
from replayer.output.lock import FolderLock
from replayer.output.runfile import ResumeError, check_writer
from replayer.output.sinks import OutputError
from replayer.records import ExitCode
from replayer.spark import INSTALL

EXIT_AFTER_ENV = "REPLAYER_SPARK_TEST_EXIT_AFTER"  # test hook: see spark.task._hook


def _fail(message: str, code: ExitCode) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


_EPILOG = """\b
Exit codes (those of `replayer run`, for the whole job):
  0    every record delivered
  1    some records failed (each is a row of failures.ndjson)
  2    usage or configuration error (pyspark or Java missing, a --rate
       Spark cannot honour, a folder of another job)
  3    stopped: the API refused the access key
  4    stopped: an input could not be read
  5    a Spark task failed; its partition resumes with the same command
  7    stopped: an output could not be written
  8    stopped: the server stayed down for the outage limit (outage_limit_s)
  130  stopped by SIGINT (Ctrl-C); the same command resumes
"""


@click.command("spark", cls=Command, epilog=_EPILOG)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              required=True, help="Output folder on storage every executor can reach; the "
                                  "same command again resumes the job in it.")
@click.option("--overwrite", is_flag=True,
              help="Start over in a non-empty --out (removes replayer's files in it), even "
                   "one that `replayer run` wrote.")
@click.option("--master", default=None,
              help="Spark master URL (local[2], spark://..., yarn); spark-submit's if omitted.")
@click.option("--partitions", type=int, default=None,
              cls=ShownDefault, show_default="Spark's default parallelism",
              help="Partitions to shuffle the users into.")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, cls=ShownDefault, show_default=f"${CONFIG_ENV} if set",
              help="A config.toml.")
@click.option("--endpoint", default=None, help="'embedded' or the API URL.")
@click.option("--app-id", default=None, help="Leanplum app ID (or LEANPLUM_APP_ID).")
@click.option("--client-key-file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="File holding the client key; sent to executors with "
                                 "SparkFiles (else they read LEANPLUM_CLIENT_KEY).")
@click.option("--allow-insecure-http", is_flag=True, default=None,
              help="Allow plain http:// to a host that is not loopback.")
@click.option("--dry-run", is_flag=True, default=None, help="Send nothing (requests.ndjson).")
@click.option("--concurrency", type=int, default=None, help="Requests in flight per task.",
              cls=ShownDefault, show_default=shown("concurrency"))
@click.option("--rate", "rate_per_s", default=None, metavar="RATE",
              cls=ShownDefault, show_default=shown("rate_per_s", unset="unpaced"),
              help="Requests per second for the whole job, shared by the tasks running at "
                   "once. The grammar is run's; auto and schedules need one process "
                   "(`replayer run`) and are refused here.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Seconds per request.")
@click.option("--batch/--no-batch", default=None, help="multi calls or one start per record.")
@click.option("--max-attempts", type=int, default=None, help="Attempts per record.",
              cls=ShownDefault, show_default=shown("max_attempts"))
@click.option("--on-ambiguous", type=click.Choice(["retry", "fail"]), default=None,
              help="After a timeout or dropped connection: retry or fail.")
@click.option("--allow-unknown-fields", is_flag=True, default=None,
              help="Pass fields that are not start parameters through.")
@click.option("--save-responses", is_flag=True, default=None,
              help="Keep each whole response element in results.ndjson.")
@click.option("--max-line-bytes", type=int, default=None, help="Longer lines fail.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default=None, help="Log level of the driver and the tasks.",
              cls=ShownDefault, show_default=shown("log_level"))
@click.option("--quiet", "-q", is_flag=True, default=None, help="Print nothing but errors.")
def spark(paths: tuple[str, ...], out_dir: Path, overwrite: bool, master: str | None,
          partitions: int | None, config_path: Path | None, **given: Any) -> None:
    """Replay PATH... with Spark: shuffle by user, replay each partition, merge into --out."""
    flags = settings_flags(given)
    try:
        settings = load_settings(flags=flags, env=os.environ, config_path=config_path,
                                 sending=True)
    except ConfigError as exc:
        _fail(str(exc), ExitCode.USAGE)
    if settings.rate is not None or settings.rate_schedule is not None:
        _fail("replayer spark takes --rate as requests per second: auto and schedules "
              "adapt or plan one process's sending (use replayer run)", ExitCode.USAGE)
    try:
        import pyspark  # noqa: F401
    except ImportError:
        _fail(f"replayer spark needs pyspark: {INSTALL}", ExitCode.USAGE)
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        _fail("replayer spark needs Java 17 or later (e.g. apt-get install default-jre-headless)",
              ExitCode.USAGE)
    if "-" in paths:
        _fail("replayer spark reads files, not stdin", ExitCode.USAGE)
    paths = check_paths(paths)  # URL globs expanded once, as `replayer run` does
    setup_logging(fmt=settings.log_format, level=settings.log_level, quiet=settings.quiet)
    code = _run(paths, out_dir, master, partitions, settings, overwrite=overwrite)
    sys.exit(code)


def _run(paths: tuple[str, ...], out_dir: Path, master: str | None, partitions: int | None,
         settings: Any, *, overwrite: bool) -> int:
    from replayer.spark.job import SparkJobError, file_source, run_job, start_session

    say = (lambda text: None) if settings.quiet else (lambda text: click.echo(text, err=True))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        check_inputs(out_dir, paths)  # an input among the files it writes or removes
        with FolderLock(out_dir) as lock:
            if overwrite:
                prepare_out_dir(lock, resume=False, overwrite=True)
            else:
                check_writer(out_dir, "spark")  # before Spark starts: refused at once
            source = file_source(paths)
            session = start_session(master)
            try:
                hook = os.environ.get(EXIT_AFTER_ENV)
                summary = run_job(session, source, settings, out_dir, partitions=partitions,
                                  exit_after_requests=int(hook) if hook else None, say=say)
            finally:
                session.stop()
    except SparkJobError as exc:
        click.echo(f"Error: {exc}", err=True)
        return exc.code
    except (OutDirError, ResumeError) as exc:
        click.echo(f"Error: {exc}", err=True)
        return ExitCode.USAGE
    except OutputError as exc:
        click.echo(f"Error: {exc}", err=True)
        return ExitCode.OUTPUT
    if not settings.quiet:
        print_summary(summary, out_dir)
    return summary.exit_code
