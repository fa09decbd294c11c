"""README.md says only what the code does: generated blocks, flags, commands, files, env vars."""

from __future__ import annotations

import importlib.util
import re
import shlex
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

from replayer import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
QUICKSTART_RUN = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e . && "
    ".venv/bin/replayer run samples/sessions.ndjson"
)
QUICKSTART_TEST = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && "
    ".venv/bin/python -m pytest"
)
# Environment variables the README may name besides the settings' own.
OTHER_ENV = {"REPLAYER_EMULATOR_CLIENT_KEY", "REPLAYER_CONFIG", "CI",
             # the AWS chain that s3:// inputs read (the S3 guide's moto setup)
             "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
             "AWS_DEFAULT_REGION",
             # Kubernetes sets it in each pod of an Indexed Job (the shards example)
             "JOB_COMPLETION_INDEX"}

_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_COMMAND = re.compile(r"(?:^|(?<=[\s`/(]))replayer(?:[ \t]+|[ \t]*\n[ \t]*)([a-z][\w-]*)",
                      re.MULTILINE)
_ENV = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
_ENV_ASSIGNED = re.compile(r"(?:^|[\s`])([A-Z][A-Z0-9_]*)=", re.MULTILINE)
_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_HELP_BLOCK = re.compile(r"<!-- help:start -->.*?<!-- help:end -->", re.DOTALL)
# The README minus the help texts, which are the code's own words (test (a) holds them to it).
README_PROSE = _HELP_BLOCK.sub("", README)


@cache
def gen_reference() -> ModuleType:
    """docs/gen_reference.py, imported from its path (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_reference",
                                                  ROOT / "docs" / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def help_flags() -> dict[str, frozenset[str]]:
    """Each command's flags as its --help shows them ("" is the group: --version, --help)."""
    gen = gen_reference()
    out = {"": frozenset(_FLAG.findall(gen.command_help(())))}
    for name in cli.main.commands:
        out[name] = frozenset(_FLAG.findall(gen.command_help((name,))))
    return out


def section(title: str) -> str:
    """The text of README section `## title`, up to the next `## ` heading."""
    pattern = rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)"
    match = re.search(pattern, README, re.MULTILINE | re.DOTALL)
    assert match is not None, f"README has no section '## {title}'"
    return match[1]


def command_lines() -> list[str]:
    """Each `replayer CMD ...` invocation in the README's code blocks, continuations joined,
    cut at the next pipe, && or ;."""
    found = []
    for block in _FENCE.findall(README_PROSE):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            for match in re.finditer(r"(?:^|(?<=[\s/]))replayer [a-z].*", line):
                found.append(re.split(r"\s(?:\||&&|\|\||;)\s", match[0])[0])
    return found


# ---- (a) the generated blocks are what the code says now --------------------------------


@pytest.mark.parametrize("name", ["reference", "help"])
def test_generated_block_is_up_to_date(name: str) -> None:
    gen = gen_reference()
    in_readme = gen.block_in(README, name)
    assert in_readme is not None, f"README.md lacks the {name} markers"
    assert in_readme == gen.blocks()[name], (
        f"the {name} block of README.md is stale: run .venv/bin/python docs/gen_reference.py --write")


def test_settings_table_covers_every_run_flag_and_setting() -> None:
    table = gen_reference().settings_table()
    for param in cli.main.commands["run"].params:
        for opt in (*param.opts, *getattr(param, "secondary_opts", ())):
            if opt.startswith("--") and opt != "--help":
                assert f"`{opt}`" in table, opt
    from replayer.config import FIELDS
    for spec in FIELDS:
        assert f"`{spec.name}`" in table, spec.name
        for env in spec.env:
            assert f"`{env}`" in table, env


# ---- (b) every --flag exists, (c) every command exists ---------------------------------


def test_every_flag_exists_in_some_help() -> None:
    # Besides the commands' flags: those of docs/gen_reference.py, which its docstring lists.
    script_flags = _FLAG.findall(gen_reference().__doc__ or "")
    known = frozenset().union(*help_flags().values(), script_flags)
    unknown = sorted(set(_FLAG.findall(README)) - known)
    assert not unknown, f"README names flags no command has: {unknown}"


def test_every_command_line_uses_that_commands_flags() -> None:
    lines = command_lines()
    assert len(lines) >= 10
    for line in lines:
        words = shlex.split(line, comments=True)
        command = words[1]
        assert command in cli.main.commands, line
        wrong = [f for f in _FLAG.findall(" ".join(words[2:])) if f not in help_flags()[command]]
        assert not wrong, f"{line!r}: replayer {command} has no {wrong}"


def test_every_command_mentioned_exists() -> None:
    mentioned = set(_COMMAND.findall(README_PROSE))
    assert {"run", "validate", "generate", "report", "emulate"} <= mentioned
    assert not mentioned - set(cli.main.commands), sorted(mentioned - set(cli.main.commands))


def test_every_command_has_a_help_text_and_a_row() -> None:
    commands = section("Reference")
    for name in cli.main.commands:
        assert f"#### `replayer {name} --help`" in README, name
        assert f"| `replayer {name}" in commands, name


# ---- (d) output files are ones the code writes -------------------------------------------


def package_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8")
                     for p in sorted((ROOT / "replayer").rglob("*.py")))


def test_every_output_file_listed_is_written_by_the_code() -> None:
    listed = set(re.findall(r"`([\w-]+\.(?:ndjson|json|log|html|png))`", section("Outputs")))
    assert {"results.ndjson", "failures.ndjson", "summary.json", "metrics.ndjson",
            "journal.log", "run.json", "requests.ndjson", "report.html"} <= listed
    source = package_text()
    from replayer.report.build import DEFAULT_NAME
    from replayer.report.page import CHARTS
    charts = {f"{DEFAULT_NAME}-{chart}.png" for chart in CHARTS}
    missing = [name for name in sorted(listed)
               if f'"{name}"' not in source and name != f"{DEFAULT_NAME}.html"
               and name not in charts]
    assert not missing, f"README lists output files the code does not write: {missing}"
    assert charts <= listed, "README misses a report chart"


def test_every_file_the_code_writes_is_listed() -> None:
    from replayer.output.layout import OUR_FILES
    outputs = section("Outputs")
    for name in OUR_FILES:
        assert f"`{name}`" in outputs, name


# ---- (e) the Quickstart commands, and CI runs the same tests -------------------------------


def test_quickstart_commands_are_exact() -> None:
    blocks = [b.strip() for b in _FENCE.findall(section("Quickstart"))]
    assert blocks == [QUICKSTART_RUN, QUICKSTART_TEST]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    test_command = QUICKSTART_TEST.rsplit(" && ", 1)[1]
    assert any(line.startswith(test_command) for line in commands), (
        f".ci/run does not run {test_command!r}")
    assert any("pip install" in line and "'.[test]'" in line for line in commands)


# ---- (f) environment variables are settings' (or one of a few others) ----------------------


def test_every_environment_variable_is_known() -> None:
    from replayer.config import FIELDS
    known = {env for spec in FIELDS for env in spec.env} | OTHER_ENV
    named = set(_ENV.findall(README)) | set(_ENV_ASSIGNED.findall(README_PROSE))
    unknown = sorted(named - known)
    assert not unknown, f"README names environment variables the code does not read: {unknown}"


# ---- links within the README ---------------------------------------------------------------


def test_every_anchor_link_has_its_heading() -> None:
    headings = re.findall(r"^#+ (.+)$", README_PROSE, re.MULTILINE)
    slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
    missing = sorted(set(re.findall(r"\]\(#([\w-]+)\)", README)) - slugs)
    assert not missing, f"links to no heading: {missing}"


# ---- exit codes ----------------------------------------------------------------------------


def test_exit_codes_match_the_run_help() -> None:
    in_help = set(re.findall(r"^\s+(\d+)\s", cli.RUN_EPILOG, re.MULTILINE))
    table = section("Exit codes")
    in_readme = set(re.findall(r"^\| ([\d, ]+) \|", table, re.MULTILINE))
    codes = {code.strip() for row in in_readme for code in row.split(",")}
    assert in_help | {"143"} == codes
