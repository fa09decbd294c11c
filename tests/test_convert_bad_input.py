"""The bad inputs issue 23 names: a Parquet file whose columns are not the vendor's (for each
vendor), a zip with no export member, and a `--source-timezone` that is not an IANA name.
Each ends as one line on stderr, nothing on stdout, exit 2 (usage) or 4 (input), no traceback
and no output file left behind: in process for every case, and once per kind through the
real `replayer` process, where a traceback would reach the user."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import orjson
import pytest
from click.testing import CliRunner

from replayer import cli
from replayer.records import ExitCode
from tests.test_convert_sessions import BUILD, T

ROOT = Path(__file__).resolve().parent.parent


def _in_process(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


def _replayer(*args: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "replayer", *args], cwd=ROOT,
                          capture_output=True, timeout=120, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _parquet_of(vendor: str) -> Callable[[Path], Path]:
    """A Parquet file of `vendor`'s rows (another vendor's columns, to the one converting)."""
    def write(tmp_path: Path) -> Path:
        rows = tmp_path / "rows.json"
        rows.write_bytes(orjson.dumps(BUILD[vendor]("u", T)) + b"\n")
        path = tmp_path / f"{vendor}.parquet"
        db = duckdb.connect()
        db.execute(f"COPY (SELECT * FROM read_json('{rows}')) TO '{path}' (FORMAT parquet)")
        db.close()
        rows.unlink()
        return path
    return write


def _zip(*members: tuple[str, bytes]) -> Callable[[Path], Path]:
    def write(tmp_path: Path) -> Path:
        path = tmp_path / "export.zip"
        with zipfile.ZipFile(path, "w") as zipped:
            for name, data in members:
                zipped.writestr(name, data)
        return path
    return write


# (id, vendor converted, the input, extra flags, exit code, words the one line must hold)
BAD_INPUTS = [
    ("amplitude-parquet-of-ga4", "amplitude", _parquet_of("ga4"), [], ExitCode.INPUT,
     "no column event_time"),
    ("mixpanel-parquet-of-segment", "mixpanel", _parquet_of("segment"), [], ExitCode.INPUT,
     "no column properties"),
    ("segment-parquet-of-mixpanel", "segment", _parquet_of("mixpanel"), [], ExitCode.INPUT,
     "no column timestamp"),
    ("ga4-parquet-of-amplitude", "ga4", _parquet_of("amplitude"), [], ExitCode.INPUT,
     "no column event_timestamp"),
    ("zip-of-other-files", "amplitude",
     _zip(("README.txt", b"no export here"), ("1/", b"")), [], ExitCode.INPUT,
     "a zip with no export member"),
    ("empty-zip", "amplitude", _zip(), [], ExitCode.INPUT, "a zip with no export member"),
    ("zone-abbreviation", "mixpanel", _zip(), ["--source-timezone", "PST"], ExitCode.USAGE,
     "--source-timezone"),
    ("zone-not-on-earth", "mixpanel", _zip(), ["--source-timezone", "Mars/Olympus_Mons"],
     ExitCode.USAGE, "--source-timezone"),
]

PER_KIND = ["segment-parquet-of-mixpanel", "zip-of-other-files", "zone-abbreviation"]


def _check(run: Callable[..., tuple[int, str, str]], vendor: str,
           make: Callable[[Path], Path], flags: list[str], code: int, words: str,
           tmp_path: Path) -> None:
    source = make(tmp_path)
    out = tmp_path / "out" / "o.ndjson"
    out.parent.mkdir()
    exit_code, stdout, stderr = run("convert", "--from", vendor, str(source),
                                    "-o", str(out), *flags)
    assert exit_code == code, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and words in lines[0], stderr
    assert "Traceback" not in stderr and stdout == ""
    assert not list(out.parent.iterdir())  # no output, rejects or summary half written


@pytest.mark.parametrize(("vendor", "make", "flags", "code", "words"),
                         [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_a_bad_input_is_one_line_and_exit_2_or_4(
        vendor: str, make: Callable[[Path], Path], flags: list[str], code: int, words: str,
        tmp_path: Path) -> None:
    _check(_in_process, vendor, make, flags, code, words, tmp_path)


@pytest.mark.parametrize(("vendor", "make", "flags", "code", "words"),
                         [case[1:] for case in BAD_INPUTS if case[0] in PER_KIND],
                         ids=PER_KIND)
def test_the_real_process_shows_a_bad_input_as_one_line_too(
        vendor: str, make: Callable[[Path], Path], flags: list[str], code: int, words: str,
        tmp_path: Path) -> None:
    _check(_replayer, vendor, make, flags, code, words, tmp_path)
