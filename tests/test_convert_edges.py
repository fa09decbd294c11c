"""`replayer convert` at the edges of its inputs: BOMs, FIFOs, process substitution, and
paths that are neither files nor folders."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from replayer.commands.convert import convert

T = 1767261600  # 2026-01-01 10:00:00 UTC
ROWS = b"".join(orjson.dumps({"event": "e", "properties": {"time": T + i, "distinct_id": u}})
                + b"\n" for i, u in enumerate(["a", "b", "a"]))
RECORDS = b'{"userId":"a","time":1767261600}\n{"userId":"b","time":1767261601}\n'


def _convert(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(convert, ["--from", "mixpanel", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("name", ["export.json", "export.json.gz"])
def test_a_bom_at_the_start_of_an_export_is_skipped_as_run_skips_it(name: str,
                                                                    tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + ROWS
    export = tmp_path / name
    export.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    out = tmp_path / "o.ndjson"
    code, output = _convert(str(export), "-o", str(out))
    assert code == 0, output
    assert out.read_bytes() == RECORDS
    assert Path(f"{out}.rejects.ndjson").read_bytes() == b""


@contextlib.contextmanager
def _fifo_fed(path: Path, data: bytes) -> Iterator[None]:
    """A FIFO at `path` that a thread fills with `data` once a reader opens it."""
    os.mkfifo(path)

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), open(path, "wb") as pipe:
            pipe.write(data)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        yield
    finally:
        if writer.is_alive():  # nobody read it: open the read end so the writer ends
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            writer.join(timeout=10)
            os.close(fd)


def test_a_fifo_is_read_as_run_reads_one(tmp_path: Path) -> None:
    fifo, out = tmp_path / "export.fifo", tmp_path / "o.ndjson"
    with _fifo_fed(fifo, ROWS):
        code, output = _convert(str(fifo), "-o", str(out))
    assert code == 0, output
    assert out.read_bytes() == RECORDS


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash for <(...)")
def test_process_substitution_of_a_gzipped_export(tmp_path: Path) -> None:
    export, out = tmp_path / "a.json.gz", tmp_path / "o.ndjson"
    export.write_bytes(gzip.compress(ROWS))
    script = '"$0" -m replayer convert --from mixpanel <(zcat "$1") -o "$2"'
    done = subprocess.run(["bash", "-c", script, sys.executable, str(export), str(out)],
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == RECORDS


@pytest.fixture
def socket_path() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="rp-", dir="/tmp")  # a socket's path is short
    path = os.path.join(folder, "s")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        yield path
    shutil.rmtree(folder)


@pytest.mark.parametrize(("kind", "message"), [
    ("socket", "is a socket"),
    ("device", "/dev/null is a character device"),
    ("folder", "is a folder with no export files"),
    ("missing", "no such file or directory"),
])
def test_a_path_that_is_no_file_says_what_it_is(kind: str, message: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    path = {"socket": lambda: request.getfixturevalue("socket_path"),
            "device": lambda: "/dev/null",
            "folder": lambda: str(tmp_path),
            "missing": lambda: str(tmp_path / "nowhere.json")}[kind]()
    out = tmp_path / "o.ndjson"
    code, output = _convert(path, "-o", str(out))
    assert code == 4
    assert message in output
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in output
    assert not list(tmp_path.iterdir())


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize(("flags", "message"), [
    (["-o", "{export}"], "-o {export} is the input {export}"),
    (["-o", "./export.json"], "-o ./export.json is the input {export}"),
    (["-o", "{link}"], "is the input {export}"),
    (["-o", "{hard}"], "is the input {export}"),
    (["-o", "{tmp}/export.json.part"], "is the input"),
    (["-o", "{tmp}/export"], "(written as {tmp}/export.part) is the input {tmp}/export.part"),
    (["-o", "{tmp}/o.ndjson", "--rejects", "{export}"], "the rejects file {export} is the input"),
    (["-o", "{tmp}/o.ndjson", "--summary", "{link}"], "the summary file {link} is the input"),
    (["-o", "{tmp}/o.ndjson", "--summary", "{tmp}/o.ndjson"],
     "-o {tmp}/o.ndjson and the summary file {tmp}/o.ndjson are the same file"),
    (["-o", "{tmp}/o.ndjson", "--rejects", "{tmp}/r", "--summary", "{tmp}/./r"],
     "the rejects file {tmp}/r and the summary file {tmp}/./r are the same file"),
    (["-o", "-", "--rejects", "{tmp}/r", "--summary", "{tmp}/r.part"], "are the same file"),
    (["-o", "{tmp}/o.ndjson", "--rejects", "{tmp}/o.ndjson.summary.json"], "are the same file"),
], ids=["same-path", "dot-slash", "symlink", "hard-link", "output-part-is-input",
        "writes-through-input", "rejects", "summary-symlink", "summary-is-output",
        "rejects-is-summary", "rejects-part-is-summary", "rejects-is-default-summary"])
def test_an_output_that_is_an_input_or_another_output_exits_2_before_writing(
        flags: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    export = tmp_path / "export.json"
    export.write_bytes(ROWS)
    (tmp_path / "export.part").write_bytes(ROWS)
    (tmp_path / "export.json.part").symlink_to(export)
    os.symlink(export, tmp_path / "link.json")
    os.link(export, tmp_path / "hard.json")
    values = {"export": str(export), "link": str(tmp_path / "link.json"),
              "hard": str(tmp_path / "hard.json"), "tmp": str(tmp_path)}
    inputs = ["{tmp}/export.part"] if "{tmp}/export" in flags else ["{export}"]
    before = _listing(tmp_path)
    code, output = _convert(*[a.format(**values) for a in [*inputs, *flags]])
    assert code == 2, output
    assert output.startswith("Error: ") and output.count("\n") == 1, output
    assert message.format(**values) in output
    assert _listing(tmp_path) == before


def test_an_earlier_output_in_a_folder_of_exports_is_an_input(tmp_path: Path) -> None:
    (tmp_path / "export.json").write_bytes(ROWS)
    out = tmp_path / "out.ndjson"
    assert _convert(str(tmp_path), "-o", str(out))[0] == 0
    before = _listing(tmp_path)
    code, output = _convert(str(tmp_path), "-o", str(out))
    assert code == 2 and f"-o {out} is the input {out}" in output, output
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("via", ["stdout-appends-to-input", "stdin-is-output",
                                 "stdout-is-rejects"])
def test_stdin_and_stdout_that_are_an_input_or_output_file_are_refused(via: str,
                                                                      tmp_path: Path) -> None:
    export, rejects = tmp_path / "export.json", tmp_path / "r"
    export.write_bytes(ROWS)
    rejects.write_bytes(b"")
    args = [sys.executable, "-m", "replayer", "convert", "--from", "mixpanel"]
    to_stdout = ["-o", "-", "--rejects", str(rejects), "--summary", str(tmp_path / "s")]
    stdout_file = rejects if via == "stdout-is-rejects" else export
    with open(export, "rb") as stdin, open(stdout_file, "ab") as stdout:
        if via == "stdin-is-output":
            done = subprocess.run([*args, "-", "-o", str(export)], stdin=stdin,
                                  stderr=subprocess.PIPE, timeout=120, check=False)
        else:
            done = subprocess.run([*args, str(export), *to_stdout], stdout=stdout,
                                  stderr=subprocess.PIPE, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    expected = b"are the same file" if via == "stdout-is-rejects" else b"is the input"
    assert expected in done.stderr
    assert export.read_bytes() == ROWS and rejects.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json", "r"]
