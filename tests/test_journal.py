"""The journal: line sets, input fingerprints, torn-row repair, and what a resume picks up."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from replayer.output.journal import (
    JOURNAL,
    RUN,
    Journal,
    LineSet,
    ResumeError,
    fingerprint,
    load_resume,
    repair_torn_tail,
)
from replayer.output.layout import FAILURES, RESULTS

MIB = 1 << 20


# ---- LineSet -------------------------------------------------------------------------------

LINE_CASES = [
    [1],
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
    [8, 7, 16, 15, 0],
    [10**6],
    [3, 10**6, 17, 10**5, 10**7 + 3, 64],
    [2**20 - 1, 2**20, 2**20 + 1],
]


@pytest.mark.parametrize(
    "line_nos", LINE_CASES,
    ids=["one", "a-run", "byte-edges", "a-million", "sparse-large", "around-2^20"],
)
def test_line_set_holds_exactly_what_was_added(line_nos: list[int]) -> None:
    lines = LineSet()
    for n in line_nos:
        lines.add("a.ndjson", n)
    assert lines.size == len(set(line_nos))
    for n in line_nos:
        assert ("a.ndjson", n) in lines
        assert ("b.ndjson", n) not in lines
    near = {m for n in line_nos for m in (n - 1, n + 1, n + 8, n * 2 + 1)} - set(line_nos)
    for m in near:
        assert ("a.ndjson", m) not in lines
    assert ("a.ndjson", 10**9) not in lines


def test_line_set_counts_each_line_once_per_file() -> None:
    lines = LineSet()
    for _ in range(3):
        lines.add("a", 5)
        lines.add("b", 5)
    assert lines.size == 2
    assert ("a", 5) in lines and ("b", 5) in lines and ("c", 5) not in lines


def test_line_set_matches_a_set_on_random_lines() -> None:
    rng = random.Random(3)
    lines, model = LineSet(), set()
    for _ in range(5000):
        key = (rng.choice("xyz"), rng.choice([rng.randint(1, 300), rng.randint(1, 10**6)]))
        lines.add(*key)
        model.add(key)
    assert lines.size == len(model)
    for file in "xyz":
        for n in range(1, 400):
            assert ((file, n) in lines) == ((file, n) in model)
    assert all(key in lines for key in model)


# ---- fingerprint ---------------------------------------------------------------------------

def make_input(path: Path, size: int) -> str:
    rng = random.Random(size)
    path.write_bytes(rng.randbytes(size))
    return str(path)


def flip(path: str, offset: int) -> None:
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0xFF
    Path(path).write_bytes(bytes(data))


# (file size, offset to change (negative: from the end), fingerprint changes)
PRINT_CASES = [
    (100, 0, True),
    (100, -1, True),
    (100, 50, True),
    (3 * MIB, 0, True),
    (3 * MIB, MIB - 1, True),
    (3 * MIB, -1, True),
    (3 * MIB, -MIB, True),
    (3 * MIB, MIB + 10, False),
    (3 * MIB, 3 * MIB // 2, False),
    (3 * MIB, -MIB - 1, False),
    (MIB + MIB // 2, MIB + MIB // 4, True),
]


@pytest.mark.parametrize(
    ("size", "offset", "changes"), PRINT_CASES,
    ids=["small-first", "small-last", "small-middle", "big-first", "big-end-of-first-mib",
         "big-last", "big-start-of-last-mib", "big-just-after-first-mib", "big-middle",
         "big-just-before-last-mib", "mid-size-middle"],
)
def test_fingerprint_sees_changes_at_the_edges(
    tmp_path: Path, size: int, offset: int, changes: bool
) -> None:
    path = make_input(tmp_path / "in.ndjson", size)
    before = fingerprint([path])
    assert fingerprint([path]) == before  # stable for the same file
    flip(path, offset % size)
    assert (fingerprint([path]) != before) is changes
    assert fingerprint([path])[0]["size"] == size


def test_fingerprint_sees_a_size_change(tmp_path: Path) -> None:
    path = make_input(tmp_path / "in.ndjson", 3 * MIB)
    before = fingerprint([path])
    with open(path, "ab") as f:
        f.write(b"\n")
    after = fingerprint([path])
    assert after != before and after[0]["size"] == 3 * MIB + 1


def test_fingerprint_is_per_file_in_order(tmp_path: Path) -> None:
    a = make_input(tmp_path / "a.ndjson", 10)
    b = make_input(tmp_path / "b.ndjson", 20)
    prints = fingerprint([a, b])
    assert [(p["file"], p["size"]) for p in prints] == [(a, 10), (b, 20)]
    assert fingerprint([b, a]) == prints[::-1]
    assert fingerprint([]) == []
    assert orjson.loads(orjson.dumps(prints)) == prints  # storable in run.json as is


@pytest.mark.parametrize("paths", [["-"], ["FILE", "-"]], ids=["stdin", "file-then-stdin"])
def test_fingerprint_refuses_stdin(tmp_path: Path, paths: list[str]) -> None:
    real = make_input(tmp_path / "a.ndjson", 10)
    with pytest.raises(ResumeError, match="stdin"):
        fingerprint([real if p == "FILE" else p for p in paths])


# ---- repair_torn_tail ----------------------------------------------------------------------

REPAIR_CASES = [
    (b"", b"", 0),
    (b"a\n", b"a\n", 0),
    (b'{"a":1}\n{"b":2}\n', b'{"a":1}\n{"b":2}\n', 0),
    (b'{"a":1}\n{"b":2}\n{"c":', b'{"a":1}\n{"b":2}\n', 5),
    (b'{"a":1}\n{"b":2}', b'{"a":1}\n', 7),
    (b"torn", b"", 4),
    (b"a\n\n", b"a\n\n", 0),
    (b"a\n\nb", b"a\n\n", 1),
    (b"x\n" + b"y" * 200_000, b"x\n", 200_000),
    (b"z" * 100_000, b"", 100_000),
]


@pytest.mark.parametrize(
    ("content", "kept", "removed"), REPAIR_CASES,
    ids=["empty", "one-line", "complete", "torn-row", "last-row-without-newline",
         "only-a-torn-row", "blank-last", "torn-after-blank", "torn-row-over-64k",
         "torn-only-over-64k"],
)
def test_repair_torn_tail(tmp_path: Path, content: bytes, kept: bytes, removed: int) -> None:
    path = tmp_path / "rows.ndjson"
    path.write_bytes(content)
    assert repair_torn_tail(path) == removed
    assert path.read_bytes() == kept
    assert repair_torn_tail(path) == 0  # idempotent
    assert path.read_bytes() == kept


def test_repair_torn_tail_of_a_missing_file(tmp_path: Path) -> None:
    assert repair_torn_tail(tmp_path / "absent.ndjson") == 0
    assert not (tmp_path / "absent.ndjson").exists()


# ---- load_resume ---------------------------------------------------------------------------

def rows(*docs: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(d) + b"\n" for d in docs)


def result(file: str, line: int, **extra: Any) -> dict[str, Any]:
    return {"file": file, "line": line, "userId": f"u{line}", "deviceId": None,
            "status": "delivered", "http_status": 200, "attempts": 1, **extra}


def failure(file: str, line: int, kind: str, **extra: Any) -> dict[str, Any]:
    return {"file": file, "line": line, "userId": f"u{line}", "deviceId": None, "kind": kind,
            "message": "m", "http_status": None, "attempts": 0, **extra}


@pytest.fixture
def run_dir(tmp_path: Path) -> tuple[Path, str]:
    """A folder left by a run killed mid-write, and the input it read (10 lines)."""
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"".join(b'{"userId":"u%d"}\n' % n for n in range(1, 11)))
    path = str(src)
    out = tmp_path / "out"
    out.mkdir()
    (out / RUN).write_bytes(orjson.dumps({"version": 1, "state": "running",
                                          "inputs": fingerprint([path])}))
    (out / RESULTS).write_bytes(rows(
        result(path, 1), result(path, 2), result(path, 4, possible_duplicate=True)))
    (out / FAILURES).write_bytes(
        rows(failure(path, 3, "rejected"), failure(path, 5, "invalid_json"),
             failure(path, 6, "rejected", possible_duplicate=True))
        + b'{"file": "' + path.encode() + b'", "line": 7, "kind": "serv'
    )
    (out / JOURNAL).write_bytes(
        orjson.dumps([path, [1, 2, 3]]) + b"\n"
        + orjson.dumps([path, [4, 6, 7, 8]]) + b"\n"
        + b'["' + path.encode() + b'", [9, 1'
    )
    return out, path


def test_load_resume_collects_done_and_sent_lines(run_dir: tuple[Path, str]) -> None:
    out, path = run_dir
    state = load_resume(out, [path])
    assert [n for n in range(1, 11) if state.is_done(path, n)] == [1, 2, 3, 4, 5, 6]
    # 7's failure row was torn (not written), 8 was in flight; 9's journal entry was torn.
    assert [n for n in range(1, 11) if state.was_sent(path, n)] == [7, 8]
    assert state.done.size == 6 and state.sent.size == 2
    assert not state.is_done("other.ndjson", 1)
    assert state.duplicate_rows == 0


def test_load_resume_counts_prior_rows(run_dir: tuple[Path, str]) -> None:
    out, path = run_dir
    prior = load_resume(out, [path]).prior
    assert dict(prior.by_status) == {"delivered": 3, "failed": 3}
    assert dict(prior.by_kind) == {"rejected": 2, "invalid_json": 1}
    assert prior.possible_duplicates == 2


def test_load_resume_cuts_the_torn_row(run_dir: tuple[Path, str]) -> None:
    out, path = run_dir
    before = (out / RESULTS).read_bytes()
    load_resume(out, [path])
    assert (out / RESULTS).read_bytes() == before
    assert [orjson.loads(r)["line"] for r in (out / FAILURES).read_bytes().splitlines()] == [
        3, 5, 6]
    assert (out / FAILURES).read_bytes().endswith(b"\n")


def test_load_resume_counts_duplicate_rows_once(run_dir: tuple[Path, str]) -> None:
    out, path = run_dir
    (out / FAILURES).write_bytes(rows(
        failure(path, 3, "rejected"), failure(path, 7, "server_error"),
        failure(path, 3, "rejected")))
    with open(out / RESULTS, "ab") as f:
        f.write(rows(result(path, 1)))
    state = load_resume(out, [path])
    assert state.duplicate_rows == 2
    assert dict(state.prior.by_status) == {"delivered": 3, "failed": 2}
    assert dict(state.prior.by_kind) == {"rejected": 1, "server_error": 1}
    assert [n for n in range(1, 11) if state.is_done(path, n)] == [1, 2, 3, 4, 7]
    assert [n for n in range(1, 11) if state.was_sent(path, n)] == [6, 8]


def test_load_resume_without_outputs(run_dir: tuple[Path, str]) -> None:
    out, path = run_dir
    for name in (RESULTS, FAILURES, JOURNAL):
        (out / name).unlink()
    state = load_resume(out, [path])
    assert (state.done.size, state.sent.size, state.duplicate_rows) == (0, 0, 0)
    assert sum(state.prior.by_status.values()) == 0


def test_load_resume_reads_what_the_journal_wrote(run_dir: tuple[Path, str]) -> None:
    out, path = run_dir
    other = out.parent / "other.ndjson"
    other.write_bytes(b'{"userId":"a"}\n{"userId":"b"}\n')
    run = orjson.loads((out / RUN).read_bytes())
    (out / RUN).write_bytes(orjson.dumps({**run, "inputs": fingerprint([path, str(other)])}))
    (out / JOURNAL).unlink()
    journal = Journal(out)
    journal.sending([(path, 9), (str(other), 2), (path, 10), (path, 1)])
    journal.close()
    state = load_resume(out, [path, str(other)])
    assert [n for n in range(1, 11) if state.was_sent(path, n)] == [9, 10]  # 1 is done
    assert state.was_sent(str(other), 2) and not state.was_sent(str(other), 1)


def test_a_request_that_never_left_is_not_in_flight(run_dir: tuple[Path, str]) -> None:
    out, path = run_dir
    (out / JOURNAL).unlink()
    journal = Journal(out)
    journal.sending([(path, 9), (path, 10)])
    journal.never_left([(path, 9), (path, 10)])  # refused: it reached no server
    journal.sending([(path, 10)])  # a later try that did go out
    journal.close()
    state = load_resume(out, [path])
    assert not state.was_sent(path, 9) and state.was_sent(path, 10)


def test_entries_after_a_torn_journal_tail_survive_the_next_resume(
    run_dir: tuple[Path, str]
) -> None:
    out, path = run_dir
    load_resume(out, [path])
    journal = Journal(out)  # the resumed run
    journal.sending([(path, 10)])
    journal.close()
    assert load_resume(out, [path]).was_sent(path, 10)


@pytest.mark.parametrize(
    "change", ["edit-first-byte", "append", "other-file", "two-files"],
)
def test_load_resume_refuses_a_different_input(
    run_dir: tuple[Path, str], tmp_path: Path, change: str
) -> None:
    out, path = run_dir
    paths = [path]
    if change == "edit-first-byte":
        flip(path, 0)
    elif change == "append":
        with open(path, "ab") as f:
            f.write(b'{"userId":"u11"}\n')
    elif change == "other-file":
        paths = [make_input(tmp_path / "other.ndjson", 100)]
    else:
        paths = [path, make_input(tmp_path / "other.ndjson", 100)]
    with pytest.raises(ResumeError, match="input differs"):
        load_resume(out, paths)


def test_load_resume_refuses_a_folder_without_run_json(run_dir: tuple[Path, str]) -> None:
    out, path = run_dir
    (out / RUN).unlink()
    with pytest.raises(ResumeError, match=RUN):
        load_resume(out, [path])
    with pytest.raises(ResumeError):
        load_resume(out.parent / "never-created", [path])


def test_load_resume_refuses_stdin(run_dir: tuple[Path, str]) -> None:
    out, _ = run_dir
    with pytest.raises(ResumeError, match="stdin"):
        load_resume(out, ["-"])
