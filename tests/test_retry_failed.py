"""`run --resume --retry-failed`: the lines that failed for passing reasons are sent again,
marked where an earlier try may have landed, and each line still has exactly one row."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from replayer.cli import main
from replayer.emulator import EmulatorConfig, FaultConfig, create_app
from replayer.emulator.app import EMULATOR
from replayer.output.layout import FAILURES, RESULTS, USERS
from replayer.output.resume import read_folder
from replayer.records import TRANSIENT_KINDS, ExitCode
from tests.conftest import (
    TEST_APP_ID,
    TEST_KEY,
    closed_port,
    generated,
    input_records,
    read_rows,
    run_cli,
    summary_of,
)

RECORDS = 2000


async def serve(port: int, faults: FaultConfig) -> TestServer:
    config = EmulatorConfig(app_id=TEST_APP_ID, client_key=TEST_KEY, faults=faults, seed=3)
    server = TestServer(create_app(config), host="127.0.0.1", port=port)
    await server.start_server()
    return server


def taken(server: TestServer) -> Counter[str]:
    """How many actions the emulator accepted, per user."""
    state: dict[str, Any] = server.app[EMULATOR].store.snapshot()
    return Counter({user: len(actions) for user, actions in state["users"].items()})


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_retry_failed_delivers_every_line_once_and_marks_what_may_have_landed(
    tmp_path: Path, workers: str
) -> None:
    data = generated(tmp_path / "in.ndjson", records=RECORDS, users=200)
    out, port = tmp_path / "out", closed_port()
    # 503s never reach the store; a drop after processing loses an answer that landed.
    faulty = await serve(port, FaultConfig(status_503=0.3, drop_after=0.1))
    try:
        code, output = await run_cli(data, out, port, "--workers", workers,
                                     "--max-attempts", "1", "--batch-users", "5")
    finally:
        first = taken(faulty)
        await faulty.close()
    assert code == ExitCode.FAILURES, output
    failed = {r["line"]: r for r in read_rows(out / FAILURES)}
    assert {r["kind"] for r in failed.values()} == {"server_error", "connection"}
    landed = {n for n, r in failed.items() if r.get("ambiguous_attempts")}
    assert landed and {failed[n]["kind"] for n in landed} == {"connection"}

    healthy = await serve(port, FaultConfig())
    try:
        code, output = await run_cli(data, out, port, "--workers", workers, "--resume",
                                     "--retry-failed")
    finally:
        second = taken(healthy)
        await healthy.close()

    assert code == ExitCode.OK, output
    assert read_rows(out / FAILURES) == []
    rows = read_rows(out / RESULTS)
    lines = [n for n, _ in input_records(data)]
    assert sorted(r["line"] for r in rows) == lines, "one row per line"
    marked = {r["line"] for r in rows if r.get("possible_duplicate")}
    assert marked == landed, "marked exactly where the first answer was lost"
    # Every line reached the server once, and a second time only where it is marked.
    user_of = {n: r.get("userId") or r["deviceId"] for n, r in input_records(data)}
    expected = Counter(user_of.values()) + Counter(user_of[n] for n in landed)
    assert first + second == expected
    summary = summary_of(out)
    assert (summary["delivered"], summary["failed"], summary["exit_code"]) == (RECORDS, 0, 0)
    users = read_rows(out / USERS)
    assert sum(u["delivered"] for u in users) == RECORDS and not any(u["failed"] for u in users)


def test_retry_failed_needs_resume(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=5, users=2)
    result = CliRunner().invoke(main, ["run", str(data), "--out", str(tmp_path / "out"),
                                       "--retry-failed", "--dry-run"],
                                env={**os.environ, "LEANPLUM_APP_ID": TEST_APP_ID,
                                     "LEANPLUM_CLIENT_KEY": TEST_KEY})
    assert result.exit_code == ExitCode.USAGE
    assert "--retry-failed" in result.output and "--resume" in result.output
    assert not (tmp_path / "out" / RESULTS).exists()


def test_only_passing_kinds_are_retried_and_the_rest_stays(tmp_path: Path) -> None:
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("server_error", {}), ("timeout", {"ambiguous_attempts": 1}), ("rejected", {}),
        ("ambiguous", {}), ("invalid_json", {}), ("rate_limited", {"possible_duplicate": True})]
    rows = [{"file": "f", "line": n, "kind": kind, "message": "m", "http_status": None,
             "attempts": 1, **extra} for n, (kind, extra) in enumerate(kinds, start=1)]
    (tmp_path / FAILURES).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    (tmp_path / "journal.log").write_bytes(b'["f",[1,2,3,4,6]]\n')

    state = read_folder(tmp_path, {"f": 10}, retry=frozenset(TRANSIENT_KINDS))

    assert state.retried == [("f", 1, False), ("f", 2, True), ("f", 6, True)]
    assert [n for n in range(1, 7) if state.is_done("f", n)] == [3, 4, 5]
    assert [n for n in range(1, 7) if state.was_sent("f", n)] == [2, 6]
    assert state.prior.by_status["failed"] == 3
