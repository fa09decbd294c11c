"""The click commands: parse flags, build Settings, run the pipeline with asyncio.run().

Exit codes of `replayer run`: 0 every record delivered; 1 some records failed (see
failures.ndjson); 2 usage or configuration error; 3 stopped: the API refused the access
key (401, "Invalid access key", or 403 on a single call); 4 stopped: the input could not
be read; 5 a worker process died; 6 a --fail-if threshold failed; 130/143 stopped by
SIGINT/SIGTERM (resumable).
"""

from __future__ import annotations

import asyncio
import gzip
import os
import random
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from replayer import __version__
from replayer.config import ConfigError, Settings, is_remote, load_settings
from replayer.emulator.command import emulate
from replayer.engine.replay import EXIT_USAGE, RunControl, RunReport, replay, tune_gc
from replayer.engine.schedule import parse_duration, parse_rate
from replayer.observe.logs import setup_logging
from replayer.observe.thresholds import parse_threshold
from replayer.observe.watch import watching
from replayer.output.journal import ResumeError, load_resume
from replayer.output.sinks import OutDirError, prepare_out_dir
from replayer.records import RecordFailure
from replayer.report.command import report
from replayer.source.checkfile import check_files, kind_table
from replayer.source.generate import write_records
from replayer.source.read import STDIN, is_stream
from replayer.workers.parent import check_resume, run_workers, worker_count

RUN_EPILOG = """\b
Examples:
  replayer run samples/sessions.ndjson
  replayer run big.ndjson.gz --out runs/backfill --concurrency 128 --rate 500
  LEANPLUM_APP_ID=app_x LEANPLUM_CLIENT_KEY=prod_y \\
    replayer run --endpoint https://api.leanplum.com/api sessions.ndjson
  jq -c 'select(.record) | .record' runs/backfill/failures.ndjson | replayer run -

\b
Exit codes:
  0    every record delivered
  1    some records failed (each is a row of failures.ndjson)
  2    usage or configuration error
  3    stopped: the API refused the access key (401, "Invalid access key",
       or 403 on a single call); nothing more was sent
  4    stopped: an input file could not be read
  5    a worker process died (its messages are above)
  6    a --fail-if threshold failed
  130  stopped by SIGINT, 143 by SIGTERM (resume with --resume)
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="replayer")
def main() -> None:
    """Replay NDJSON session records into Leanplum's start API, in bulk."""


class SetupError(click.ClickException):
    """A configuration, output-folder or resume problem: exit code 2, like a usage error."""

    exit_code = EXIT_USAGE


def _flags(**given: Any) -> dict[str, Any]:
    """The flags the user actually gave: click passes None (or () for repeatable) otherwise."""
    return {k: v for k, v in given.items() if v is not None and v != ()}


def _load_flags(given: dict[str, Any]) -> dict[str, Any]:
    """Flags as settings: --rate is a number or a schedule, --duration takes units."""
    flags = _flags(**given)
    rate = flags.pop("rate_per_s", None)
    if rate is not None:
        try:
            flags["rate_per_s"] = float(rate)
        except ValueError:
            flags["rate_schedule"] = _checked(parse_rate, rate, "--rate")
    duration = flags.get("duration_s")
    if duration is not None:
        flags["duration_s"] = _checked(parse_duration, duration, "--duration")
    for spec in flags.get("fail_if", ()):
        _checked(parse_threshold, spec, "--fail-if")
    return flags


def _checked(parse: Any, text: str, flag: str) -> Any:
    """`parse(text)`, or a usage error naming the flag."""
    try:
        value = parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None
    return text if parse is not parse_duration else value


@main.command(epilog=RUN_EPILOG)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: a new folder under ./replay-out/).")
@click.option("--resume", is_flag=True, default=None,
              help="Continue the run in --out: skip lines already done.")
@click.option("--dry-run", is_flag=True, default=None,
              help="Send nothing: write the request bodies to requests.ndjson (key redacted) "
                   "and print what the run would cost.")
@click.option("--yes", "-y", is_flag=True, default=None,
              help="Do not ask before a large run against the real API.")
@click.option("--confirm-over", type=int, default=None,
              help="Ask before a real run of more records than this [10000].")
@click.option("--overwrite", is_flag=True, default=None,
              help="Start over in a non-empty --out (removes replayer's files in it).")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="A config.toml (default: $REPLAYER_CONFIG if set).")
@click.option("--endpoint", default=None,
              help="'embedded' (an in-process emulator, the default) or the API URL.")
@click.option("--app-id", default=None, help="Leanplum app ID (or LEANPLUM_APP_ID).")
@click.option("--client-key-file", type=click.Path(path_type=Path, dir_okay=False),
              default=None,
              help="File holding the production client key (or set LEANPLUM_CLIENT_KEY).")
@click.option("--allow-insecure-http", is_flag=True, default=None,
              help="Allow plain http:// to a host that is not loopback.")
@click.option("--concurrency", type=int, default=None, help="Requests in flight at most [64].")
@click.option("--rate", "rate_per_s", default=None, metavar="RATE|SCHEDULE",
              help="Requests per second at most [unpaced], or a schedule: 100..1000/60s "
                   "ramps over 60 s then holds; stages chain: 100..1000/60s,1000/5m,1000..0/30s.")
@click.option("--timeout", "timeout_s", type=float, default=None,
              help="Seconds per request before it counts as timed out [30].")
@click.option("--batch/--no-batch", default=None,
              help="Send through multi (many users per call) or one start call per record.")
@click.option("--batch-users", type=int, default=None, help="Users per multi call [50].")
@click.option("--batch-actions", type=int, default=None, help="Actions per multi call [500].")
@click.option("--batch-linger-ms", type=float, default=None,
              help="How long a multi call may wait to fill [20].")
@click.option("--max-attempts", type=int, default=None,
              help="Attempts per record, the first included [5].")
@click.option("--on-ambiguous", type=click.Choice(["retry", "fail"]), default=None,
              help="After a timeout or dropped connection: retry (at-least-once) or fail.")
@click.option("--outage-window", "outage_window_s", type=float, default=None,
              help="Seconds of nothing but failures after which the server counts as down: "
                   "intake pauses and one probe at a time checks for recovery [60].")
@click.option("--drain-timeout", "drain_timeout_s", type=float, default=None,
              help="On SIGINT/SIGTERM, seconds to let in-flight requests finish [30].")
@click.option("--allow-unknown-fields", is_flag=True, default=None,
              help="Pass fields that are not start parameters through instead of failing.")
@click.option("--save-responses", is_flag=True, default=None,
              help="Keep each whole response element in results.ndjson.")
@click.option("--max-line-bytes", type=int, default=None,
              help="Longer lines fail as line_too_long [1048576].")
@click.option("--workers", type=int, default=None,
              help="Processes sharing the users by a stable hash [0: one per CPU]; "
                   "1 when reading stdin.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Log lines on stderr as text or JSON [text].")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default=None, help="debug: every record; info: failures and events [info].")
@click.option("--progress-interval", "progress_interval_s", type=float, default=None,
              help="Seconds between progress lines when stderr is not a terminal [10].")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on this port while the run goes on (0: any).")
@click.option("--metrics-host", default=None,
              help="Address for --metrics-port [127.0.0.1].")
@click.option("--pace", type=click.Choice(["rate", "original"]), default=None,
              help="original: send each record at its recorded time (offset from the first, "
                   "divided by --speed) [rate].")
@click.option("--speed", type=float, default=None,
              help="With --pace original: times faster than recorded [1].")
@click.option("--duration", "duration_s", default=None, metavar="DURATION",
              help="Stop after this long (e.g. 90s, 10m, 1h30m), as gracefully as on SIGTERM.")
@click.option("--loop", is_flag=True, default=None,
              help="Replay the input again and again until --duration ends; later passes "
                   "suffix the user and device IDs (--loop-suffix, default -pass{n}).")
@click.option("--loop-suffix", default=None, help="Suffix of IDs in pass n [-pass{n}].")
@click.option("--fail-if", multiple=True, metavar="THRESHOLD",
              help="Fail (exit 6) if e.g. 'p99>500ms', 'error_rate>1%', 'rps<900' holds at "
                   "the end. Repeatable.")
@click.option("--abort-on-fail", is_flag=True, default=None,
              help="Check --fail-if every second too, and stop as soon as one fails.")
@click.option("--quiet", "-q", is_flag=True, default=None, help="Print nothing but errors.")
@click.option("--seed", type=int, default=None, help="Seed for retry jitter (reproducible runs).")
def run(paths: tuple[str, ...], config_path: Path | None, seed: int | None, **given: Any) -> None:
    """Replay the sessions in PATH... (NDJSON files, .gz files, or - for stdin).

    Every non-blank line ends as one row of results.ndjson (delivered) or of
    failures.ndjson (invalid, or not delivered, with the reason); summary.json
    counts them. The client key comes only from LEANPLUM_CLIENT_KEY or a key file.
    """
    _check_paths(paths)
    try:
        settings = load_settings(flags=_load_flags(given), env=os.environ,
                                 config_path=config_path)
        out_dir = prepare_out_dir(
            settings.out_dir, resume=settings.resume, overwrite=settings.overwrite,
            now_s=time.time(),
        )
        if settings.loop and not settings.duration_s:
            raise ConfigError("--loop replays until --duration ends: give a --duration")
        if settings.loop and settings.resume:
            raise ConfigError("a --loop run cannot resume: its passes have no fixed end")
        workers = worker_count(settings, paths)
        resume = None
        if settings.resume:
            check_resume(out_dir, paths, workers, endpoint=settings.endpoint)
        if settings.resume and workers == 1:
            resume = load_resume(out_dir, paths)
    except (ConfigError, OutDirError, ResumeError) as exc:
        raise SetupError(str(exc)) from None
    setup_logging(fmt=settings.log_format, level=settings.log_level, quiet=settings.quiet)
    _confirm_real_run(settings, paths)
    resume_command = _resume_command(click.get_current_context(), paths, out_dir)
    tune_gc()
    report = asyncio.run(_run(settings, paths, out_dir, resume, resume_command,
                              random.Random(seed), workers))
    if not settings.quiet:
        _print_summary(report)
    sys.exit(report.exit_code)


def _interactive() -> bool:
    """Whether someone at a terminal can answer a question."""
    return sys.stdin.isatty()


def _confirm_real_run(settings: Settings, paths: tuple[str, ...]) -> None:
    """Before a large run against the real API: show what it will cost and ask."""
    if settings.yes or settings.dry_run or not is_remote(settings.endpoint):
        return
    if any(is_stream(p) for p in paths):
        size = "an input of unknown size (stdin or a pipe)"
    else:
        tally = check_files(paths, allow_unknown_fields=settings.allow_unknown_fields,
                            max_line_bytes=settings.max_line_bytes, on_invalid=lambda _: None)
        if tally.valid <= settings.confirm_over:
            return
        users = len(tally.users)
        fewest = max(-(-tally.valid // settings.batch_actions), -(-users // settings.batch_users))
        calls = (f"at least {fewest} multi calls" if settings.batch
                 else f"{tally.valid} start calls")
        size = (f"{tally.valid} records ({tally.invalid} invalid lines will not be sent) for "
                f"{users} distinct users: {calls}, at least {users} user lookups (billed)")
    click.echo(f"About to replay {size} into {settings.endpoint}.", err=True)
    if not _interactive():
        raise SetupError("a large run against the real API needs a yes: run it from a terminal "
                         "to confirm, or add --yes (see --dry-run for the exact cost)")
    if not click.confirm("Go on?", err=True):
        raise SetupError("not confirmed; nothing was sent")


def _check_paths(paths: tuple[str, ...]) -> None:
    if paths.count(STDIN) > 1:
        raise click.UsageError("'-' (stdin) can be given once")
    for path in paths:
        if path != STDIN and (not os.path.exists(path) or os.path.isdir(path)):
            raise click.UsageError(f"no such file: {path}")


async def _run(settings: Settings, paths: tuple[str, ...], out_dir: Path, resume: Any,
               resume_command: str, rng: Any, workers: int) -> RunReport:
    control = RunControl()
    loop = asyncio.get_running_loop()
    for signum, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
        loop.add_signal_handler(signum, _on_signal, control, name, settings.quiet)
    try:
        async with watching(settings, out_dir, workers):
            if workers > 1:
                return await run_workers(settings, paths, out_dir, workers, control=control,
                                         resume_command=resume_command)
            return await replay(settings, paths, out_dir, control=control, resume=resume,
                                rng=rng, resume_command=resume_command)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _on_signal(control: RunControl, name: str, quiet: bool) -> None:
    again = control.stopping.is_set()
    control.request_stop(name)
    if again:
        click.echo(f"{name} again: stopping now", err=True)
    elif not quiet:
        click.echo(f"{name}: finishing requests in flight (again to stop at once)", err=True)


def _resume_command(ctx: click.Context, paths: tuple[str, ...], out_dir: Path) -> str:
    """This command again, every flag it was given kept, aimed at --out with --resume.

    Leaving a flag out would change the run on resume (--endpoint above all: a resume
    without it would go to the built-in emulator). Environment variables stay as they are.
    """
    words = ["replayer", "run", *paths, "--out", str(out_dir), "--resume"]
    for param in ctx.command.params:
        if (param.name in ("paths", "out_dir", "resume", "overwrite") or param.name is None
                or ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE):
            continue
        value = ctx.params[param.name]
        assert isinstance(param, click.Option)
        if param.is_flag and param.secondary_opts:
            words.append(param.opts[0] if value else param.secondary_opts[0])
        elif param.is_flag:
            words += [param.opts[0]] if value else []
        elif param.multiple:
            for item in value:
                words += [param.opts[0], str(item)]
        else:
            words += [param.opts[0], str(value)]
    return shlex.join(words)


def _print_summary(report: RunReport) -> None:
    s = report.summary
    lat = s["latency_ms"]
    click.echo(
        f"{s['state']}: {s['records']} records from {s['lines_read']} lines in "
        f"{s['elapsed_s']:.2f} s ({s['records_per_s']:.0f} records/s)"
    )
    done = "would send" if s.get("dry_run") else "delivered"
    click.echo(f"  {done} {s['delivered']}, failed {s['failed']}"
               + (f", unfinished {s['unfinished']}" if s["unfinished"] else ""))
    if s["failures_by_kind"]:
        kinds = ", ".join(f"{k} {n}" for k, n in s["failures_by_kind"].items())
        click.echo(f"  failures by kind: {kinds}")
    if lat.get("p50") is not None and not s.get("dry_run"):
        click.echo(f"  latency ms: p50 {lat['p50']}, p90 {lat['p90']}, p99 {lat['p99']}, "
                   f"max {lat['max']}")
    if s.get("dry_run"):
        click.echo(f"  dry run, nothing sent: {s['requests']} API calls carrying "
                   f"{s['user_lookups']} user lookups (the billable unit) would go out; "
                   f"bodies in {report.out_dir}/requests.ndjson")
    for verdict in s.get("thresholds", []):
        click.echo(f"  threshold {verdict['text']}")
    behind = s.get("behind_schedule_ms") or {}
    if (behind.get("p99") or 0) > 1000:
        click.echo(f"  behind schedule: p99 {behind['p99'] / 1000:.1f} s, "
                   f"max {behind['max'] / 1000:.1f} s (the target could not keep up)")
    if s.get("stopped_by"):
        click.echo(f"  stopped by {s['stopped_by']}")
    if s.get("stopped_because"):
        click.echo(f"  stopped because {s['stopped_because']}", err=True)
    click.echo(f"  outputs in {report.out_dir}/ (results.ndjson, failures.ndjson, summary.json)")
    if s.get("resume_with"):
        click.echo(f"  resume with: {s['resume_with']}")


@main.command()
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
    with opener(output, "wb") as out:
        write_records(out, records=records, users=users, seed=seed, with_time=with_time)


@main.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--allow-unknown-fields", is_flag=True,
              help="Accept fields that are not start parameters, as run would with this flag.")
@click.option("--max-line-bytes", type=click.IntRange(min=1024), default=1_048_576,
              show_default=True, help="Longer lines are invalid (line_too_long).")
def validate(paths: tuple[str, ...], allow_unknown_fields: bool, max_line_bytes: int) -> None:
    """Check PATH... as `replayer run` would, sending nothing.

    Prints every invalid line with its file, line number, kind and reason, then a
    table of counts by kind. Exit code 0 when every line is valid, 1 otherwise,
    2 on a usage error.

    \b
    Example:
      replayer validate sessions.ndjson.gz && replayer run sessions.ndjson.gz
    """
    _check_paths(paths)

    def report(failure: RecordFailure) -> None:
        click.echo(f"{failure.file}:{failure.line_no}: {failure.kind}: {failure.message}")

    tally = check_files(paths, allow_unknown_fields=allow_unknown_fields,
                        max_line_bytes=max_line_bytes, on_invalid=report)
    counts = tally.counts
    click.echo(f"{counts.lines} lines ({counts.blank_lines} blank): {tally.valid} valid records "
               f"for {len(tally.users)} distinct users, {tally.invalid} invalid")
    if tally.invalid:
        click.echo("\n".join(kind_table(tally)))
    sys.exit(1 if tally.invalid else 0)


main.add_command(emulate)
main.add_command(report)

if __name__ == "__main__":
    main()
