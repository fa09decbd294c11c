"""`replayer validate` and `replayer generate`: the commands that work on input files alone."""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from pathlib import Path
from typing import Any

import click

from replayer.commands.base import InputFailure, cannot_write
from replayer.commands.flags import ShownDefault, given_flags, shown
from replayer.config import CONFIG_ENV, ConfigError, load_settings
from replayer.output.layout import repeated_input
from replayer.records import RecordFailure
from replayer.source import objects
from replayer.source.checkfile import check_files, kind_table
from replayer.source.generate import write_records
from replayer.source.objects import is_url
from replayer.source.read import STDIN, InputUnreadable, display_name


def check_paths(paths: tuple[str, ...]) -> tuple[str, ...]:
    """The inputs to read, URL globs expanded once (objects in name order).

    Refuses stdin twice, missing files, folders and one file or object given twice (exit 2),
    a URL whose store's extra is not installed (exit 2), and a missing or unreadable object
    or bucket (exit 4).
    """
    if paths.count(STDIN) > 1:
        raise click.UsageError("'-' (stdin) can be given once")
    for path in paths:
        if path != STDIN and not is_url(path) and (not os.path.exists(path)
                                                    or os.path.isdir(path)):
            raise click.UsageError(f"no such file: {path}")
    if any(is_url(p) for p in paths):
        paths = _expand_urls(paths)
    twice = repeated_input([p for p in paths if not is_url(p)])
    if twice is not None:
        raise click.UsageError(f"{twice[0]} and {twice[1]} are the same file; give it once")
    return paths


def _expand_urls(paths: tuple[str, ...]) -> tuple[str, ...]:
    expanded: list[str] = []
    for path in paths:
        if not is_url(path):
            expanded.append(path)
            continue
        try:
            expanded.extend(o.url for o in objects.expand(path))
        except objects.ObjectsUnavailable as exc:
            raise click.UsageError(str(exc)) from None
        except objects.ObjectError as exc:
            raise InputFailure(str(exc)) from None
    seen: set[str] = set()
    for url in expanded:
        name = display_name(url)  # rows name an input so: two inputs may not share a name
        if is_url(url) and name in seen:
            raise click.UsageError(f"{name} is given twice (a glob may match it, or two URLs "
                                   "differ only in their query); give it once")
        seen.add(name)
    return tuple(expanded)


@click.command(epilog="""\b
Exit codes:
  0    the file was written
  2    usage error
  7    the file could not be written (one line says which and why)
  130  stopped by SIGINT (Ctrl-C)
""")
@click.option("--records", type=click.IntRange(min=1), required=True, help="How many records.")
@click.option("--users", type=click.IntRange(min=1), required=True, help="How many users.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same file.")
@click.option("--time/--no-time", "with_time", default=True, show_default=True,
              help="Give every record a historical time (strictly increasing per user).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=STDIN,
              show_default=True, help="File to write ('.gz' compresses; '-' stdout).")
def generate(records: int, users: int, seed: int, with_time: bool, output: str) -> None:
    """Write a large realistic session file, streaming (memory does not grow with it).

    \b
    Example:
      replayer generate --records 200000 --users 20000 -o big.ndjson
    """
    if output == STDIN:
        write_records(sys.stdout.buffer, records=records, users=users, seed=seed,
                      with_time=with_time)
        return
    opener: Any = gzip.open if output.endswith(".gz") else open
    try:
        with opener(output, "wb") as out:
            write_records(out, records=records, users=users, seed=seed, with_time=with_time)
    except OSError as exc:
        raise cannot_write(output, exc) from None


@click.command(epilog="""\b
Example:
  replayer validate sessions.ndjson.gz && replayer run sessions.ndjson.gz

\b
Exit codes:
  0    every line is valid
  1    some lines are invalid (each is printed)
  2    usage or configuration error
  4    an input could not be read (one line names it)
  130  stopped by SIGINT (Ctrl-C)
""")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, cls=ShownDefault, show_default=f"${CONFIG_ENV} if set",
              help="A config.toml: its [input] settings apply, as they do to run.")
@click.option("--allow-unknown-fields", is_flag=True, default=None,
              help="Accept fields that are not start parameters, as run would with this flag.")
@click.option("--max-line-bytes", type=click.IntRange(min=1024), default=None,
              cls=ShownDefault, show_default=shown("max_line_bytes"),
              help="Longer lines are invalid (line_too_long).")
@click.option("--quiet", "-q", is_flag=True,
              help="Print nothing but errors: the exit code says whether every line is valid.")
def validate(paths: tuple[str, ...], config_path: Path | None, quiet: bool,
             **given: Any) -> None:
    """Check PATH... as `replayer run` would, sending nothing.

    Prints every invalid line with its file, line number, kind and reason, then a
    table of counts by kind.
    """
    try:
        settings = load_settings(flags=given_flags(**given), env=os.environ,
                                 config_path=config_path)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    paths = check_paths(paths)

    def report(failure: RecordFailure) -> None:
        if not quiet:
            click.echo(f"{failure.file}:{failure.line_no}: {failure.kind}: {failure.message}")

    try:
        tally = check_files(paths, allow_unknown_fields=settings.allow_unknown_fields,
                            max_line_bytes=settings.max_line_bytes, on_invalid=report)
    except InputUnreadable as exc:  # names the file
        raise InputFailure(str(exc)) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFailure(f"reading the input failed: {exc}") from None
    counts = tally.counts
    if quiet:
        sys.exit(1 if tally.invalid else 0)
    click.echo(f"{counts.lines} lines ({counts.blank_lines} blank): {tally.valid} valid records "
               f"for {len(tally.users)} distinct users, {tally.invalid} invalid")
    if tally.invalid:
        click.echo("\n".join(kind_table(tally)))
    sys.exit(1 if tally.invalid else 0)
