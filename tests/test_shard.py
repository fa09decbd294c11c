"""`--shard I/N` and `replayer merge`: parsing, composition with workers, merge and its refusals."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from replayer.cli import main
from replayer.output import summary as s
from replayer.output.layout import SUMMARY
from replayer.output.runfile import Layout, RunRecord, differences, read_run
from replayer.records import ExitCode
from replayer.source.shard import Shard, owner, parse_shard, user_hash
from tests.conftest import generated, read_rows


@pytest.mark.parametrize(("text", "index", "count"), [
    ("1/4", 0, 4), ("4/4", 3, 4), (" 2/3 ", 1, 3), ("1/1", 0, 1), ("02/4", 1, 4),
], ids=["first", "last", "spaces", "one", "leading-zero"])
def test_shards_parse_one_based(text: str, index: int, count: int) -> None:
    assert parse_shard(text) == Shard(index, count)
    assert parse_shard(text).label == f"{index + 1}/{count}"


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "a/b", "1", "1/2/3", "-1/4", "", "²/4"],
                         ids=["zero", "past-n", "n-zero", "letters", "no-slash", "two-slashes",
                              "negative", "empty", "unicode-digit"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "a/b"])
def test_bad_shards_exit_2(tmp_path: Path, text: str) -> None:
    data = generated(tmp_path / "in.ndjson", records=5, users=2)
    result = CliRunner().invoke(main, ["run", str(data), "--shard", text, "--dry-run",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "--shard" in result.output
    assert not (tmp_path / "out" / "requests.ndjson").exists()


def _lines(tmp_path: Path) -> list[bytes]:
    data = generated(tmp_path / "in.ndjson", records=2000, users=400)
    return [*data.read_bytes().splitlines(), b"not json", b"[1]", b'{"deviceId": 5}',
            b'{"userId": "\xc3\xa9t\xc3\xa9"}', b"\xef\xbb\xbf" + b'{"userId": "bom"}']


@pytest.mark.parametrize(("shards", "workers"), [(1, 3), (2, 1), (2, 2), (3, 2), (4, 3), (5, 4)])
def test_every_line_lands_in_exactly_one_shard_and_worker(
    tmp_path: Path, shards: int, workers: int
) -> None:
    lines = _lines(tmp_path)
    owners: Counter[bytes] = Counter()
    per_user: dict[int, set[tuple[int, int]]] = {}
    for i in range(shards):
        shard = parse_shard(f"{i + 1}/{shards}")
        for w in range(workers):
            share = shard.within(w, workers) if workers > 1 else shard
            for line in lines:
                if share.owns(line):
                    owners[line] += 1
                    per_user.setdefault(user_hash(line), set()).add((i, w))
    assert all(owners[line] == 1 for line in lines)
    assert all(len(places) == 1 for places in per_user.values())  # a user is never split
    if workers > 1:  # and the workers of a shard each get some users
        used = {place for places in per_user.values() for place in places}
        assert len(used) == shards * workers


def test_without_a_shard_workers_split_as_before(tmp_path: Path) -> None:
    for line in _lines(tmp_path):
        assert [w for w in range(3) if Shard(w, 3).owns(line)] == [owner(line, 3)]
        assert Shard(0, 1).owns(line)


def test_a_resume_with_another_shard_is_refused() -> None:
    base = RunRecord(state="interrupted", endpoint="embedded", dry_run=False, loop=False,
                     inputs=(), layout=Layout(workers=1, run_shard="1/4"))
    assert differences(base, base) == []
    other = dataclasses.replace(base, layout=Layout(workers=1, run_shard="2/4"))
    assert "--shard 1/4" in differences(base, other)[0]
    plain = dataclasses.replace(base, layout=Layout(workers=1))
    assert "--shard 1/4" in differences(base, plain)[0]
    assert "not a shard" in differences(plain, base)[0]
    worker = dataclasses.replace(base, layout=Layout(workers=2)).for_worker(1)
    assert worker.layout.run_shard is None
    sharded = dataclasses.replace(base, layout=Layout(workers=2, run_shard="1/4")).for_worker(1)
    assert sharded.layout == Layout(workers=2, shard="1/2", run_shard="1/4")
    assert RunRecord.decode(sharded.encode(), path="x").layout == sharded.layout


# ---- end to end: shards, merge, refusals ---------------------------------------------------


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def shard(data: Path, out: Path, spec: str, *extra: str) -> Path:
    result = run("run", str(data), "--shard", spec, "--out", str(out), "--dry-run", "-q",
                 "--workers", "1", *extra)
    assert result.exit_code in (0, 1), result.output
    return out


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = generated(tmp_path / "in.ndjson", records=600, users=90)
    with path.open("ab") as f:
        f.write(b"\nnot json\n")
    return path


def test_shards_merge_into_the_single_run(tmp_path: Path, data: Path) -> None:
    folders = [shard(data, tmp_path / f"s{i}", f"{i}/3") for i in (1, 2, 3)]
    assert read_run(folders[1]).layout.run_shard == "2/3"
    one = s.decode((folders[1] / SUMMARY).read_bytes(), source="s2")
    assert one.layout.shard == "2/3"
    assert run("run", str(data), "--out", str(tmp_path / "single"), "--dry-run", "-q",
               "--workers", "1").exit_code == 1
    result = run("merge", *map(str, reversed(folders)), "--out", str(tmp_path / "m"))
    assert result.exit_code == 1, result.output  # the invalid line: the worst of the shards
    merged = s.decode((tmp_path / "m" / SUMMARY).read_bytes(), source="m")
    single = s.decode((tmp_path / "single" / SUMMARY).read_bytes(), source="single")
    for name in ("state", "exit_code", "lines_read", "blank_lines", "records", "delivered",
                 "failed", "failures_by_kind", "dry_run", "inputs"):
        assert getattr(merged, name) == getattr(single, name), name
    assert [p["shard"] for p in merged.layout.per_worker] == ["1/3", "2/3", "3/3"]

    def keys(folder: Path, name: str) -> list[tuple[str, int]]:
        return sorted((r["file"], r["line"]) for r in read_rows(folder / name))
    for name in ("results.ndjson", "failures.ndjson"):
        assert keys(tmp_path / "m", name) == keys(tmp_path / "single", name)
    assert (tmp_path / "m" / "users.ndjson").read_bytes() == (
        tmp_path / "single" / "users.ndjson").read_bytes()
    assert read_rows(tmp_path / "m" / "requests.ndjson")  # (how many calls: the layout's)


def test_a_merge_that_exits_6_keeps_each_shards_failed_thresholds(
    tmp_path: Path, data: Path
) -> None:
    folders = []
    for i in (1, 2):
        out = tmp_path / f"s{i}"
        result = run("run", str(data), "--shard", f"{i}/2", "--out", str(out), "--dry-run",
                     "-q", "--fail-if", "error_rate>=0", "--fail-if", "failed>1000000")
        assert result.exit_code == ExitCode.THRESHOLD, result.output
        folders.append(out)
    result = run("merge", *map(str, folders), "--out", str(tmp_path / "m"))
    assert result.exit_code == ExitCode.THRESHOLD, result.output
    merged = orjson.loads((tmp_path / "m" / SUMMARY).read_bytes())
    verdicts = merged["thresholds"]
    assert [(t["shard"], t["threshold"], t["failed"]) for t in verdicts] == [
        ("1/2", "error_rate>=0", True), ("1/2", "failed>1000000", False),
        ("2/2", "error_rate>=0", True), ("2/2", "failed>1000000", False)]
    assert verdicts[0]["text"].startswith("shard 1/2: error_rate = ")
    assert "threshold shard 2/2: error_rate" in result.output


def test_a_shard_with_workers_replays_its_users_once(tmp_path: Path, data: Path) -> None:
    outs = []
    for i in (1, 2):
        out = tmp_path / f"w{i}"
        proc = subprocess.run(
            [sys.executable, "-m", "replayer", "run", str(data), "--shard", f"{i}/2", "--out",
             str(out), "--workers", "2", "-q", "--no-batch"],
            capture_output=True, timeout=120, check=False)
        assert proc.returncode == (1 if i == 1 else 0), proc.stderr.decode()  # "not json": 1/2
        assert read_run(out).layout == Layout(workers=2, run_shard=f"{i}/2")
        outs.append(out)
    result = run("merge", *map(str, outs), "--out", str(tmp_path / "m"))
    assert result.exit_code == 1, result.output
    rows = [(r["file"], r["line"]) for name in ("results.ndjson", "failures.ndjson")
            for r in read_rows(tmp_path / "m" / name)]
    non_blank = [n for n, line in enumerate(data.read_bytes().splitlines(), 1) if line.strip()]
    assert sorted(rows) == [(str(data), n) for n in non_blank]


def _set_state(folder: Path, code: ExitCode) -> None:
    summary = s.decode((folder / SUMMARY).read_bytes(), source="x")
    (folder / SUMMARY).write_bytes(s.encode(dataclasses.replace(
        summary, state=code.state, exit_code=int(code))))


def refused(tmp_path: Path, *folders: Path, partial: bool = False) -> str:
    result = run("merge", *map(str, folders), "--out", str(tmp_path / "m"),
                 *(["--partial"] if partial else []))
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "m" / SUMMARY).exists()
    return result.output


def test_merge_refuses_shards_of_different_inputs(tmp_path: Path, data: Path) -> None:
    other = generated(tmp_path / "other.ndjson", records=50, users=5)
    a, b = shard(data, tmp_path / "a", "1/2"), shard(other, tmp_path / "b", "2/2")
    assert f"{b}: it read other inputs" in refused(tmp_path, a, b)


def test_merge_refuses_shards_of_a_different_count(tmp_path: Path, data: Path) -> None:
    a, b = shard(data, tmp_path / "a", "1/2"), shard(data, tmp_path / "b", "2/3")
    assert f"{b}: it is shard 2/3, of 3 shards, not 2" in refused(tmp_path, a, b)


def test_merge_refuses_a_real_shard_with_a_dry_one(tmp_path: Path, data: Path) -> None:
    a = shard(data, tmp_path / "a", "1/2")
    b = tmp_path / "b"
    result = run("run", str(data), "--shard", "2/2", "--out", str(b), "-q", "--workers", "1")
    assert result.exit_code in (0, 1), result.output
    assert f"{b}: it was a real run" in refused(tmp_path, a, b)


def test_merge_refuses_a_shard_given_twice(tmp_path: Path, data: Path) -> None:
    a, b = shard(data, tmp_path / "a", "1/2"), shard(data, tmp_path / "b", "1/2")
    assert f"{b}: shard 1/2 is given twice (also {a})" in refused(tmp_path, a, b)
    assert "(the same folder)" in refused(tmp_path, a, a)


def test_merge_refuses_a_missing_shard(tmp_path: Path, data: Path) -> None:
    a, c = shard(data, tmp_path / "a", "1/3"), shard(data, tmp_path / "c", "3/3")
    assert "shard(s) 2/3 missing" in refused(tmp_path, a, c)


def test_merge_refuses_an_unfinished_shard(tmp_path: Path, data: Path) -> None:
    a, b = shard(data, tmp_path / "a", "1/2"), shard(data, tmp_path / "b", "2/2")
    _set_state(b, ExitCode.SIGTERM)
    assert f"{b} is interrupted (exit 143)" in refused(tmp_path, a, b)
    (b / SUMMARY).unlink()
    assert f"{b} has no summary.json" in refused(tmp_path, a, b)


def test_merge_refuses_a_folder_that_is_no_shard(tmp_path: Path, data: Path) -> None:
    a = shard(data, tmp_path / "a", "1/2")
    plain = tmp_path / "plain"
    assert run("run", str(data), "--out", str(plain), "--dry-run", "-q").exit_code == 1
    assert f"{plain}: not a shard" in refused(tmp_path, a, plain)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"{empty}: not a finished run folder" in refused(tmp_path, a, empty)


def test_partial_merges_what_is_there_and_says_what_is_missing(
    tmp_path: Path, data: Path
) -> None:
    a, b = shard(data, tmp_path / "a", "1/3"), shard(data, tmp_path / "b", "2/3")
    _set_state(b, ExitCode.SIGINT)
    result = CliRunner().invoke(main, ["merge", str(a), str(b), "--out", str(tmp_path / "m"),
                                       "--partial"])
    assert "shard 3/3 is missing" in result.output
    assert f"{b} is interrupted" in result.output
    assert result.exit_code == ExitCode.WORKER
    merged = s.decode((tmp_path / "m" / SUMMARY).read_bytes(), source="m")
    assert merged.state != "finished" and merged.exit_code == ExitCode.WORKER
    assert merged.stopped_because is not None and "3/3 is missing" in merged.stopped_because
    parts = [s.decode((f / SUMMARY).read_bytes(), source="p") for f in (a, b)]
    assert merged.records == sum(p.records for p in parts)
    rows = read_rows(tmp_path / "m" / "results.ndjson")
    assert len(rows) == sum(len(read_rows(f / "results.ndjson")) for f in (a, b))
    assert orjson.loads((tmp_path / "m" / "run.json").read_bytes())["state"] == "aborted"
