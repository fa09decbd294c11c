"""users.ndjson of a resumed run: tallied from the rows the resume reads, never read again."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from replayer.cli import main
from replayer.emulator import EmulatorConfig, FaultConfig
from replayer.output import live_users
from replayer.output import users as users_module
from replayer.output.layout import FAILURES, RESULTS, USERS, WORKERS_DIR
from replayer.output.live_users import LiveUsers
from replayer.output.resume import read_folder
from replayer.output.users import write_users
from replayer.records import REDACTED, ExitCode, KeyText
from replayer.workers import parent
from tests.conftest import REPO, TEST_APP_ID, TEST_KEY, emulator_thread, read_rows
from tests.test_secrets import PLAIN_KEY_LINES
from tests.test_users import CASES, RESUMED, A, B, fail, many_rows, ok, write_rows

SAMPLE = REPO / "samples" / "sessions.ndjson"
ENV = {"LEANPLUM_APP_ID": TEST_APP_ID, "LEANPLUM_CLIENT_KEY": TEST_KEY,
       "REPLAYER_BACKOFF_BASE_S": "0.01", "REPLAYER_BACKOFF_MAX_S": "0.05",
       "REPLAYER_ENDPOINT": None, "REPLAYER_CONFIG": None, "REPLAYER_OUT_DIR": None}


def run(out: Path, url: str, *flags: str, input: Path = SAMPLE) -> Any:
    """`replayer run` of `input` in this process (its workers in processes of their own)."""
    return CliRunner().invoke(main, ["run", str(input), "--out", str(out), "--endpoint", url,
                                     "--no-preflight", *flags], env=ENV, catch_exceptions=False)


def derived_from_rows(out: Path, input: Path = SAMPLE) -> bytes:
    """users.ndjson as the rows of `out` give it, derived in a copy of the folder's rows."""
    rows = out.parent / f"{out.name}-rows"
    rows.mkdir()
    for name in (RESULTS, FAILURES):
        if (out / name).exists():
            shutil.copy(out / name, rows / name)
    write_users(rows, inputs=[str(input)])
    return (rows / USERS).read_bytes()


@pytest.mark.parametrize(("workers", "max_users"), [("1", None), ("1", 4), ("2", None)],
                         ids=["single", "single_spilled", "workers"])
@pytest.mark.parametrize("how", ["killed", "retry_failed"])
def test_a_resumed_run_tallies_the_rows_it_read_and_reads_none_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str, max_users: int | None,
    how: str
) -> None:
    if max_users is not None:
        monkeypatch.setattr(live_users, "MAX_LIVE_USERS", max_users)
    read_again: list[Any] = []
    projected, merge_parts = users_module._projected, parent.merge_parts

    def spy_projected(*args: Any, **kw: Any) -> Any:
        read_again.append(args)
        return projected(*args, **kw)

    merged: list[Any] = []

    def spy_merge(*args: Any, **kw: Any) -> Any:
        merged.append(merge_parts(*args, **kw))
        return merged[-1]

    monkeypatch.setattr(users_module, "_projected", spy_projected)
    monkeypatch.setattr(parent, "merge_parts", spy_merge)
    out = tmp_path / "out"
    config = EmulatorConfig(app_id=TEST_APP_ID, client_key=TEST_KEY,
                            blocked_users=frozenset({"u000003"}),
                            faults=FaultConfig(status_503=0.3), seed=2)
    with emulator_thread(config) as url:
        first = run(out, url, "--workers", workers, "--max-attempts", "1")
        assert first.exit_code == ExitCode.FAILURES, first.output
        folders = [out / WORKERS_DIR / str(i) for i in range(int(workers))] if workers != "1" \
            else [out]
        if how == "killed":  # half the rows, and a torn line: as a kill mid-run leaves them
            for folder in folders:
                lines = (folder / RESULTS).read_bytes().splitlines(keepends=True)
                (folder / RESULTS).write_bytes(b"".join(lines[:len(lines) // 2]) + b'{"fil')
        delivered = sum((f / RESULTS).read_bytes().count(b"\n") for f in folders)
        read_again.clear()
        merged.clear()
        again = ["--retry-failed"] if how == "retry_failed" else []
        second = run(out, url, "--workers", workers, "--max-attempts", "2", "--resume", *again)

    assert second.exit_code in (ExitCode.OK, ExitCode.FAILURES), second.output
    assert not read_again, "the resume's end read the rows again"
    assert merged == ([] if workers == "1" else [merged[0]]) and None not in merged
    rows = read_rows(out / RESULTS) + read_rows(out / FAILURES)
    assert sorted(r["line"] for r in rows) == list(range(1, 301)), "one row per line"
    if how == "killed":
        assert any(r.get("possible_duplicate") for r in rows), "a line was sent again"
    assert len(read_rows(out / RESULTS)) > delivered, "the resume delivered more"
    assert (out / USERS).read_bytes() == derived_from_rows(out)
    assert len(read_rows(out / USERS)) > 50
    assert not [p for p in out.rglob(".users-*")], "spills and parts are removed"
    assert TEST_KEY.encode() not in (out / USERS).read_bytes()


RETRIED = [ok(A, 1, "u1", "d1"), fail(A, 2, "u1", "d1", "server_error"),
           fail(A, 3, "u2", None, "rejected"), fail(B, 1, "u3", "d3", "timeout"),
           ok(B, 2, "u3", "d3"), fail(B, 2, "u3", "d3", "server_error")]  # a line twice


@pytest.mark.parametrize("max_users", [1_000_000, 1], ids=["memory", "spill"])
@pytest.mark.parametrize(("name", "rows", "retry"),
                         [(c[0], c[1], frozenset[str]()) for c in CASES]
                         + [("resumed", RESUMED, frozenset()), ("many", many_rows(), frozenset()),
                            ("retried", RETRIED, frozenset({"server_error", "timeout"})),
                            ("retried_none", RETRIED[:3], frozenset({"connection"}))],
                         ids=[c[0] for c in CASES] + ["resumed", "many", "retried",
                                                      "retried_none"])
def test_the_rows_a_resume_keeps_tally_to_the_bytes_they_give(
    tmp_path: Path, name: str, rows: list[dict[str, Any]], retry: frozenset[str],
    max_users: int
) -> None:
    # Every row the folder keeps goes to the tally (rows of a kind sent again do not: they
    # leave the file), each as the end would read it from the file.
    folder = write_rows(tmp_path / "out", rows)
    limits = {A: 1 << 20, B: 1 << 20}
    live = LiveUsers((A, B), spill_dir=folder, max_users=max_users, partitions=3,
                     partition_bytes=512)

    state = read_folder(folder, limits, retry=retry, users=live)

    assert state.users is live
    kept = [r for r in rows if "status" in r or r["kind"] not in retry]
    assert state.drop_failures == (len(kept) < len(rows))
    stats = live.write(tmp_path / USERS)
    expected = write_users(write_rows(tmp_path / "kept", kept), inputs=(A, B))
    assert stats is not None and stats.rows == expected.rows == len(kept)
    assert (tmp_path / USERS).read_bytes() == (tmp_path / "kept" / USERS).read_bytes()


def test_the_run_s_key_is_masked_in_new_rows_not_in_the_rows_read(tmp_path: Path) -> None:
    # The rows read were masked when written; the rows to come are masked by the run's key.
    folder = write_rows(tmp_path / "out", [ok(A, 1, "user-KEY", None)])
    live = LiveUsers((A,), spill_dir=folder)
    read_folder(folder, {A: 5}, users=live)
    live.mask_with(KeyText("KEY"))
    live.row("user-KEY", None, A, 2, 1, result=True, what="delivered")
    live.write(tmp_path / USERS)

    users = [orjson.loads(line) for line in (tmp_path / USERS).read_bytes().splitlines()]
    assert [u["userId"] for u in users] == ["user-KEY", KeyText("KEY").mask("user-KEY")]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_resume_masks_the_key_s_text_in_the_ids_of_the_rows_it_writes(
    tmp_path: Path, workers: str
) -> None:
    # The resume's tally is made before the run knows its key; the rows to come are still
    # masked by it (the rows read were masked when written).
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join(PLAIN_KEY_LINES) + b"\n")
    out = tmp_path / "out"
    config = EmulatorConfig(app_id=TEST_APP_ID, client_key=TEST_KEY,
                            blocked_users=frozenset({"blocked"}))
    with emulator_thread(config) as url:
        first = run(out, url, "--workers", workers, input=data)
        assert first.exit_code == ExitCode.FAILURES, first.output
        for results in out.rglob(RESULTS):  # only the first row of each: a kill mid-run
            results.write_bytes(results.read_bytes().split(b"\n")[0] + b"\n")
        second = run(out, url, "--workers", workers, "--resume", input=data)

    assert second.exit_code == ExitCode.FAILURES, second.output
    for path in out.rglob("*"):
        if path.is_file():
            assert TEST_KEY.encode() not in path.read_bytes(), f"{path.name} holds the key"
    users = read_rows(out / USERS)
    assert [u["userId"] for u in users] == ["u1", REDACTED, None, "blocked"]
    assert (out / USERS).read_bytes() == derived_from_rows(out, data)


def test_a_refused_resume_leaves_no_spill_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tally spills past a few users while the resume reads; a bad row further on ends
    # the resume (exit 2), and the spills go with it.
    monkeypatch.setattr(live_users, "MAX_LIVE_USERS", 2)
    out = tmp_path / "out"
    with emulator_thread() as url:
        assert run(out, url, "--workers", "1").exit_code == ExitCode.FAILURES
        with open(out / FAILURES, "ab") as f:
            f.write(b"not a row\n")
        refused = run(out, url, "--workers", "1", "--resume")

    assert refused.exit_code == ExitCode.USAGE, refused.output
    assert "not JSON" in refused.output
    assert not list(out.glob(".users-*"))
