"""`replayer run` starts without the other commands' imports; each command is still there
when named, listed or documented."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from replayer import cli
from replayer.commands.base import LazyCommands

LAZY = ("replayer.commands.convert", "replayer.source.convert.pipeline",
        "replayer.commands.report", "replayer.report.build", "replayer.commands.merge",
        "replayer.emulator.serve", "pycountry", "ua_parser",
        # what only a run that shows progress or serves /metrics needs
        "aiohttp.web", "prometheus_client", "rich", "replayer.observe.progress")


def test_importing_the_cli_imports_no_other_commands_code() -> None:
    code = ("import sys, replayer.cli; "
            f"print(sorted(m for m in {LAZY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_every_command_is_listed_and_each_lazy_one_runs_when_named() -> None:
    assert sorted(cli.main.commands) == ["convert", "emulate", "generate", "merge", "report",
                                         "run", "spark", "validate"]
    for name in ("convert", "emulate", "report", "merge", "spark"):
        result = CliRunner().invoke(cli.main, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert f"Usage: main {name}" in result.output or f"Usage: replayer {name}" in \
            result.output, result.output
    listing = CliRunner().invoke(cli.main, ["--help"]).output
    assert all(f"  {name} " in listing for name in cli.main.commands), listing


def test_lazy_commands_behave_as_a_mapping() -> None:
    run = click.Command("run")
    commands = LazyCommands({"run": run}, {"merge": "replayer.commands.merge:merge"})
    assert list(commands) == ["run", "merge"] and len(commands) == 2
    assert "merge" in commands and "nothing" not in commands
    assert commands.get("nothing") is None
    merge = commands["merge"]
    assert isinstance(merge, click.Command) and merge.name == "merge"
    assert commands["merge"] is merge and list(commands) == ["run", "merge"]
    replaced = click.Command("merge")
    commands["merge"] = replaced
    assert commands["merge"] is replaced
    del commands["merge"]
    assert list(commands) == ["run"]
    again = LazyCommands({}, {"merge": "replayer.commands.merge:merge"})
    del again["merge"]
    assert len(again) == 0
