"""Resume state: run.json's RunRecord (codec, differences) and validation of every file a resume reads."""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from replayer.output.journal import JOURNAL, RUN, Journal, LineSet, load_resume
from replayer.output.layout import FAILURES, RESULTS, WORKERS_DIR
from replayer.output.resume import check_workers, read_resume
from replayer.output.runfile import (
    InputPrint,
    Layout,
    ResumeError,
    RunRecord,
    check_resume,
    differences,
    fingerprints,
    write_run,
)
from tests.conftest import generated

PRINT = InputPrint("in.ndjson", 1000, "ab" * 32)
BASE = RunRecord(state="running", endpoint="embedded", dry_run=False, loop=False,
                 inputs=(PRINT,), layout=Layout(), resume_with=None, run_id="r1")


def same(**changes: Any) -> RunRecord:
    return dataclasses.replace(BASE, **changes)


# ---- the codec ----------------------------------------------------------------------------

ROUND_TRIPS = [
    BASE,
    same(inputs=None),
    same(inputs=()),
    same(dry_run=True, state="finished"),
    same(loop=True, resume_with="replayer run in.ndjson --out o --resume"),
    same(layout=Layout(workers=4)),
    same(layout=Layout.worker(3, 4)),
    same(inputs=(PRINT, InputPrint("b.ndjson.gz", 0, "00"))),
]


@pytest.mark.parametrize("record", ROUND_TRIPS,
                         ids=["base", "stdin", "no-inputs", "dry-finished", "loop-resume-with",
                              "workers", "worker-shard", "two-inputs"])
def test_a_record_decodes_to_itself(record: RunRecord) -> None:
    data = record.encode()
    assert data.endswith(b"\n")
    assert RunRecord.decode(data, path="x/run.json") == record


def test_each_invocation_gets_a_new_run_id_and_workers_keep_it() -> None:
    a = RunRecord(state="running", endpoint="e", dry_run=False, loop=False, inputs=None)
    b = RunRecord(state="running", endpoint="e", dry_run=False, loop=False, inputs=None)
    assert a.run_id != b.run_id and len(a.run_id) == 32
    worker = dataclasses.replace(a, layout=Layout(workers=3)).for_worker(2)
    assert (worker.run_id, worker.layout) == (a.run_id, Layout(workers=3, shard="2/3"))
    assert a.with_state("finished").state == "finished"


def doc(**changes: Any) -> bytes:
    base = orjson.loads(BASE.encode())
    for key, value in changes.items():
        if value is ...:
            del base[key]
        else:
            base[key] = value
    return orjson.dumps(base)


BAD_DOCS = [
    (b"", "not valid JSON"),
    (b"{\"version\": 2, \"state\"", "not valid JSON"),
    (BASE.encode()[: len(BASE.encode()) // 2], "not valid JSON"),
    (b"\x00\xff garbage", "not valid JSON"),
    (b"[2]", "not a JSON object"),
    (doc(version=1), "version 1 is not one"),
    (doc(version="2"), "version '2' is not one"),
    (doc(version=True), "version True is not one"),
    (doc(version=...), "version None is not one"),
    (doc(dry_run=...), "missing field(s) dry_run"),
    (doc(layout=..., loop=...), "missing field(s) layout, loop"),
    (doc(extra=1), "unknown field(s) extra"),
    (doc(dry_run="yes"), "dry_run must be true or false"),
    (doc(loop=0), "loop must be true or false"),
    (doc(state=None), "state must be a string"),
    (doc(endpoint=3), "endpoint must be a string"),
    (doc(run_id=[]), "run_id must be a string"),
    (doc(input_format="csv"), "input_format 'csv' is not one of ndjson"),
    (doc(resume_with=5), "resume_with must be a string or null"),
    (doc(inputs="in.ndjson"), "inputs must be a list or null"),
    (doc(inputs=[{"file": "a", "size": "10", "sha256_edges": "x"}]), "input 1 must be"),
    (doc(inputs=[{"file": "a", "size": -1, "sha256_edges": "x"}]), "input 1 must be"),
    (doc(inputs=[{"file": "a", "size": 1}]), "input 1 must be"),
    (doc(layout={"workers": 0, "shard": None}), "layout.workers must be an integer >= 1"),
    (doc(layout={"workers": True, "shard": None}), "layout.workers must be an integer >= 1"),
    (doc(layout={"workers": 2}), "layout must be {workers, shard}"),
    (doc(layout={"workers": 2, "shard": "2/2"}), "layout.shard must be null or"),
    (doc(layout={"workers": 2, "shard": "0/3"}), "layout.shard must be null or"),
    (doc(layout={"workers": 2, "shard": "01/2"}), "layout.shard must be null or"),
]


@pytest.mark.parametrize(
    ("data", "message"), BAD_DOCS,
    ids=["empty", "cut-mid-key", "truncated-half", "binary", "array", "version-1",
         "version-string", "version-bool", "no-version", "missing-dry-run", "missing-two",
         "unknown-field", "dry-run-string", "loop-int", "state-null", "endpoint-int",
         "run-id-list", "input-format", "resume-with-int", "inputs-string", "size-string",
         "size-negative", "print-missing-hash", "workers-0", "workers-bool", "layout-no-shard",
         "shard-out-of-range", "shard-other-count", "shard-leading-zero"],
)
def test_a_damaged_run_json_is_refused_naming_the_file(data: bytes, message: str) -> None:
    with pytest.raises(ResumeError) as caught:
        RunRecord.decode(data, path="out/run.json")
    assert str(caught.value).startswith("out/run.json: ")
    assert message in str(caught.value)
    assert "start a new --out" in str(caught.value)


# ---- differences --------------------------------------------------------------------------

DIFFERENCES = [
    (BASE, BASE, []),
    (same(state="interrupted", resume_with="x", run_id="r0"), BASE, []),
    (same(dry_run=True), BASE, [("the earlier run was a --dry-run; this one is real: a dry "
                                "run's rows say nothing was sent, start a new --out")]),
    (BASE, same(dry_run=True), ["the earlier run was real; this one is a --dry-run"]),
    (same(loop=True), BASE, ["the earlier run used --loop; this one does not"]),
    (BASE, same(loop=True), ["the earlier run did not use --loop; this one does"]),
    (BASE, same(inputs=(dataclasses.replace(PRINT, size=1001),)),
     ["the input differs from the one the earlier run started with (in.ndjson changed"]),
    (BASE, same(inputs=(PRINT, PRINT)), [("(it read in.ndjson, this one reads in.ndjson, "
                                         "in.ndjson)")]),
    (same(inputs=None), BASE, ["the earlier run read stdin or a pipe"]),
    (BASE, same(endpoint="http://127.0.0.1:1/api"),
     [("the earlier run was sending to embedded, not http://127.0.0.1:1/api; resume it with "
      "--endpoint embedded")]),
    (BASE, same(layout=Layout(workers=2)), [("the earlier run used 1 worker(s); resume it "
                                            "with --workers 1")]),
    (same(layout=Layout.worker(0, 2)), same(layout=Layout.worker(1, 2)),
     ["this folder holds the share of worker 0/2, not of 1/2"]),
    (same(dry_run=True, endpoint="a", layout=Layout(workers=3)), BASE,
     ["was a --dry-run", "was sending to a, not embedded", "used 3 worker(s)"]),
]


@pytest.mark.parametrize(
    ("previous", "now", "expected"), DIFFERENCES,
    ids=["same", "only-state-and-id", "dry-then-real", "real-then-dry", "loop-then-not",
         "not-then-loop", "input-changed", "input-added", "stdin", "endpoint", "workers",
         "shard", "three-at-once"],
)
def test_differences_say_what_differs(previous: RunRecord, now: RunRecord,
                                      expected: list[str]) -> None:
    found = differences(previous, now)
    assert len(found) == len(expected)
    for sentence, part in zip(found, expected, strict=True):
        assert part in sentence


def test_check_resume_joins_every_difference(tmp_path: Path) -> None:
    write_run(tmp_path, same(dry_run=True, endpoint="a"))
    with pytest.raises(ResumeError) as caught:
        check_resume(tmp_path, BASE)
    text = str(caught.value)
    assert text.startswith(f"cannot resume the run in {tmp_path}: ")
    assert "was a --dry-run" in text and "was sending to a, not embedded" in text
    assert check_resume(tmp_path, same(dry_run=True, endpoint="a", run_id="new")).run_id == "r1"


def test_check_resume_refuses_a_missing_or_damaged_run_json(tmp_path: Path) -> None:
    with pytest.raises(ResumeError, match="holds no run to resume"):
        check_resume(tmp_path, BASE)
    (tmp_path / RUN).write_bytes(b'{"version": 2')
    with pytest.raises(ResumeError, match=f"{tmp_path / RUN}: not valid JSON"):
        check_resume(tmp_path, BASE)


# ---- validating a folder ------------------------------------------------------------------

def rows(*docs: Any) -> bytes:
    return b"".join(orjson.dumps(d) + b"\n" for d in docs)


def result(file: str, line: Any, status: str = "delivered", **extra: Any) -> dict[str, Any]:
    return {"file": file, "line": line, "userId": "u", "deviceId": None, "status": status,
            "http_status": 200, "attempts": 1, **extra}


def failure(file: str, line: Any, kind: str = "rejected") -> dict[str, Any]:
    return {"file": file, "line": line, "userId": "u", "deviceId": None, "kind": kind,
            "message": "m", "http_status": None, "attempts": 0}


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, str, RunRecord]:
    """A folder of a real run over a 10-line input (161 bytes), with rows and a journal."""
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"".join(b'{"userId":"u%d"}\n' % n for n in range(1, 11)))
    path = str(src)
    out = tmp_path / "out"
    out.mkdir()
    now = same(inputs=fingerprints([path]))
    write_run(out, now)
    (out / RESULTS).write_bytes(rows(result(path, 1), result(path, 2)))
    (out / FAILURES).write_bytes(rows(failure(path, 3)))
    (out / JOURNAL).write_bytes(rows([path, [1, 2, 3]], [path, [4, 5]]))
    return out, path, now


def test_a_valid_folder_is_read(folder: tuple[Path, str, RunRecord]) -> None:
    out, path, now = folder
    state = read_resume(out, now)
    assert [n for n in range(1, 12) if state.is_done(path, n)] == [1, 2, 3]
    assert [n for n in range(1, 12) if state.was_sent(path, n)] == [4, 5]
    assert dict(state.prior.by_status) == {"delivered": 2, "failed": 1}


Corrupt = Callable[[str], tuple[str, bytes]]

CORRUPTIONS: list[tuple[str, Corrupt, str]] = [
    ("journal-garbage-in-middle",
     lambda p: (JOURNAL, rows([p, [1]]) + b"%%garbage%%\n" + rows([p, [2]])),
     "journal.log line 2: not JSON"),
    ("journal-object", lambda p: (JOURNAL, rows({"file": p, "lines": [1]})),
     "journal.log line 1: not a journal entry replayer wrote"),
    ("journal-three-items", lambda p: (JOURNAL, rows([p, [1], 2])),
     "journal.log line 1: not a journal entry"),
    ("journal-line-10^12", lambda p: (JOURNAL, rows([p, [1]], [p, [2, 10**12]])),
     "journal.log line 2: line number 1000000000000 is outside"),
    ("journal-line-2^64", lambda p: (JOURNAL, rows([p, [2]]) + b'["' + p.encode()
                                     + b'", [18446744073709551616]]\n'),
     "journal.log line 2: line number 1.8446744073709552e+19 is not an integer"),
    ("journal-line-0", lambda p: (JOURNAL, rows([p, [0]])), "line number 0 is outside"),
    ("journal-line-past-size", lambda p: (JOURNAL, rows([p, [162]])),
     "line number 162 is outside"),
    ("journal-line-float", lambda p: (JOURNAL, rows([p, [2.0]])), "2.0 is not an integer"),
    ("journal-line-bool", lambda p: (JOURNAL, rows([p, [True]])), "True is not an integer"),
    ("journal-other-file", lambda p: (JOURNAL, rows(["other.ndjson", [1]])),
     "'other.ndjson' is not one of this run's inputs"),
    ("journal-file-int", lambda p: (JOURNAL, rows([7, [1]])), "file name is not a string"),
    ("journal-blank-line", lambda p: (JOURNAL, rows([p, [1]]) + b"\n" + rows([p, [2]])),
     "journal.log line 2: not JSON"),
    ("results-garbage-in-middle",
     lambda p: (RESULTS, rows(result(p, 1)) + b"{oops\n" + rows(result(p, 2))),
     "results.ndjson line 2: not JSON"),
    ("results-line-10^12", lambda p: (RESULTS, rows(result(p, 10**12))),
     "results.ndjson line 1: line number 1000000000000 is outside"),
    ("results-line-string", lambda p: (RESULTS, rows(result(p, "3"))), "'3' is not an integer"),
    ("results-no-line", lambda p: (RESULTS, rows({"file": p, "status": "delivered"})),
     "None is not an integer"),
    ("results-array", lambda p: (RESULTS, rows([p, 1])), "not a JSON object"),
    ("results-other-file", lambda p: (RESULTS, rows(result("x.ndjson", 1))),
     "'x.ndjson' is not one of this run's inputs"),
    ("results-dry-run-row", lambda p: (RESULTS, rows(result(p, 1, status="dry_run"))),
     "status 'dry_run' is not one of delivered"),
    ("results-duplicate-flag", lambda p: (RESULTS, rows(result(p, 1, possible_duplicate=1))),
     "possible_duplicate must be true or false"),
    ("failures-unknown-kind", lambda p: (FAILURES, rows(failure(p, 1, kind="oops"))),
     "failures.ndjson line 1: failure kind 'oops' is not one replayer writes"),
    ("failures-no-kind", lambda p: (FAILURES, rows({"file": p, "line": 1})),
     "failure kind None"),
    ("failures-line-negative", lambda p: (FAILURES, rows(failure(p, -4))), "-4 is outside"),
    ("run-json-truncated", lambda p: (RUN, same().encode()[:40]), "run.json: not valid JSON"),
    ("run-json-version-1", lambda p: (RUN, orjson.dumps({"version": 1, "inputs": []})),
     "run.json: version 1 is not one"),
]


@pytest.mark.parametrize(("name", "corrupt", "message"), CORRUPTIONS,
                         ids=[c[0] for c in CORRUPTIONS])
def test_a_bad_line_is_refused_naming_file_and_line(
    folder: tuple[Path, str, RunRecord], name: str, corrupt: Corrupt, message: str
) -> None:
    out, path, now = folder
    file, content = corrupt(path)
    (out / file).write_bytes(content)
    with pytest.raises(ResumeError) as caught:
        read_resume(out, now)
    assert message in str(caught.value)
    assert str(out / file) in str(caught.value)
    assert "start a new --out" in str(caught.value)


@pytest.mark.parametrize(
    "file", [JOURNAL, RESULTS],
)
def test_an_absurd_line_number_is_refused_with_little_memory(
    folder: tuple[Path, str, RunRecord], file: str
) -> None:
    out, path, now = folder
    entry = [path, [10**12]] if file == JOURNAL else result(path, 10**12)
    (out / file).write_bytes(rows(entry))
    tracemalloc.start()
    try:
        with pytest.raises(ResumeError, match="outside"):
            read_resume(out, now)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_the_legacy_entry_point_refuses_an_absurd_line_too(
    folder: tuple[Path, str, RunRecord]
) -> None:
    out, path, _ = folder
    inputs = [p.to_doc() for p in fingerprints([path])]
    (out / RUN).write_bytes(orjson.dumps({"version": 1, "inputs": inputs}))
    (out / JOURNAL).write_bytes(rows([path, [10**12]]))
    with pytest.raises(ResumeError, match="journal.log line 1: line number 1000000000000"):
        load_resume(out, [path])
    (out / JOURNAL).write_bytes(rows([path, [1]]) + b"not json\n")
    with pytest.raises(ResumeError, match="journal.log line 2: not JSON"):
        load_resume(out, [path])
    (out / RUN).write_bytes(b"{torn")
    with pytest.raises(ResumeError, match="run.json: not valid JSON"):
        load_resume(out, [path])


def test_a_line_set_costs_memory_by_lines_added_not_by_their_number() -> None:
    tracemalloc.start()
    try:
        lines = LineSet()
        for n in range(1, 1_000_001):
            lines.add("a", n)
        dense = tracemalloc.get_traced_memory()[0]
        far = LineSet()
        far.add("a", 10**12)
        far.add("a", 10**15)
        sparse = tracemalloc.get_traced_memory()[0] - dense
    finally:
        tracemalloc.stop()
    assert lines.size == 1_000_000 and dense < 200_000  # ~1 bit a line
    assert (far.size, ("a", 10**12) in far, ("a", 10**12 + 1) in far) == (2, True, False)
    assert sparse < 10_000


TORN = [
    (RESULTS, lambda p: rows(result(p, 1)) + b'{"file": "' + p.encode() + b'", "li'),
    (FAILURES, lambda p: rows(failure(p, 3)) + b'{"file"'),
    (JOURNAL, lambda p: rows([p, [1, 2, 3]], [p, [4]]) + b'["' + p.encode() + b'", [9, 1'),
    (JOURNAL, lambda p: rows([p, [1, 2, 3]]) + b"\x00\x00\x00"),
]


@pytest.mark.parametrize(("file", "content"), TORN,
                         ids=["results", "failures", "journal", "journal-zeros"])
def test_a_torn_last_line_is_cut_and_the_rest_read(
    folder: tuple[Path, str, RunRecord], file: str, content: Callable[[str], bytes]
) -> None:
    out, path, now = folder
    data = content(path)
    (out / file).write_bytes(data)
    state = read_resume(out, now)
    kept = (out / file).read_bytes()
    assert kept == data[: data.rindex(b"\n") + 1]
    assert not state.was_sent(path, 9)
    read_resume(out, now)  # and the repaired folder reads again


def test_garbage_before_a_torn_tail_is_still_refused(folder: tuple[Path, str, RunRecord]) -> None:
    out, path, now = folder
    (out / JOURNAL).write_bytes(rows([path, [1]]) + b"junk\n" + b'["' + path.encode())
    with pytest.raises(ResumeError, match="journal.log line 2: not JSON"):
        read_resume(out, now)


def test_a_dry_run_folder_reads_its_own_rows(folder: tuple[Path, str, RunRecord]) -> None:
    out, path, now = folder
    dry = dataclasses.replace(now, dry_run=True)
    write_run(out, dry)
    (out / RESULTS).write_bytes(rows(result(path, 1, status="dry_run")))
    assert read_resume(out, dry).is_done(path, 1)
    with pytest.raises(ResumeError, match="status 'delivered' is not one of dry_run"):
        (out / RESULTS).write_bytes(rows(result(path, 1)))
        read_resume(out, dry)


def test_what_the_journal_writes_reads_back(folder: tuple[Path, str, RunRecord]) -> None:
    out, path, now = folder
    (out / JOURNAL).unlink()
    journal = Journal(out)
    journal.sending([(path, 9), (path, 10), (path, 1)])
    journal.save_run(now.with_state("interrupted"))
    journal.close()
    state = read_resume(out, now)
    assert [n for n in range(1, 11) if state.was_sent(path, n)] == [9, 10]
    assert RunRecord.decode((out / RUN).read_bytes(), path=out / RUN).state == "interrupted"


# ---- worker folders ---------------------------------------------------------------------

@pytest.fixture
def workers_dir(folder: tuple[Path, str, RunRecord]) -> tuple[Path, str, RunRecord]:
    """A 2-worker run: the parent's run.json, and a folder per worker with its own."""
    out, path, now = folder
    parent = dataclasses.replace(now, layout=Layout(workers=2))
    write_run(out, parent)
    for index in range(2):
        worker = out / WORKERS_DIR / str(index)
        worker.mkdir(parents=True)
        write_run(worker, parent.for_worker(index))
        (worker / RESULTS).write_bytes(rows(result(path, index + 1)))
    return out, path, parent


def test_valid_worker_folders_pass(workers_dir: tuple[Path, str, RunRecord]) -> None:
    out, _, parent = workers_dir
    check_workers(out, parent)
    check_workers(out, dataclasses.replace(parent, layout=Layout()))  # one worker: no folders


@pytest.mark.parametrize("damage", ["bad-row", "bad-run-json", "swapped-shard", "no-run-json"])
def test_a_damaged_worker_folder_is_refused(workers_dir: tuple[Path, str, RunRecord],
                                           damage: str) -> None:
    out, path, parent = workers_dir
    worker = out / WORKERS_DIR / "1"
    if damage == "bad-row":
        (worker / JOURNAL).write_bytes(rows([path, [10**12]]))
        message = f"{worker / JOURNAL} line 1: line number"
    elif damage == "bad-run-json":
        (worker / RUN).write_bytes(b"[]")
        message = f"{worker / RUN}: not a JSON object"
    elif damage == "swapped-shard":
        write_run(worker, parent.for_worker(0))
        message = "holds the share of worker 0/2, not of 1/2"
    else:
        (worker / RUN).unlink()
        message = f"{worker / RESULTS} holds rows but {worker / RUN} is missing"
    with pytest.raises(ResumeError) as caught:
        check_workers(out, parent)
    assert message in str(caught.value)


def test_a_worker_folder_not_started_is_fine(workers_dir: tuple[Path, str, RunRecord]) -> None:
    out, _, parent = workers_dir
    worker = out / WORKERS_DIR / "1"
    (worker / RUN).unlink()
    (worker / RESULTS).write_bytes(b"")
    check_workers(out, parent)


# ---- through the CLI ----------------------------------------------------------------------

def invoke(*args: str) -> Any:
    from replayer.cli import main  # imported here: the CLI pulls in the whole engine

    env = {k: None for k in ("LEANPLUM_APP_ID", "LEANPLUM_CLIENT_KEY", "REPLAYER_CONFIG",
                             "REPLAYER_ENDPOINT", "REPLAYER_CONCURRENCY")}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_cli_refuses_a_damaged_run_json_with_exit_2(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=20, users=4)
    out = tmp_path / "out"
    assert invoke("run", str(data), "--out", str(out), "--workers", "1").exit_code == 0
    (out / RUN).write_bytes((out / RUN).read_bytes()[:30])
    result = invoke("run", str(data), "--out", str(out), "--workers", "1", "--resume")
    assert result.exit_code == 2, result.output
    assert f"{out / RUN}: not valid JSON" in result.output
    assert "Traceback" not in result.output


def test_cli_refuses_a_journal_with_garbage_with_exit_2(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=20, users=4)
    out = tmp_path / "out"
    assert invoke("run", str(data), "--out", str(out), "--workers", "1").exit_code == 0
    with open(out / JOURNAL, "ab") as f:
        f.write(b"garbage\n" + orjson.dumps([str(data), [1]]) + b"\n")
    result = invoke("run", str(data), "--out", str(out), "--workers", "1", "--resume")
    assert result.exit_code == 2, result.output
    assert f"{out / JOURNAL} line " in result.output and ": not JSON" in result.output


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_refuses_a_real_resume_of_a_dry_run(tmp_path: Path, workers: str) -> None:
    data = generated(tmp_path / "in.ndjson", records=20, users=4)
    out = tmp_path / "out"
    first = invoke("run", str(data), "--out", str(out), "--workers", workers, "--dry-run")
    assert first.exit_code == 0, first.output
    result = invoke("run", str(data), "--out", str(out), "--workers", workers, "--resume")
    assert result.exit_code == 2, result.output
    assert "the earlier run was a --dry-run; this one is real" in result.output


def test_cli_refuses_a_damaged_worker_folder_with_exit_2(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=20, users=4)
    out = tmp_path / "out"
    assert invoke("run", str(data), "--out", str(out), "--workers", "2").exit_code == 0
    journal = out / WORKERS_DIR / "1" / JOURNAL
    journal.write_bytes(orjson.dumps([str(data), [10**12]]) + b"\n")
    result = invoke("run", str(data), "--out", str(out), "--workers", "2", "--resume")
    assert result.exit_code == 2, result.output
    assert f"{journal} line 1: line number 1000000000000 is outside" in result.output
