"""The README and docs/ say only what the code does: generated blocks, flags, commands,
files, env vars, links.

The text the README held lives in README.md (what it is, Quickstart, exit codes), the guides
(docs/guides/), docs/reference.md (record format, outputs, settings, help texts), docs/
guarantees.md and docs/architecture.md: every check below runs over all of them.
"""

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
# Markdown in docs/ that is not ours to hold to the CLI: bench/run.py's output, and Leanplum's
# API in our words. Their links are still checked.
NOT_CLI_DOCS = frozenset({"docs/benchmarks.md", "docs/leanplum-api.md"})


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


MARKDOWN = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
            for p in _markdown_files()}
# Every file that documents the CLI: what the README said, wherever it lives now.
DOCS = {name: text for name, text in MARKDOWN.items() if name not in NOT_CLI_DOCS}
README = MARKDOWN["README.md"]
REFERENCE = MARKDOWN["docs/reference.md"]
ALL_DOCS = "\n".join(DOCS.values())
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
# The docs minus the help texts, which are the code's own words (test (a) holds them to it).
ALL_PROSE = _HELP_BLOCK.sub("", ALL_DOCS)


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


def section(title: str, name: str = "README.md") -> str:
    """The text of section `## title` of file `name`, up to the next `## ` heading."""
    pattern = rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)"
    match = re.search(pattern, MARKDOWN[name], re.MULTILINE | re.DOTALL)
    assert match is not None, f"{name} has no section '## {title}'"
    return match[1]


def command_lines() -> list[str]:
    """Each `replayer CMD ...` invocation in the docs' code blocks, continuations joined,
    cut at the next pipe, && or ;."""
    found = []
    for block in _FENCE.findall(ALL_PROSE):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            for match in re.finditer(r"(?:^|(?<=[\s/]))replayer [a-z].*", line):
                found.append(re.split(r"\s(?:\||&&|\|\||;)\s", match[0])[0])
    return found


# ---- (a) the generated blocks are what the code says now --------------------------------


@pytest.mark.parametrize("name", ["reference", "help"])
def test_generated_block_is_up_to_date(name: str) -> None:
    gen = gen_reference()
    in_docs = gen.block_in(REFERENCE, name)
    assert in_docs is not None, f"docs/reference.md lacks the {name} markers"
    assert in_docs == gen.blocks()[name], (
        f"the {name} block of docs/reference.md is stale: "
        "run .venv/bin/python docs/gen_reference.py --write")


def test_generated_blocks_live_only_in_the_reference() -> None:
    gen = gen_reference()
    for name, text in MARKDOWN.items():
        if name != "docs/reference.md":
            for block in gen.blocks():
                assert gen.marker(block, "start") not in text, (name, block)


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
    unknown = sorted(set(_FLAG.findall(ALL_DOCS)) - known)
    assert not unknown, f"the docs name flags no command has: {unknown}"


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
    mentioned = set(_COMMAND.findall(ALL_PROSE))
    assert {"run", "validate", "generate", "report", "emulate"} <= mentioned
    assert not mentioned - set(cli.main.commands), sorted(mentioned - set(cli.main.commands))


def test_every_command_has_a_help_text_and_a_row() -> None:
    commands = section("Commands", "docs/reference.md")
    for name in cli.main.commands:
        assert f"#### `replayer {name} --help`" in REFERENCE, name
        assert f"| `replayer {name}" in commands, name


# ---- (d) output files are ones the code writes -------------------------------------------


def package_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8")
                     for p in sorted((ROOT / "replayer").rglob("*.py")))


def test_every_output_file_listed_is_written_by_the_code() -> None:
    listed = set(re.findall(r"`([\w-]+\.(?:ndjson|json|log|html|png))`",
                            section("Outputs", "docs/reference.md")))
    assert {"results.ndjson", "failures.ndjson", "summary.json", "metrics.ndjson",
            "journal.log", "run.json", "requests.ndjson", "report.html"} <= listed
    source = package_text()
    from replayer.report.build import DEFAULT_NAME
    from replayer.report.page import CHARTS
    charts = {f"{DEFAULT_NAME}-{chart}.png" for chart in CHARTS}
    missing = [name for name in sorted(listed)
               if f'"{name}"' not in source and name != f"{DEFAULT_NAME}.html"
               and name not in charts]
    assert not missing, f"docs/reference.md lists output files the code does not write: {missing}"
    assert charts <= listed, "docs/reference.md misses a report chart"


def test_every_file_the_code_writes_is_listed() -> None:
    from replayer.output.layout import OUR_FILES
    outputs = section("Outputs", "docs/reference.md")
    for name in OUR_FILES:
        assert f"`{name}`" in outputs, name


def test_the_readme_stays_short() -> None:
    # Issue 24: a README people read. Guides, reference and design live in docs/.
    assert len(README.splitlines()) <= 250


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
    named = set(_ENV.findall(ALL_DOCS)) | set(_ENV_ASSIGNED.findall(ALL_PROSE))
    unknown = sorted(named - known)
    assert not unknown, f"the docs name environment variables the code does not read: {unknown}"


# ---- links: every relative link in README.md and docs/ resolves, anchors included ---------

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def slugs(text: str) -> set[str]:
    """The anchors of a Markdown file's headings, as GitHub makes them (code blocks left out)."""
    headings = re.findall(r"^#+ (.+)$", _FENCE.sub("", text), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def links(text: str) -> list[str]:
    """The targets of a Markdown file's inline links, outside code blocks and code spans."""
    prose = _CODE_SPAN.sub("", _FENCE.sub("", text))
    return _LINK.findall(prose)


@pytest.mark.parametrize("name", sorted(MARKDOWN))
def test_every_relative_link_resolves(name: str) -> None:
    here = (ROOT / name).parent
    broken = []
    for target in links(MARKDOWN[name]):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check
            continue
        path, _, anchor = target.partition("#")
        file = (here / path).resolve() if path else ROOT / name
        if not file.exists() or ROOT not in file.parents:
            broken.append(f"{target}: no such file")
            continue
        if anchor and anchor not in slugs(file.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, f"{name}: {broken}"


def test_links_are_found() -> None:
    # The link test sees links: the README links to each guide, the reference and the design.
    targets = {t.partition("#")[0] for t in links(README)}
    assert {"docs/reference.md", "docs/architecture.md"} <= targets
    guides = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "guides").glob("*.md")}
    assert guides <= targets, sorted(guides - targets)


# ---- the design names only modules and packages that exist -----------------------------------

_PY_PATH = re.compile(r"`((?:[\w.-]+/)*[\w-]+\.py)`|(?<![\w/.-])(replayer/(?:[\w-]+/)*[\w-]+\.py)\b")
_PACKAGE_PATH = re.compile(r"`(replayer/(?:[\w-]+/)*)`")


@pytest.mark.parametrize("name", sorted(MARKDOWN))
def test_every_python_path_named_exists(name: str) -> None:
    modules = {p.name for p in (ROOT / "replayer").rglob("*.py")}
    missing = []
    for quoted, bare in _PY_PATH.findall(MARKDOWN[name]):
        path = quoted or bare
        if "/" not in path:
            found = path in modules
        else:  # from the repository's root, or short for replayer/... (`engine/send.py`)
            found = (ROOT / path).is_file() or (ROOT / "replayer" / path).is_file()
        if not found:
            missing.append(path)
    for package in _PACKAGE_PATH.findall(MARKDOWN[name]):
        if not (ROOT / package / "__init__.py").is_file():
            missing.append(package)
    assert not missing, f"{name} names files or packages that do not exist: {missing}"


def test_the_architecture_covers_every_package() -> None:
    architecture = MARKDOWN["docs/architecture.md"]
    packages = sorted(p.parent.relative_to(ROOT).as_posix() + "/"
                      for p in (ROOT / "replayer").rglob("__init__.py")
                      if p.parent != ROOT / "replayer")
    missing = [p for p in packages if f"`{p}`" not in architecture]
    assert not missing, f"docs/architecture.md leaves out {missing}"
    path = section("The way of one record", "docs/architecture.md")
    stages = ["replayer/source/read.py", "replayer/source/validate.py",
              "replayer/engine/lanes.py", "replayer/engine/dispatch.py",
              "replayer/engine/attempt.py", "replayer/engine/classify.py",
              "replayer/engine/decide.py", "replayer/engine/settle.py",
              "replayer/engine/finish.py", "replayer/output/sinks.py"]
    at = [path.find(f"`{stage}`") for stage in stages]
    assert -1 not in at and at == sorted(at), dict(zip(stages, at, strict=True))


# ---- exit codes ----------------------------------------------------------------------------


def test_exit_codes_match_the_run_help() -> None:
    in_help = set(re.findall(r"^\s+(\d+)\s", cli.RUN_EPILOG, re.MULTILINE))
    table = section("Exit codes")
    in_readme = set(re.findall(r"^\| ([\d, ]+) \|", table, re.MULTILINE))
    codes = {code.strip() for row in in_readme for code in row.split(",")}
    assert in_help | {"143"} == codes
