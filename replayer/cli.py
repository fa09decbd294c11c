"""The click commands: parse flags, build Settings, run the pipeline with asyncio.run().

Exit codes of `replayer run`: 0 every record delivered; 1 some records failed (see
failures.ndjson); 2 usage or configuration error; 3 stopped: the API refused the access
key (401, "Invalid access key", or 403 on a single call); 4 stopped: the input could not
be read, or the endpoint could not be reached before the first record; 5 a worker process
died; 6 a --fail-if threshold failed; 7 stopped: an output could not be written; 8 stopped:
the server stayed down for --outage-limit (resumable); 129/130/143 stopped by
SIGHUP/SIGINT/SIGTERM (resumable).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from replayer import __version__
from replayer.commands import run_setup
from replayer.commands.base import Group, LazyCommands, OutputFailure
from replayer.commands.console import print_summary
from replayer.commands.flags import ShownDefault, settings_flags, shown
from replayer.commands.run_setup import SetupError
from replayer.commands.source import check_paths, generate, validate
from replayer.commands.watch import watching
from replayer.config import CONFIG_ENV, ConfigError, Settings, load_settings
from replayer.engine.control import RunControl
from replayer.engine.loop import loop_factory
from replayer.engine.rate_control import auto_rate_of
from replayer.engine.replay import RunReport, replay, tune_gc
from replayer.observe.logs import say, setup_logging
from replayer.output.layout import OutDirError, choose_out_dir, prepare_out_dir
from replayer.output.live_users import LiveUsers
from replayer.output.lock import FolderLock
from replayer.output.resume import ResumeState, check_workers, read_resume, retry_kinds
from replayer.output.runfile import (
    ResumeError,
    RunRecord,
    check_resume,
    check_writer,
    fingerprints,
    folder_for,
    record_for,
)
from replayer.output.sinks import OutputError
from replayer.source.shard import Shard, parse_shard
from replayer.workers.parent import run_workers, worker_count

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
       or 403 on a single call), at the preflight call or later; nothing
       more was sent
  4    stopped: an input file could not be read, or the preflight call
       found no Leanplum API at the endpoint (nothing was sent)
  5    a worker process died (its messages are above)
  6    a --fail-if threshold failed
  7    stopped: an output could not be written (disk full, folder
       not writable, --metrics-port in use)
  8    stopped: the server was unreachable or down for --outage-limit
       (resume with --resume)
  129  stopped by SIGHUP (resume with --resume)
  130  stopped by SIGINT (resume with --resume)
  143  stopped by SIGTERM (resume with --resume)
"""


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="replayer")
def main() -> None:
    """Replay NDJSON session records into Leanplum's start API, in bulk."""


@main.command(epilog=RUN_EPILOG)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              cls=ShownDefault, show_default="a new folder under ./replay-out/",
              help="Output folder.")
@click.option("--resume", is_flag=True, default=None,
              help="Continue the run in --out: skip lines already done.")
@click.option("--retry-failed", is_flag=True, default=None,
              help="With --resume: send again the lines that failed for passing reasons "
                   "(connection, timeout, server_error, rate_limited); their new rows "
                   "replace the failure rows.")
@click.option("--dry-run", is_flag=True, default=None,
              help="Send nothing: write the request bodies to requests.ndjson (key redacted) "
                   "and print what the run would cost.")
@click.option("--yes", "-y", is_flag=True, default=None,
              help="Do not ask before a large run against the real API.")
@click.option("--confirm-over", type=int, default=None,
              help="Ask before a real run of more records than this.",
              cls=ShownDefault, show_default=shown("confirm_over"))
@click.option("--overwrite", is_flag=True, default=None,
              help="Start over in a non-empty --out (removes replayer's files in it).")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, cls=ShownDefault, show_default=f"${CONFIG_ENV} if set",
              help="A config.toml.")
@click.option("--endpoint", default=None,
              help="'embedded' (an in-process emulator, the default) or the API URL.")
@click.option("--app-id", default=None, help="Leanplum app ID (or LEANPLUM_APP_ID).")
@click.option("--client-key-file", type=click.Path(path_type=Path, dir_okay=False),
              default=None,
              help="File holding the production client key (or set LEANPLUM_CLIENT_KEY).")
@click.option("--allow-insecure-http", is_flag=True, default=None,
              help="Allow plain http:// to a host that is not loopback.")
@click.option("--preflight/--no-preflight", default=None,
              help="Check the endpoint and key with one call that creates nothing, before "
                   "the first record (not for embedded or --dry-run).")
@click.option("--concurrency", type=int, default=None, help="Requests in flight at most.",
              cls=ShownDefault, show_default=shown("concurrency"))
@click.option("--rate", "rate_per_s", default=None, metavar="RATE|SCHEDULE",
              help="Requests per second at most, or a schedule: 100..1000/60s "
                   "ramps over 60 s then holds; stages chain: 100..1000/60s,1000/5m,1000..0/30s. "
                   "auto finds the highest rate the API accepts (auto:MAX: never above MAX).",
              cls=ShownDefault, show_default=shown("rate_per_s", unset="unpaced"))
@click.option("--timeout", "timeout_s", type=float, default=None,
              help=("Seconds per request before it counts as timed out (checked every "
                    "twentieth of it, at most a second apart)."),
              cls=ShownDefault, show_default=shown("timeout_s"))
@click.option("--batch/--no-batch", default=None,
              help="Send through multi (many users per call) or one start call per record.")
@click.option("--batch-users", type=int, default=None, help="Users per multi call.",
              cls=ShownDefault, show_default=shown("batch_users"))
@click.option("--batch-actions", type=int, default=None, help="Actions per multi call.",
              cls=ShownDefault, show_default=shown("batch_actions"))
@click.option("--batch-linger-ms", type=float, default=None,
              help="How long a multi call may wait to fill.",
              cls=ShownDefault, show_default=shown("batch_linger_ms"))
@click.option("--max-attempts", type=int, default=None,
              help="Attempts per record, the first included.",
              cls=ShownDefault, show_default=shown("max_attempts"))
@click.option("--on-ambiguous", type=click.Choice(["retry", "fail"]), default=None,
              help="After a timeout or dropped connection: retry (at-least-once) or fail.")
@click.option("--outage-window", "outage_window_s", type=float, default=None,
              help="Seconds of nothing but failures after which the server counts as down: "
                   "intake pauses and one probe at a time checks for recovery.",
              cls=ShownDefault, show_default=shown("outage_window_s"))
@click.option("--outage-limit", "outage_limit_s", type=float, default=None,
              help="Seconds an outage may last (an unreachable endpoint is one at once) "
                   "before the run stops with exit 8; --resume goes on.",
              cls=ShownDefault, show_default=shown("outage_limit_s"))
@click.option("--drain-timeout", "drain_timeout_s", type=float, default=None,
              help="On SIGINT/SIGTERM, seconds to let in-flight requests finish.",
              cls=ShownDefault, show_default=shown("drain_timeout_s"))
@click.option("--allow-unknown-fields", is_flag=True, default=None,
              help="Pass fields that are not start parameters through instead of failing.")
@click.option("--save-responses", is_flag=True, default=None,
              help="Keep each whole response element in results.ndjson.")
@click.option("--max-line-bytes", type=int, default=None,
              help="Longer lines fail as line_too_long.",
              cls=ShownDefault, show_default=shown("max_line_bytes"))
@click.option("--workers", type=int, default=None,
              help="Processes sharing the users by a stable hash (0: one per CPU); "
                   "1 when reading stdin.",
              cls=ShownDefault, show_default=shown("workers"))
@click.option("--event-loop", type=click.Choice(["auto", "uvloop", "asyncio"]), default=None,
              help="A one-process run's loop: auto (uvloop where installed), uvloop, asyncio.")
@click.option("--shard", default=None, metavar="I/N",
              help="Replay only shard I of N (1..N) of the users, by the same stable hash "
                   "as --workers; combine the N folders with `replayer merge`.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Log lines on stderr as text or JSON.",
              cls=ShownDefault, show_default=shown("log_format"))
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default=None, help="debug: every record; info: failures and events.",
              cls=ShownDefault, show_default=shown("log_level"))
@click.option("--progress-interval", "progress_interval_s", type=float, default=None,
              help="Seconds between progress lines when stderr is not a terminal.",
              cls=ShownDefault, show_default=shown("progress_interval_s"))
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on this port while the run goes on (0: any).")
@click.option("--metrics-host", default=None,
              help="Address for --metrics-port.",
              cls=ShownDefault, show_default=shown("metrics_host"))
@click.option("--pace", type=click.Choice(["rate", "original"]), default=None,
              help="original: send each record at its recorded time (offset from the first, "
                   "divided by --speed).",
              cls=ShownDefault, show_default=shown("pace"))
@click.option("--speed", type=float, default=None,
              help="With --pace original: times faster than recorded.",
              cls=ShownDefault, show_default=shown("speed"))
@click.option("--duration", "duration_s", default=None, metavar="DURATION",
              help="Stop after this long (e.g. 90s, 10m, 1h30m), as gracefully as on SIGTERM.")
@click.option("--loop", is_flag=True, default=None,
              help="Replay the input again and again until --duration ends; later passes "
                   "suffix the user and device IDs (--loop-suffix, default -pass{n}).")
@click.option("--loop-suffix", default=None, help="Suffix of IDs in pass n.",
              cls=ShownDefault, show_default=shown("loop_suffix"))
@click.option("--fail-if", multiple=True, metavar="THRESHOLD",
              help="Fail (exit 6) if e.g. 'p99>500ms', 'error_rate>1%', 'rps<900' holds at "
                   "the end. Repeatable.")
@click.option("--abort-on-fail", is_flag=True, default=None,
              help="Check --fail-if every second too, and stop as soon as one fails.")
@click.option("--quiet", "-q", is_flag=True, default=None, help="Print nothing but errors.")
@click.option("--seed", type=int, default=None, help="Seed for retry jitter (reproducible runs).")
def run(paths: tuple[str, ...], config_path: Path | None, seed: int | None, **given: Any) -> None:
    """Replay the sessions in PATH... (NDJSON files, .gz files, - for stdin, or
    s3://, gs://, az://, https:// objects and globs of them).

    Every non-blank line ends as one row of results.ndjson (delivered) or of
    failures.ndjson (invalid, or not delivered, with the reason); summary.json
    counts them. The client key comes only from LEANPLUM_CLIENT_KEY or a key file.
    """
    paths = check_paths(paths)  # URL globs expanded once: run, resume and workers see one list
    prepared = _prepare(paths, config_path, given)
    settings = prepared.settings
    setup_logging(fmt=settings.log_format, level=settings.log_level, quiet=settings.quiet)
    run_setup.confirm_real_run(settings, paths)
    # After every local check and the user's yes, before anything is read or sent.
    run_setup.check_endpoint_answers(settings)
    run_setup.announce(settings, paths, prepared.out_dir)
    resume_command = run_setup.resume_command(click.get_current_context(), paths,
                                              prepared.out_dir)
    prepared = dataclasses.replace(prepared, record=dataclasses.replace(
        prepared.record, resume_with=resume_command))
    tune_gc()
    try:
        # uvloop for a run in one process; a parent of workers keeps Python's own loop,
        # as its workers do (see workers/worker.py).
        choice = settings.event_loop if prepared.workers == 1 else "asyncio"
        with asyncio.Runner(loop_factory=_loop_factory(choice)) as runner:
            report = runner.run(_run(prepared, paths, resume_command, random.Random(seed)))
    except OutputError as exc:  # before any row: the metrics port, say
        raise OutputFailure(str(exc)) from None
    try:  # a signal now finds the run over: _run left the stop signals ignored
        if not settings.quiet:
            print_summary(report.summary, report.out_dir)
        elif report.summary.stopped_because:  # --quiet prints errors all the same
            say(f"stopped because {report.summary.stopped_because}")
        sys.exit(report.exit_code)
    finally:
        _restore_stop_signals()


@dataclass(frozen=True, slots=True)
class Prepared:
    """A run ready to start: its settings, its locked folder, its run.json, its resume state."""

    settings: Settings
    out_dir: Path
    workers: int
    record: RunRecord
    resume: ResumeState | None


def _prepare(paths: tuple[str, ...], config_path: Path | None, given: dict[str, Any]) -> Prepared:
    """Settings, the folder (locked for the rest of the command), and a checked resume."""
    try:
        settings = load_settings(flags=settings_flags(given), env=os.environ,
                                 config_path=config_path, sending=True)
        if settings.loop and not settings.duration_s:
            raise ConfigError("--loop replays until --duration ends: give a --duration")
        if settings.loop and settings.resume:
            raise ConfigError("a --loop run cannot resume: its passes have no fixed end")
        if settings.retry_failed and not settings.resume:
            raise ConfigError("--retry-failed sends again what a run in --out failed: "
                              "give --resume too")
        try:
            auto_rate_of(settings)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        out_dir = choose_out_dir(settings.out_dir, inputs=paths, resume=settings.resume,
                                 now_s=time.time(),
                                 default=None if settings.out_dir else folder_for(paths, settings))
        # One run per folder: locked before anything in it is touched, released when this
        # command ends (after sys.exit below) or with the process; workers die with it.
        lock = click.get_current_context().with_resource(FolderLock(out_dir))
        if not settings.overwrite:
            check_writer(out_dir, "run")  # a `replayer spark` job's folder is not ours
        prepare_out_dir(lock, resume=settings.resume, overwrite=settings.overwrite)
        workers = worker_count(settings, paths)
        shard = _shard_of(settings)
        record = record_for(settings, paths, workers=workers,
                            shard=shard.label if shard is not None else None)
        if settings.resume:
            fingerprints(paths)  # refuses stdin and pipes: they cannot be read again
        resume = None
        if settings.resume and workers == 1:
            # users.ndjson's tally starts from the rows the resume reads (no re-read at the
            # end); its spills are removed should the session end before writing it.
            users = LiveUsers(paths, spill_dir=out_dir)
            click.get_current_context().call_on_close(users.discard)
            resume = read_resume(out_dir, record, retry=retry_kinds(settings), users=users)
        elif settings.resume:
            check_resume(out_dir, record)
            check_workers(out_dir, record)
    except (ConfigError, OutDirError, ResumeError) as exc:
        raise SetupError(str(exc)) from None
    except OutputError as exc:
        raise OutputFailure(str(exc)) from None
    return Prepared(settings, out_dir, workers, record, resume)


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop asked for; a usage error when uvloop is asked for and missing."""
    try:
        return loop_factory(choice)
    except ConfigError as exc:
        raise SetupError(str(exc)) from None


def _shard_of(settings: Settings) -> Shard | None:
    """The run's --shard, checked (a ConfigError, exit 2, for anything but I/N)."""
    if settings.shard is None:
        return None
    try:
        return parse_shard(settings.shard)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


async def _run(prepared: Prepared, paths: tuple[str, ...], resume_command: str,
               rng: random.Random) -> RunReport:
    settings, out_dir, workers = prepared.settings, prepared.out_dir, prepared.workers
    control = RunControl()
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, _on_signal, control, signum.name, settings.quiet)
    try:
        async with watching(settings, out_dir, workers):
            if workers > 1:
                return await run_workers(settings, paths, out_dir, workers, control=control,
                                         resume_command=resume_command, record=prepared.record)
            return await replay(settings, paths, out_dir, control=control,
                                resume=prepared.resume, rng=rng, resume_command=resume_command,
                                record=prepared.record, shard=_shard_of(settings))
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
            # The outputs are written: a late signal must neither kill the process nor
            # raise KeyboardInterrupt while asyncio.run tears down and the summary prints.
            signal.signal(signum, signal.SIG_IGN)


# SIGHUP (the terminal went away) is a graceful stop like SIGTERM: exit 129, resumable.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _restore_stop_signals() -> None:
    """Puts back Python's own actions for the stop signals (for callers in the same process)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _on_signal(control: RunControl, name: str, quiet: bool) -> None:
    """A first stop signal drains the run; a second, whichever it is, stops it at once."""
    again = control.stopping.is_set()
    control.request_stop(name)
    if again:
        say(f"{name} again: stopping now")
    elif not quiet:
        say(f"{name}: finishing requests in flight (again to stop at once)")


main.add_command(generate)
main.add_command(validate)
# Imported when named (or listed by --help): a run starts without them.
main.commands = LazyCommands(main.commands, {
    name: f"replayer.commands.{name}:{name}"
    for name in ("emulate", "convert", "report", "merge", "spark")})

if __name__ == "__main__":
    main()
