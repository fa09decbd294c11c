"""What every command shares: one-line failures with a documented exit code, and Ctrl-C
that exits 130 (as `replayer run` stopped by SIGINT does), never click's `Aborted!` and 1."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
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


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's commands, some named by where they are ("module:attribute") and imported
    when first looked up: `replayer run` does not pay for the converter's, the emulator's
    or the report's imports (about 0.15 s of CPU at every start)."""

    def __init__(self, commands: MutableMapping[str, click.Command],
                 lazy: dict[str, str]) -> None:
        self._commands = dict(commands)
        self._lazy = dict(lazy)

    def __getitem__(self, name: str) -> click.Command:
        where = self._lazy.pop(name, None)
        if where is not None:
            module, _, attribute = where.partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command), where
            self._commands[name] = command
        return self._commands[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._lazy.pop(name, None)
        self._commands[name] = command

    def __delitem__(self, name: str) -> None:
        if self._lazy.pop(name, None) is None:
            del self._commands[name]

    def __iter__(self) -> Iterator[str]:
        return iter([*self._commands, *self._lazy])

    def __len__(self) -> int:
        return len(self._commands) + len(self._lazy)

    def __contains__(self, name: object) -> bool:
        return name in self._commands or name in self._lazy


class Command(_ExitsOnCtrlC, click.Command):
    """A command run on its own (`python -m replayer.spark`): Ctrl-C exits 130."""
