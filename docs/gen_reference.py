"""Generates docs/reference.md's blocks from the code: the settings table and each --help.

    .venv/bin/python docs/gen_reference.py           print the blocks
    .venv/bin/python docs/gen_reference.py --write   replace them in docs/reference.md

tests/test_readme.py regenerates the blocks and compares them with docs/reference.md, so the
reference cannot drift from `replayer.config.FIELDS` and the click commands.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import MISSING, fields
from functools import cache
from pathlib import Path

import click

from replayer.cli import main as cli_main
from replayer.config import FIELDS, SPECS, FieldSpec, Settings

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"
CONFIG_TOML = ROOT / "config.toml"
HELP_WIDTH = 100  # fixed, so that the text does not depend on the terminal that runs this
COMMAND_ORDER = ("run", "validate", "generate", "report", "emulate")
# Flags of `replayer run` that are not settings in FIELDS: (environment, meaning of unset).
EXTRA_RUN_OPTIONS = {
    "config_path": ("REPLAYER_CONFIG", "unset: no config file"),
    "seed": ("", "unset: random jitter"),
}


def marker(name: str, end: str) -> str:
    """The HTML comment that opens (`end="start"`) or closes (`"end"`) block `name`."""
    return f"<!-- {name}:{end} -->"


def blocks() -> dict[str, str]:
    """Every generated block, by marker name, as it belongs between its markers."""
    return {"reference": settings_table(), "help": help_texts()}


# ---- the settings table ---------------------------------------------------------------


def settings_table() -> str:
    """A Markdown table: every flag of `replayer run` in --help order, then the settings
    without a flag, each with its environment variables, config key and default."""
    run = cli_main.commands["run"]
    rows: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for param in run.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        spec = _spec_for(param)
        if spec is None:
            env, default = EXTRA_RUN_OPTIONS[str(param.name)]
            rows.append(("—", _flags(param), _code(env), "", default, param.help or ""))
            continue
        seen.add(spec.name)
        rows.append(_row(spec, _flags(param), param.help or ""))
    comments = _config_comments()
    for spec in FIELDS:
        if spec.name not in seen:
            rows.append(_row(spec, "(none)", comments.get(spec.name, "")))
    head = ("setting", "flag", "environment", "config key", "default", "what it does")
    lines = [_cells(head), _cells(("---",) * len(head))]
    lines += [_cells(row) for row in rows]
    return "\n".join(lines)


def _spec_for(option: click.Option) -> FieldSpec | None:
    for spec in FIELDS:
        if spec.flag and spec.flag in option.opts:
            return spec
    return SPECS.get(str(option.name))


def _row(spec: FieldSpec, flag: str, meaning: str) -> tuple[str, ...]:
    env = ", ".join(f"`{name}`" for name in spec.env)
    key = "(not allowed)" if spec.kind == "secret" else f"`[{spec.section}] {spec.name}`"
    if spec.kind == "secret":
        meaning = ("The app's production client key: environment only, or a key file "
                   "(--client-key-file).")
    return (f"`{spec.name}`", flag, env, key, _default(spec.name), meaning)


def _flags(option: click.Option) -> str:
    names = sorted(option.opts, key=len) + list(option.secondary_opts)
    return " / ".join(f"`{name}`" for name in names)


def _default(name: str) -> str:
    field = next(f for f in fields(Settings) if f.name == name)
    value = field.default if field.default is not MISSING else None
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, tuple):
        return "`[]`" if not value else f"`{list(value)}`"
    return f"`{value}`"


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _cells(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"


def _config_comments() -> dict[str, str]:
    """Each setting's comment in config.toml up to its env line (for settings without a flag)."""
    out: dict[str, str] = {}
    block: list[str] = []
    for raw in CONFIG_TOML.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line.startswith("#"):
            block = []
            continue
        text = line.lstrip("#").strip()
        match = re.fullmatch(r"([a-z_]+) = .*", text)
        if match and match[1] in SPECS:
            env_at = next((i for i, t in enumerate(block) if t.startswith("env ")), len(block))
            prose = " ".join(block[:env_at])  # what follows is the env line and examples
            out.setdefault(match[1], prose)
            continue
        block.append(text)
    return out


# ---- the --help texts -----------------------------------------------------------------


def help_texts() -> str:
    """`replayer --help` and each command's --help, as the CLI prints them."""
    names = [n for n in COMMAND_ORDER if n in cli_main.commands]
    names += sorted(n for n in cli_main.commands if n not in COMMAND_ORDER)
    parts = [_help_section("replayer --help", [])]
    parts += [_help_section(f"replayer {name} --help", [name]) for name in names]
    return "\n\n".join(parts)


# Run in a fresh interpreter: click keeps a command's help option once built, so in a
# process that already invoked a command on its own (tests do) `-h` would be missing.
_HELP_SNIPPET = f"""
import sys
from click.testing import CliRunner
from replayer.cli import main
result = CliRunner().invoke(main, [*sys.argv[1:], "--help"], prog_name="replayer",
                            terminal_width={HELP_WIDTH}, color=False)
sys.stdout.write(result.output)
sys.exit(result.exit_code)
"""


@cache
def command_help(args: tuple[str, ...]) -> str:
    """What `replayer ARGS --help` prints, at a fixed width."""
    done = subprocess.run([sys.executable, "-c", _HELP_SNIPPET, *args], capture_output=True,
                          text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"replayer {' '.join(args)} --help failed: {done.stderr}")
    return done.stdout.rstrip() + "\n"


def _help_section(title: str, args: list[str]) -> str:
    return f"#### `{title}`\n\n```text\n{command_help(tuple(args))}```"


# ---- docs/reference.md ----------------------------------------------------------------


def block_in(text: str, name: str) -> str | None:
    """The text between block `name`'s markers in `text`, without the blank lines around it;
    None when the markers are missing."""
    start, end = marker(name, "start"), marker(name, "end")
    if start not in text or end not in text:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def with_blocks(text: str, generated: dict[str, str]) -> str:
    """`text` with each block replaced by its generated content."""
    for name, body in generated.items():
        start, end = marker(name, "start"), marker(name, "end")
        if block_in(text, name) is None:
            raise SystemExit(f"docs/reference.md has no {start} ... {end} markers")
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = f"{before}{start}\n\n{body}\n\n{end}{after}"
    return text


def main(argv: list[str]) -> int:
    """Prints the blocks, or with --write replaces them in docs/reference.md."""
    generated = blocks()
    if argv == ["--write"]:
        REFERENCE.write_text(with_blocks(REFERENCE.read_text(encoding="utf-8"), generated),
                             encoding="utf-8")
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    for name, body in generated.items():
        print(f"{marker(name, 'start')}\n\n{body}\n\n{marker(name, 'end')}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
