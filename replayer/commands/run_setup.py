"""Before `replayer run` starts: a yes for a large run against the real API, and the command
that resumes the run (kept in run.json and printed when the run stops early).
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from replayer.config import Settings, describe_target, is_remote
from replayer.config.settings import EMBEDDED
from replayer.engine.endpoint import Endpoint
from replayer.engine.preflight import preflight
from replayer.observe.logs import say
from replayer.records import ExitCode
from replayer.source.checkfile import check_files
from replayer.source.read import is_stream
from replayer.source.redact import has_query, shown_url


class SetupError(click.ClickException):
    """A configuration, output-folder or resume problem: exit code 2, like a usage error."""

    exit_code = ExitCode.USAGE


def interactive() -> bool:
    """Whether someone at a terminal can answer a question."""
    return sys.stdin.isatty()


def confirm_real_run(settings: Settings, paths: tuple[str, ...]) -> None:
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
    if not interactive():
        raise SetupError("a large run against the real API needs a yes: run it from a terminal "
                         "to confirm, or add --yes (see --dry-run for the exact cost)")
    if not click.confirm("Go on?", err=True):
        raise SetupError("not confirmed; nothing was sent")


class KeyRefused(click.ClickException):
    """The endpoint refused the key at the preflight call: nothing was read, sent or written."""

    exit_code = ExitCode.INVALID_KEY


class EndpointUnreachable(click.ClickException):
    """The preflight call found no Leanplum API at the endpoint: nothing was sent or written."""

    exit_code = ExitCode.INPUT


def check_endpoint_answers(settings: Settings) -> None:
    """The preflight call, for a run that will send to an endpoint of its own (engine.preflight)."""
    if not settings.preflight or settings.dry_run or settings.endpoint == EMBEDDED:
        return
    assert settings.app_id is not None and settings.client_key is not None
    endpoint = Endpoint(settings.endpoint, settings.app_id, settings.client_key.reveal())
    failure = asyncio.run(preflight(endpoint, timeout_s=settings.timeout_s))
    if failure is not None and failure.code is ExitCode.INVALID_KEY:
        raise KeyRefused(failure.message)
    if failure is not None:
        raise EndpointUnreachable(failure.message)


def announce(settings: Settings, paths: tuple[str, ...], out_dir: Path) -> None:
    """The start line: what is read, where it goes, where the outputs are (stderr)."""
    if settings.quiet:
        return
    # A signed URL's query is a credential: the line names the object without it.
    inputs = shown_url(paths[0]) if len(paths) == 1 else f"{len(paths)} inputs"
    target = describe_target(settings.endpoint, dry_run=settings.dry_run)
    say(f"replaying {inputs} into {target}; outputs in {out_dir}/")


def resume_command(ctx: click.Context, paths: tuple[str, ...], out_dir: Path) -> str:
    """This command again, every flag it was given kept, aimed at --out with --resume.

    Leaving a flag out would change the run on resume (--endpoint above all: a resume
    without it would go to the built-in emulator). Environment variables stay as they are.
    A signed https input is shown without its query (its signature), and a comment asks
    for a freshly signed URL of the same object instead.
    """
    words = ["replayer", "run", *(shown_url(p) for p in paths), "--out", str(out_dir),
             "--resume"]
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
    signed = any(has_query(p) for p in paths)
    return shlex.join(words) + ("  # give each https input as a freshly signed URL of the "
                                "same object" if signed else "")
