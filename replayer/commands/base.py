"""What every command shares: one-line failures with a documented exit code, and Ctrl-C
that exits 130 (as `replayer run` stopped by SIGINT does), never click's `Aborted!` and 1."""

from __future__ import annotations

from typing import Any

import click

from replayer.records import ExitCode


class InputFailure(click.ClickException):
    """An input that cannot be found or read: exit code 4."""

    exit_code = ExitCode.INPUT


class OutputFailure(click.ClickException):
    """An output that cannot be written (a folder, a file, a port): exit code 7."""

    exit_code = ExitCode.OUTPUT


def cannot_write(path: object, exc: OSError) -> OutputFailure:
    """The one line that says which output failed and why."""
    return OutputFailure(f"cannot write {exc.filename or path}: {exc.strerror or exc}")


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C, as Python raises it or as a click prompt turns it into Abort."""
    return isinstance(exc, KeyboardInterrupt) or (
        isinstance(exc, click.Abort) and isinstance(exc.__context__, KeyboardInterrupt))


def _stop(exc: BaseException) -> click.exceptions.Exit:
    click.echo("\nstopped by SIGINT", err=True)
    return click.exceptions.Exit(ExitCode.SIGINT)


class _ExitsOnCtrlC:
    """Makes a click command or group exit 130 on Ctrl-C (mixed in before the click class)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except (KeyboardInterrupt, click.Abort) as exc:
            if not _interrupted(exc):
                raise
            raise _stop(exc) from None


class Group(_ExitsOnCtrlC, click.Group):
    """The `replayer` group: a command interrupted by Ctrl-C exits 130."""


class Command(_ExitsOnCtrlC, click.Command):
    """A command run on its own (`python -m replayer.spark`): Ctrl-C exits 130."""
