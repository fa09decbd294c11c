"""The `replayer convert` click command: vendor exports -> start records, rejects and a summary.

Thin: flags to a `Mapping` and `ConvertOptions`, files opened here, the work in pipeline.py.
"""

from __future__ import annotations

import gzip
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo

import click
import orjson

from replayer.commands.base import InputFailure, OutputFailure, cannot_write
from replayer.commands.flags import ShownDefault, given_flags, shown
from replayer.config import CONFIG_ENV, ConfigError, load_settings
from replayer.config.duration import parse_duration
from replayer.records import ExitCode
from replayer.source import objects
from replayer.source.convert.mapping import (
    Mapping,
    MappingError,
    load_mapping,
    required_columns,
)
from replayer.source.convert.normalise import source_zone
from replayer.source.convert.outputs import (
    PART_SUFFIX,
    STDOUT,
    Outputs,
    harm,
    stream_identity,
)
from replayer.source.convert.pipeline import ConvertOptions
from replayer.source.convert.pipeline import convert as run_conversion
from replayer.source.convert.readers import STDIN, InputError, expand_paths, iter_export_lines
from replayer.source.convert.sources import SOURCE_TOML, builtin_mapping
from replayer.source.convert.summary import ConvertSummary
from replayer.source.convert.table import (
    DEFAULT_MEMORY_LIMIT,
    MEMORY_LIMIT,
    EngineFailure,
    EngineMissing,
    engine_available,
)
from replayer.source.convert.work import WorkerDied

_EPILOG = """\b
Examples:
  replayer convert --from amplitude export-123.zip -o sessions.ndjson.gz
  replayer convert --from ga4 'bq-export/events_*.json.gz' -o ga4.ndjson
  replayer convert --from ga4 'bucket-export/*.parquet' -o ga4.ndjson
  replayer convert --map my-export.toml events/ -o sessions.ndjson
  replayer convert --print-map segment > my-export.toml

\b
Writes FILE, FILE.rejects.ndjson (one row per refused event: file, line,
reason) and FILE.summary.json (with -o -: convert.rejects.ndjson and
convert.summary.json unless --rejects/--summary say otherwise).

\b
Exit codes:
  0  every event is in a session
  1  some events were rejected (see the rejects file), or user
     attributes that name a secret were dropped (see the summary)
  2  usage error (such as an output that is an input or another
     output: nothing is written), or a --map file that is not valid
  4  an input could not be read
  5  a worker process died (nothing is written: run it again)
  7  an output could not be written, or the events could not be
     sorted (--memory-limit too small, --temp-dir not writable)
  130  stopped by SIGINT (Ctrl-C)
"""


class BadFlag(click.ClickException):
    """A flag's value that cannot be used: exit code 2 with one line."""

    exit_code = ExitCode.USAGE


class WorkerFailure(click.ClickException):
    """A worker process that died: exit code 5, as `replayer run` says it."""

    exit_code = ExitCode.WORKER


class OutputClash(click.ClickException):
    """An output that is an input or another output: exit code 2, before anything is written."""

    exit_code = ExitCode.USAGE


def _memory(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if MEMORY_LIMIT.fullmatch(value.strip()) is None:
        raise click.BadParameter(f"{value!r}: a size such as 512MB or 4GB")
    return value.strip()


def _gap(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _source_zone(_ctx: click.Context, _param: click.Parameter,
                 value: str | None) -> ZoneInfo | None:
    if value is None:
        return None
    zone = source_zone(value)
    if zone is None:
        raise BadFlag(f"--source-timezone {value!r}: not an IANA time zone name "
                      "(such as America/Los_Angeles)")
    return zone


@click.command("convert", epilog=_EPILOG)
@click.argument("paths", nargs=-1, metavar="PATH...")
@click.option("--from", "source", type=click.Choice(sorted(SOURCE_TOML)), default=None,
              help="The export's vendor.")
@click.option("--map", "map_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="A mapping TOML for any other JSON-lines export.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="File to write ('.gz' compresses; '-' stdout).")
@click.option("--session-gap", "gap_s", default="30m", show_default=True, callback=_gap,
              metavar="DURATION",
              help="Inactivity that ends a session.")
@click.option("--source-timezone", "zone", default=None, callback=_source_zone, metavar="TZ",
              cls=ShownDefault, show_default="UTC",
              help="The IANA zone whose wall clock the export's times are (older Mixpanel "
                   "projects).")
@click.option("--anonymous-as-user", is_flag=True,
              help="Send anonymous IDs (Mixpanel's $device: IDs, a user ID that is the "
                   "device's) as userId; by default they are deviceId.")
@click.option("--memory-limit", default=DEFAULT_MEMORY_LIMIT, show_default=True,
              callback=_memory, metavar="SIZE",
              help="Memory for sorting the events; past it they spill to --temp-dir.")
@click.option("--temp-dir", type=click.Path(file_okay=False), default=None,
              help="Where events are spooled and spilled while sorted, and zip members or "
                   "objects that are arrays or Parquet copied.",
              cls=ShownDefault, show_default="the system's")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, cls=ShownDefault, show_default=f"${CONFIG_ENV} if set",
              help="A config.toml: its max_line_bytes applies, as it does to run.")
@click.option("--max-line-bytes", type=click.IntRange(min=1024), default=None,
              cls=ShownDefault, show_default=shown("max_line_bytes"),
              help="run's line limit: a longer start record is rejected (line_too_long).")
@click.option("--rejects", "rejects_path", type=click.Path(dir_okay=False), default=None,
              cls=ShownDefault, show_default="FILE.rejects.ndjson", help="Rejects file.")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False), default=None,
              cls=ShownDefault, show_default="FILE.summary.json", help="Summary file.")
@click.option("--print-map", type=click.Choice(sorted(SOURCE_TOML)), default=None,
              help="Print a built-in source's mapping (a --map file to start from) and exit.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def convert(paths: tuple[str, ...], source: str | None, map_path: Path | None,
                    output: str | None, gap_s: float, zone: ZoneInfo | None,
                    anonymous_as_user: bool, memory_limit: str, temp_dir: str | None,
                    config_path: Path | None, max_line_bytes: int | None,
                    rejects_path: str | None, summary_path: str | None,
                    print_map: str | None, quiet: bool) -> None:
    """Convert Amplitude, Mixpanel, Segment or GA4 exports (JSON lines or arrays, .gz, .zip,
    .parquet, folders, globs) into start records, one per session, that `replayer run`
    replays."""
    if print_map is not None:
        click.echo(SOURCE_TOML[print_map], nl=False)
        return
    mapping = _mapping(source, map_path)
    try:  # run's line limit, from the same layers as run's: flag, environment, config.toml
        max_line_bytes = load_settings(flags=given_flags(max_line_bytes=max_line_bytes),
                                       env=os.environ, config_path=config_path).max_line_bytes
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if not paths or output is None:
        raise click.UsageError("give PATH... and -o FILE")
    if not engine_available():
        raise click.UsageError(str(EngineMissing()))
    outputs = Outputs.named(output, rejects=rejects_path, summary=summary_path)
    try:
        files = expand_paths(paths)
        why = harm(outputs, files,
                   stdin=stream_identity(sys.stdin.buffer) if STDIN in files else None,
                   stdout=stream_identity(sys.stdout.buffer) if output == STDOUT else None)
        if why is not None:
            raise OutputClash(why)
        lines = iter_export_lines(files, columns=required_columns(mapping), temp_dir=temp_dir)
        options = ConvertOptions(now_s=time.time(), gap_s=gap_s, memory_limit=memory_limit,
                                 temp_dir=temp_dir, max_line_bytes=max_line_bytes,
                                 source_zone=zone, anonymous_as_user=anonymous_as_user)
        started = time.perf_counter()
        with _records_out(output) as out, _file_out(outputs.rejects, gzipped=False) as rejects:
            summary = run_conversion(mapping, lines, out=out, rejects=rejects, options=options)
        _write_summary(outputs.summary, summary)
    except objects.ObjectsUnavailable as exc:
        raise click.UsageError(str(exc)) from None
    except InputError as exc:
        raise InputFailure(str(exc)) from exc
    except EngineFailure as exc:
        raise OutputFailure(str(exc)) from exc
    except WorkerDied as exc:
        raise WorkerFailure(str(exc)) from None
    except OSError as exc:
        raise cannot_write("the output", exc) from exc
    elapsed_s = time.perf_counter() - started
    if quiet:
        sys.exit(ExitCode.OK if summary.all_kept else ExitCode.FAILURES)
    for line in summary.lines():
        click.echo(line, err=True)
    rate = summary.events_read / elapsed_s if elapsed_s > 0 else 0.0
    click.echo(f"  {elapsed_s:.1f} s, {rate:,.0f} events/s", err=True)
    if not summary.all_kept:
        sys.exit(ExitCode.FAILURES)


def _mapping(source: str | None, map_path: Path | None) -> Mapping:
    if (source is None) == (map_path is None):
        raise click.UsageError("give one of --from SOURCE or --map FILE.toml")
    if source is not None:
        return builtin_mapping(source)
    assert map_path is not None
    loaded = load_mapping(map_path)
    if isinstance(loaded, MappingError):
        raise click.UsageError(f"--map {loaded.message}")
    return loaded


@contextmanager
def _records_out(output: str) -> Iterator[BinaryIO]:
    if output == STDOUT:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with _file_out(output, gzipped=output.endswith(".gz")) as out:
        yield out


@contextmanager
def _file_out(path: str, *, gzipped: bool) -> Iterator[BinaryIO]:
    """Writes `path` through `path.part`, renamed into place only when complete."""
    part = path + PART_SUFFIX
    done = False
    try:
        with open(part, "wb") as raw:
            if gzipped:
                # No name and a zero mtime in the header: the same input gives the same bytes.
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
                    yield zipped  # type: ignore[misc]
            else:
                yield raw
        os.replace(part, path)
        done = True
    finally:
        if not done and os.path.exists(part):
            os.remove(part)  # a conversion that stopped leaves no half-written file


def _write_summary(path: str, summary: ConvertSummary) -> None:
    with _file_out(path, gzipped=False) as out:
        out.write(orjson.dumps(summary.encode(), option=orjson.OPT_INDENT_2
                               | orjson.OPT_APPEND_NEWLINE))
