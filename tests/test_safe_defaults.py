"""Safe by default: the target is always chosen and shown, the endpoint is checked before the
first record, the same command twice never sends twice, and the repository stands alone."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from replayer.cli import main
from replayer.config import ConfigError, describe_target, load_settings
from replayer.emulator import EmulatorConfig
from replayer.engine.endpoint import Endpoint
from replayer.engine.preflight import judge, preflight
from replayer.output.layout import RESULTS, SUMMARY
from replayer.records import Attempt, ExitCode
from tests.conftest import (
    REPO,
    TEST_APP_ID,
    TEST_KEY,
    emulator_state,
    emulator_thread,
    generated,
    read_rows,
)

LOOPBACK = "http://127.0.0.1:8787/api (on this machine, not Leanplum)"
CREDS = {"LEANPLUM_APP_ID": TEST_APP_ID, "LEANPLUM_CLIENT_KEY": TEST_KEY}
CLEAN = {name: None for name in ("LEANPLUM_APP_ID", "LEANPLUM_CLIENT_KEY", "REPLAYER_APP_ID",
                                 "REPLAYER_CLIENT_KEY", "REPLAYER_CLIENT_KEY_FILE",
                                 "REPLAYER_ENDPOINT", "REPLAYER_CONFIG", "REPLAYER_OUT_DIR")}


def invoke(*args: str, env: dict[str, Any] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env={**CLEAN, **(env or {})},
                              catch_exceptions=False)


def free_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- part 1: the target is always chosen and always shown ------------------------------


@pytest.mark.parametrize("how", ["env", "key-file", "config-file"])
def test_credentials_without_an_endpoint_exit_2_before_anything(tmp_path: Path, how: str) -> None:
    data = generated(tmp_path / "in.ndjson", records=5, users=2)
    env: dict[str, Any] = {}
    extra: list[str] = []
    if how == "env":
        env = CREDS
    elif how == "key-file":
        key = tmp_path / "key"
        key.write_text(TEST_KEY)
        key.chmod(0o600)
        extra = ["--client-key-file", str(key)]
    else:
        config = tmp_path / "config.toml"
        config.write_text(f'[leanplum]\napp_id = "{TEST_APP_ID}"\n')
        extra = ["--config", str(config)]

    result = invoke("run", str(data), "--out", str(tmp_path / "out"), *extra, env=env)

    assert result.exit_code == ExitCode.USAGE
    assert "--endpoint https://api.leanplum.com/api" in result.output
    assert "--endpoint embedded" in result.output
    assert not (tmp_path / "out").exists()


def test_the_notebook_api_needs_the_target_too() -> None:
    with pytest.raises(ConfigError, match="no endpoint"):
        load_settings(flags={}, env=CREDS, config_path=None, sending=True)
    # Loading settings for other uses (validate, reports) does not ask for one.
    assert load_settings(flags={}, env=CREDS, config_path=None).endpoint == "embedded"


def test_a_dry_run_needs_no_target(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=5, users=2)
    result = invoke("run", str(data), "--out", str(tmp_path / "out"), "--dry-run", env=CREDS)
    assert result.exit_code == 0, result.output


def test_embedded_chosen_says_nothing_reached_leanplum(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=20, users=4)
    out = tmp_path / "out"

    result = invoke("run", str(data), "--out", str(out), "--endpoint", "embedded", env=CREDS)

    assert result.exit_code == 0, result.output
    assert "into the built-in emulator (nothing reaches Leanplum)" in result.output  # start line
    assert "sent to the built-in emulator (nothing reaches Leanplum)" in result.output  # summary
    doc = orjson.loads((out / SUMMARY).read_bytes())
    assert doc["target"] == "the built-in emulator (nothing reaches Leanplum)"


def test_the_quickstart_without_credentials_keeps_the_emulator(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=5, users=2)
    result = invoke("run", str(data), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "built-in emulator" in result.output


@pytest.mark.parametrize(
    ("endpoint", "dry_run", "expected"),
    [
        ("embedded", False, "the built-in emulator (nothing reaches Leanplum)"),
        ("https://api.leanplum.com/api", False, "Leanplum at https://api.leanplum.com/api"),
        ("https://API.Leanplum.com./api", False, "Leanplum at https://API.Leanplum.com./api"),
        ("http://127.0.0.1:8787/api", False, LOOPBACK),
        ("https://proxy.example.com/api", False, "https://proxy.example.com/api"),
        ("https://api.leanplum.com/api", True, "nowhere (a dry run: nothing is sent)"),
    ],
    ids=["embedded", "leanplum", "leanplum-spelled-oddly", "loopback", "other", "dry-run"],
)
def test_describe_target(endpoint: str, dry_run: bool, expected: str) -> None:
    assert describe_target(endpoint, dry_run=dry_run) == expected


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("https://api.leanplum.com/", "path must be /api"),
        ("https://api.leanplum.com/api/v2", "path must be /api"),
        ("ftp://api.leanplum.com/api", "not an http(s) URL"),
        ("https://user:pw@api.leanplum.com/api", "must not carry credentials"),
    ],
    ids=["no-path", "other-path", "ftp", "userinfo"],
)
def test_bad_endpoints_exit_2_with_the_reason(tmp_path: Path, endpoint: str, reason: str) -> None:
    data = generated(tmp_path / "in.ndjson", records=5, users=2)
    result = invoke("run", str(data), "--out", str(tmp_path / "out"), "--endpoint", endpoint,
                    env=CREDS)
    assert result.exit_code == ExitCode.USAGE
    assert reason in result.output
    assert "pw" not in result.output


# --- part 2: the endpoint is checked before the first record ----------------------------


def test_a_key_the_api_refuses_exits_3_with_zero_rows(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=50, users=5)
    out = tmp_path / "out"
    with emulator_thread(EmulatorConfig(app_id=TEST_APP_ID, client_key="another-key")) as url:
        result = invoke("run", str(data), "--out", str(out), "--endpoint", url, env=CREDS)
        state = emulator_state(url)

    assert result.exit_code == ExitCode.INVALID_KEY, result.output
    assert "refused the access key" in result.output
    assert TEST_KEY not in result.output
    assert not (out / RESULTS).exists()
    assert state["users"] == {}


def test_a_host_nobody_listens_on_exits_4_before_any_row(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=50, users=5)
    out = tmp_path / "out"
    url = f"http://127.0.0.1:{free_port()}/api"

    result = invoke("run", str(data), "--out", str(out), "--endpoint", url, env=CREDS)

    assert result.exit_code == ExitCode.INPUT, result.output
    assert "cannot reach 127.0.0.1" in result.output
    assert not (out / RESULTS).exists()


def test_the_preflight_creates_nothing_and_the_run_goes_on(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=30, users=6)
    out = tmp_path / "out"
    with emulator_thread() as url:
        result = invoke("run", str(data), "--out", str(out), "--endpoint", url, env=CREDS)
        state = emulator_state(url)

    assert result.exit_code == 0, result.output
    assert len(state["users"]) == 6  # the preflight's user was not created
    assert not any(u.startswith("replayer-preflight-") for u in state["users"])


def test_no_preflight_skips_the_call(tmp_path: Path) -> None:
    data = generated(tmp_path / "in.ndjson", records=5, users=1)
    with emulator_thread(EmulatorConfig(app_id=TEST_APP_ID, client_key="another-key")) as url:
        result = invoke("run", str(data), "--out", str(tmp_path / "out"), "--endpoint", url,
                        "--no-preflight", env=CREDS)
    # The run itself meets the refused key: its own documented stop, exit 3, not the preflight.
    assert result.exit_code == ExitCode.INVALID_KEY
    assert "refused the access key" not in result.output


WARNING = orjson.dumps({"response": [{"success": True, "warning": {"message": "User not found"}}]})
PREFLIGHT_CASES = [
    ("warning", Attempt(200, WARNING), None),
    ("success", Attempt(200, b'{"response":[{"success":true}]}'), None),
    ("server-error", Attempt(503, b"busy"), None),
    ("bad-key", Attempt(401, b'{"response":[{"success":false,"error":{"message":'
                             b'"Invalid access key"}}]}'), ExitCode.INVALID_KEY),
    ("forbidden", Attempt(403, b"{}"), ExitCode.INVALID_KEY),
    ("not-found", Attempt(404, b"<html>not here</html>"), ExitCode.INPUT),
    ("html-200", Attempt(200, b"<html>a login page</html>"), ExitCode.INPUT),
    ("redirect", Attempt(302, b"", detail="login.example.com"), ExitCode.INPUT),
    ("refused", Attempt(None, None, "connect", "refused", sent=False), ExitCode.INPUT),
    ("timeout", Attempt(None, None, "timeout", sent=False), ExitCode.INPUT),
]


@pytest.mark.parametrize(("answer", "expected"), [c[1:] for c in PREFLIGHT_CASES],
                         ids=[c[0] for c in PREFLIGHT_CASES])
def test_judge_reads_the_preflight_answer(answer: Attempt, expected: ExitCode | None) -> None:
    failure = judge(answer, "api.example.com")
    assert (failure.code if failure is not None else None) == expected


# --- part 5: a rerun never re-sends silently -------------------------------------------


def test_the_same_command_twice_without_out_sends_nothing_the_second_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = generated(tmp_path / "in.ndjson", records=40, users=8)
    with emulator_thread(EmulatorConfig(app_id=TEST_APP_ID, client_key=TEST_KEY,
                                        record_requests=True)) as url:
        first = invoke("run", str(data), "--endpoint", url, env=CREDS)
        sent = len(emulator_state(url)["requests"])
        second = invoke("run", str(data), "--endpoint", url, env=CREDS)
        resumed = invoke("run", str(data), "--endpoint", url, "--resume", env=CREDS)
        after = len(emulator_state(url)["requests"])

    assert first.exit_code == 0, first.output
    assert second.exit_code == ExitCode.USAGE
    assert "--resume" in second.output and "--overwrite" in second.output
    assert resumed.exit_code == 0, resumed.output
    assert after == sent + 1  # the resume's preflight call; no record again
    folders = list((tmp_path / "replay-out").iterdir())
    assert [f.name for f in folders] == [folders[0].name]
    assert re.fullmatch(r"in-[0-9a-f]{12}", folders[0].name)
    assert len(read_rows(folders[0] / RESULTS)) == 40


def test_different_inputs_or_targets_get_different_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    a = generated(tmp_path / "a.ndjson", records=5, users=2, seed=1)
    b = generated(tmp_path / "b.ndjson", records=5, users=2, seed=2)
    for args in ([str(a)], [str(b)], [str(a), "--dry-run"], [str(a), str(b)]):
        assert invoke("run", *args).exit_code == 0
    assert len(list((tmp_path / "replay-out").iterdir())) == 4


def test_a_changed_file_gets_a_new_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = generated(tmp_path / "in.ndjson", records=5, users=2)
    assert invoke("run", str(data)).exit_code == 0
    generated(data, records=6, users=2)
    assert invoke("run", str(data)).exit_code == 0
    assert len(list((tmp_path / "replay-out").iterdir())) == 2


# --- part 6: the repository stands alone ----------------------------------------------


def test_every_document_the_code_cites_is_in_the_repository() -> None:
    cited: set[str] = set()
    for path in [*REPO.glob("replayer/**/*.py"), *REPO.glob("tests/**/*.py")]:
        cited |= set(re.findall(r"\b((?:docs|tests/data)/[\w./-]+\.(?:md|json))", path.read_text()))
    assert "docs/leanplum-api.md" in cited
    missing = sorted(c for c in cited if not (REPO / c).is_file())
    assert not missing, missing


def test_nothing_reads_outside_the_repository() -> None:
    outside = re.compile(r"CONTRACT\.md|shared/leanplum|parents\[2\]")
    hits = [str(p.relative_to(REPO)) for p in [*REPO.glob("replayer/**/*.py"),
                                               *REPO.glob("tests/**/*.py")]
            if p.name != "test_safe_defaults.py" and outside.search(p.read_text())]
    assert not hits


async def test_the_preflight_tries_a_dropped_connection_again_but_not_a_silent_server() -> None:
    calls = {"drop": 0, "silent": 0}

    async def api(request: web.Request) -> web.StreamResponse:
        await request.read()
        which = request.path.split("/")[1]
        calls[which] += 1
        if which == "drop" and calls["drop"] == 1:
            assert request.transport is not None
            request.transport.close()  # the answer is lost mid-way: a blip, tried again
        if which == "silent":
            await asyncio.sleep(5)  # never answers within the preflight's timeout
        return web.json_response({"response": [{"success": True, "warning": {"message": "x"}}]})

    app = web.Application()
    app.router.add_post("/drop/api", api)
    app.router.add_post("/silent/api", api)
    async with TestServer(app, host="127.0.0.1") as server:
        dropped = await preflight(Endpoint(str(server.make_url("/drop/api")), TEST_APP_ID,
                                           TEST_KEY), timeout_s=5.0, pause_s=0.0)
        silent = await preflight(Endpoint(str(server.make_url("/silent/api")), TEST_APP_ID,
                                          TEST_KEY), timeout_s=0.2, pause_s=0.0)

    assert dropped is None and calls["drop"] == 2
    assert silent is not None and silent.code is ExitCode.INPUT and calls["silent"] == 1
