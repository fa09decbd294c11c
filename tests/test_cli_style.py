"""One CLI style, walked command by command: every option explained, defaults shown by
click, the exit codes in each --help equal to the README's and to what the command does;
Ctrl-C is 130 and a file error is one line with its path, in every command."""

from __future__ import annotations

import array
import fcntl
import gzip
import re
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from replayer import cli
from replayer.records import ExitCode

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMANDS = sorted(cli.main.commands)
QUIET = ("run", "spark", "validate", "convert", "report", "merge")  # they print results
CONFIG = ("run", "spark", "validate", "convert")  # they read settings


def _options(name: str) -> list[click.Option]:
    return [p for p in cli.main.commands[name].params
            if isinstance(p, click.Option) and not p.hidden and p.name != "help"]


def _help(name: str) -> str:
    result = CliRunner().invoke(cli.main, [name, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def _codes_in_help(name: str) -> set[int]:
    """The codes listed under "Exit codes" in the command's --help."""
    text = _help(name)
    block = text[text.index("Exit codes"):]
    found: set[int] = set()
    for match in re.finditer(r"^\s+(\d+(?:, \d+)*)(?:\s|$)", block, re.MULTILINE):
        found.update(int(code) for code in match[1].split(", "))
    return found


def _codes_in_readme(name: str) -> set[int]:
    """The codes the README's "Exit codes" section gives the command."""
    section = README[README.index("## Exit codes"):]
    section = section[:section.index("\n## ", 1)]
    if name == "run":
        rows = re.findall(r"^\| ([\d, ]+) \|", section, re.MULTILINE)
        return {int(c) for row in rows for c in row.split(",")}
    item = re.search(rf"^- `replayer {name}`:(.*?)(?=^- |^\s*$)", section, re.MULTILINE | re.DOTALL)
    assert item is not None, f"the README gives no exit codes for {name}"
    return {int(c) for c in re.findall(r"\b\d+\b", re.sub(r"`[^`]*`", "", item[1]))}


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_explained_and_its_default_shown_by_click(name: str) -> None:
    for option in _options(name):
        text = option.help or ""
        assert text, f"{name} {option.opts}: no help text"
        assert not re.search(r"\[[^\]]*\]\.?$", text), f"{name} {option.opts}: a hand-written default"
        assert "(default" not in text, f"{name} {option.opts}: a hand-written default"
        value = option.default
        if isinstance(value, (int, float, str)) and value not in ("", False) and not option.is_flag:
            assert option.show_default, f"{name} {option.opts}: its default {value!r} is not shown"


@pytest.mark.parametrize("name", COMMANDS)
def test_exit_codes_in_the_help_are_the_readmes(name: str) -> None:
    assert _codes_in_help(name) == _codes_in_readme(name)


@pytest.mark.parametrize("name", COMMANDS)
def test_output_flags_are_spelled_one_way(name: str) -> None:
    for option in _options(name):
        if "--output" in option.opts:
            assert option.opts == ["-o", "--output"], f"{name}: {option.opts}"
            assert not getattr(option.type, "file_okay", True) is False
        if "--out" in option.opts:  # a folder
            assert getattr(option.type, "dir_okay", True), f"{name}: --out is a folder"
        assert "-o" not in option.opts or "--output" in option.opts


@pytest.mark.parametrize("name", QUIET)
def test_commands_that_print_results_can_be_quiet(name: str) -> None:
    assert any(o.opts == ["--quiet", "-q"] or set(o.opts) == {"-q", "--quiet"}
               for o in _options(name))


@pytest.mark.parametrize("name", CONFIG)
def test_commands_that_read_settings_take_config(name: str) -> None:
    assert any("--config" in o.opts for o in _options(name))


def test_run_and_spark_take_one_rate_grammar_and_spark_refuses_what_it_cannot_do(
        tmp_path: Path) -> None:
    data = tmp_path / "s.ndjson"
    data.write_text('{"userId": "u1"}\n', encoding="utf-8")
    for rate in ("auto", "auto:500", "100..200/10s"):
        result = CliRunner().invoke(cli.main, ["spark", str(data), "--out",
                                               str(tmp_path / "o"), "--rate", rate])
        assert result.exit_code == ExitCode.USAGE, result.output
        assert "auto and schedules" in result.output
    bad = CliRunner().invoke(cli.main, ["spark", str(data), "--out", str(tmp_path / "o"),
                                        "--rate", "fast"])
    assert bad.exit_code == ExitCode.USAGE and "--rate" in bad.output


def test_validate_reads_its_settings_from_config(tmp_path: Path) -> None:
    data = tmp_path / "s.ndjson"
    data.write_text('{"userId": "u1", "zzz": 1}\n', encoding="utf-8")
    config = tmp_path / "c.toml"
    config.write_text("[input]\nallow_unknown_fields = true\n", encoding="utf-8")
    assert CliRunner().invoke(cli.main, ["validate", str(data)]).exit_code == 1
    result = CliRunner().invoke(cli.main, ["validate", "--config", str(config), str(data)])
    assert result.exit_code == 0, result.output
    quiet = CliRunner().invoke(cli.main, ["validate", "-q", str(data)])
    assert (quiet.exit_code, quiet.output) == (1, "")


def test_report_takes_output_and_still_the_old_out(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["report", str(tmp_path), "-o", str(tmp_path / "r.png")])
    assert result.exit_code == ExitCode.USAGE and "*.html" in result.output
    old = CliRunner().invoke(cli.main, ["report", str(tmp_path), "--out", str(tmp_path / "r.png")])
    assert old.exit_code == ExitCode.USAGE and "*.html" in old.output


def test_merge_suggests_only_its_own_flags(tmp_path: Path) -> None:
    shard = tmp_path / "shard"
    data = tmp_path / "s.ndjson"
    data.write_text('{"userId": "u1"}\n', encoding="utf-8")
    ran = CliRunner().invoke(cli.main, ["run", str(data), "--out", str(shard), "--shard", "1/1",
                                        "-q"])
    assert ran.exit_code == 0, ran.output
    out = tmp_path / "merged"
    out.mkdir()
    (out / "something").write_text("x", encoding="utf-8")
    result = CliRunner().invoke(cli.main, ["merge", str(shard), "--out", str(out)])
    assert result.exit_code == ExitCode.USAGE
    assert "not empty" in result.output
    assert "--resume" not in result.output and "--overwrite" not in result.output


def _replayer(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "replayer", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]


def test_generate_into_a_missing_folder_is_one_line_and_exit_7(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "x.ndjson"
    proc = _replayer("generate", "--records", "5", "--users", "1", "-o", str(target))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.OUTPUT
    lines = err.decode().splitlines()
    assert len(lines) == 1 and str(target) in lines[0] and "Traceback" not in lines[0]


@pytest.mark.parametrize("command", ["validate", "run", "convert"])
def test_a_truncated_gz_is_one_line_naming_it(tmp_path: Path, command: str) -> None:
    whole = gzip.compress(b"".join(b'{"userId": "u%d", "event_type": "e", "time": %d}\n'
                                   % (i, 1_700_000_000_000 + i) for i in range(20_000)))
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    args = {"validate": ["validate", str(cut)],
            "run": ["run", str(cut), "--out", str(tmp_path / "o"), "-q"],
            "convert": ["convert", "--from", "amplitude", str(cut), "-o",
                        str(tmp_path / "x.ndjson")]}[command]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == ExitCode.INPUT, result.output
    named = [line for line in result.output.splitlines() if "cut.ndjson.gz: cannot read" in line]
    assert named and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("args", [
    ["generate", "--records", "100000000", "--users", "1000"],
    ["validate", "-"],
], ids=["generate", "validate"])
def test_ctrl_c_exits_130(tmp_path: Path, args: list[str]) -> None:
    if args[0] == "generate":
        args = [*args, "-o", str(tmp_path / "big.ndjson")]
    proc = _replayer(*args, stdin=subprocess.PIPE)
    deadline = time.monotonic() + 30
    # Wait until the command is running (its output file grows, or stdin is read).
    while args[0] == "generate" and not (tmp_path / "big.ndjson").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    if args[0] == "validate":
        assert proc.stdin is not None
        proc.stdin.write(b'{"userId": "u1"}\n')
        proc.stdin.flush()
        # Running once it has read the line (stdin stays open): the pipe is empty then,
        # however long the interpreter took to start on a loaded machine.
        while _bytes_waiting(proc.stdin.fileno()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.SIGINT, err.decode()
    assert b"Aborted!" not in err and b"Traceback" not in err


def _bytes_waiting(fd: int) -> int:
    """Bytes written to a pipe and not read yet (FIONREAD works on either end)."""
    waiting = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, waiting)
    return waiting[0]
