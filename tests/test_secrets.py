"""Issue 9: the key never leaves for another origin, nor shows in any row, log, file or message."""

from __future__ import annotations

import io
import logging
import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from replayer.config import ConfigError, Settings, key_file_warning, load_settings
from replayer.engine.classify import Verdict, classify
from replayer.engine.control import RunControl
from replayer.engine.replay import replay
from replayer.engine.send import redirect_host
from replayer.observe.logs import log, setup_logging
from replayer.output.layout import FAILURES, REQUESTS, RESULTS
from replayer.records import REDACTED, Attempt, ExitCode, RawLine, RecordFailure, redact_text
from replayer.report import build_report
from replayer.source.validate import parse_line
from tests.conftest import TEST_KEY, StartEmulator, read_rows, settings_for

K = TEST_KEY


def assert_no_key(text: str) -> None:
    assert K not in text
    assert K[:8] not in text, "not even the start of the key (a value cut short)"


# --- text that did not parse: redact_text ----------------------------------------------------

TEXT_CASES: list[tuple[str, str]] = [
    ("json", f'{{"userId":"u","clientKey":"{K}"}}'),
    ("app-id", f'{{"appId":"{K}"}}'),
    ("api-version", f'{{"apiVersion": "{K}"}}'),
    ("any-case", f'{{"CLIENTKEY":"{K}"}}'),
    ("cut-in-the-value", f'{{"userId":"u","clientKey":"{K[:10]}'),
    ("unterminated-at-end", f'{{"clientKey":"{K}'),
    ("single-quotes", f"{{'clientKey': '{K}'}}"),
    ("bare", f"{{clientKey: {K}}}"),
    ("query-string", f"action=start&appId=x&clientKey={K}&userId=u"),
    ("escaped-in-string", f'{{"userAttributes":"{{\\"clientKey\\":\\"{K}\\"}}"}}'),
    ("unicode-escaped-name", f'{{"\\u0063lientKey":"{K}"}}'),
    ("escaped-name-after-escaped-value", f'{{"x":"y\\u0020","\\u0061ppId":"{K}"}}'),
    ("array-pair", f'["clientKey","{K}"]'),
    ("nested-broken", f'{{"userAttributes":{{"a":[{{"clientKey":"{K}"'),
]


@pytest.mark.parametrize("text", [c[1] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
def test_redact_text_masks_every_spelling(text: str) -> None:
    redacted = redact_text(text)
    assert_no_key(redacted)
    assert REDACTED in redacted


def test_redact_text_leaves_other_text_alone() -> None:
    text = '{"userId":"u1","appVersion":"1.2","note":"client keys are secret"}'
    assert redact_text(text) == text


# --- records: a secret at any depth is refused and redacted -----------------------------------


def line(obj: Any) -> bytes:
    return orjson.dumps(obj)


NESTED_CASES: list[tuple[str, bytes, str, str]] = [
    # id, line, kind, the start of the message
    ("in-user-attributes", line({"userId": "u", "userAttributes": {"clientKey": K}}),
     "secret_field", "userAttributes.clientKey: a secret"),
    ("other-case", line({"userId": "u", "userAttributes": {"ClientKEY": K}}),
     "secret_field", "userAttributes.ClientKEY: a secret"),
    ("in-a-list", line({"userId": "u", "x": [{"a": {"clientKey": K}}]}),
     "secret_field", "x[0].a.clientKey: a secret"),
    ("in-attributes-as-json-text", line({"userId": "u", "userAttributes": f'{{"clientKey":"{K}"}}'}),
     "secret_field", "userAttributes: a secret"),
    ("in-web-push", line({"userId": "u", "webPushSubscription": {"keys": {"clientKey": K}}}),
     "secret_field", "webPushSubscription.keys.clientKey: a secret"),
    ("app-id-nested", line({"userId": "u", "userAttributes": {"appId": K}}),
     "config_field", "userAttributes.appId: configuration"),
    ("api-version-nested", line({"userId": "u", "userAttributes": {"apiVersion": K}}),
     "config_field", "userAttributes.apiVersion: configuration"),
    ("top-level-other-case", line({"userId": "u", "CLIENTKEY": K}),
     "secret_field", "CLIENTKEY: a secret"),
    ("spelled-in-a-value", line({"userId": "u", "city": f"clientKey={K}"}),
     "secret_field", "city: a secret"),
    ("spelled-in-the-user-id", line({"userId": f"clientKey:{K}"}),
     "secret_field", "userId: a secret"),
    ("escaped-name", b'{"userId":"u","userAttributes":{"\\u0063lientKey":"' + K.encode() + b'"}}',
     "secret_field", "userAttributes.clientKey: a secret"),
    ("many-places", line({"userId": "u", "x": [{"clientKey": K}, {"clientKey": K}]}),
     "secret_field", "x[1].clientKey: a secret belongs in settings, not in records (and 1 more)"),
    ("too-deep-to-write-back", line({"userId": "u", "x": [[[{"clientKey": K}]]]})[:-2]
     + b"," + b"[" * 300 + b"]" * 300 + b"]}", "secret_field", "x"),
]


@pytest.mark.parametrize(
    ("data", "kind", "message"), [c[1:] for c in NESTED_CASES], ids=[c[0] for c in NESTED_CASES]
)
@pytest.mark.parametrize("allow_unknown", [False, True], ids=["strict", "allow-unknown"])
def test_a_secret_at_any_depth_is_refused_and_never_shown(
    data: bytes, kind: str, message: str, allow_unknown: bool
) -> None:
    result = parse_line(RawLine("f", 1, data), allow_unknown_fields=allow_unknown)
    assert isinstance(result, RecordFailure), "never a Session: it would be sent (and echoed)"
    assert (result.kind, result.message.split("; ")[0][: len(message)]) == (kind, message)
    assert_no_key(repr(result))
    assert_no_key(orjson.dumps(result.record).decode() if result.record else result.raw or "")


def test_the_failure_record_keeps_everything_but_the_secrets() -> None:
    record = {"userId": "u1", "city": "Paris",
              "userAttributes": {"plan": "pro", "clientKey": K, "tags": ["a", "b"]},
              "x": [{"appId": "a", "keep": 1}]}
    result = parse_line(RawLine("f", 1, line(record)), allow_unknown_fields=True)
    assert isinstance(result, RecordFailure)
    assert result.record == {"userId": "u1", "city": "Paris",
                             "userAttributes": {"plan": "pro", "clientKey": REDACTED,
                                                "tags": ["a", "b"]},
                             "x": [{"appId": REDACTED, "keep": 1}]}
    assert result.message == (
        "userAttributes.clientKey: a secret belongs in settings, not in records; "
        "x[0].appId: configuration belongs in settings, not records"
    )


def test_a_wrong_value_quoted_in_a_message_is_masked() -> None:
    result = parse_line(RawLine("f", 1, line({"userId": "u", "country": f"appId={K}"})))
    assert isinstance(result, RecordFailure)
    assert 'got "appId=\\"[redacted]\\""' in result.message


BROKEN_CASES: list[tuple[str, RawLine]] = [
    ("invalid-json-nested", RawLine("f", 1, f'{{"userAttributes":{{"clientKey":"{K}"}},'.encode())),
    ("truncated-in-the-value", RawLine("f", 1, f'{{"userId":"u","clientKey":"{K[:9]}'.encode(),
                                       truncated=True)),
    ("invalid-utf8", RawLine("f", 1, b'{"city":"\xff","appId":"' + K.encode() + b'"}')),
    ("not-an-object", RawLine("f", 1, line([{"x": {"apiVersion": K}}]))),
]


@pytest.mark.parametrize("raw", [c[1] for c in BROKEN_CASES], ids=[c[0] for c in BROKEN_CASES])
def test_raw_text_of_a_line_that_did_not_parse_is_masked(raw: RawLine) -> None:
    result = parse_line(raw)
    assert isinstance(result, RecordFailure) and result.raw is not None
    assert_no_key(result.raw)
    assert REDACTED in result.raw


# --- answers: redirects are never followed, and server messages are masked ---------------------

HOST_CASES: list[tuple[str, int, str | None, str]] = [
    ("absolute", 307, "http://127.0.0.1:9999/api?action=start&clientKey=x", "127.0.0.1:9999"),
    ("no-port", 308, "https://evil.example/steal", "evil.example"),
    ("user-info-dropped", 302, "https://user:pw@evil.example/", "evil.example"),
    ("relative", 307, "/elsewhere", ""),
    ("none", 307, None, ""),
    ("bad-port", 301, "http://h:99999/", ""),
    ("not-a-redirect", 200, "http://127.0.0.1/", ""),
]


@pytest.mark.parametrize(
    ("status", "location", "host"), [c[1:] for c in HOST_CASES], ids=[c[0] for c in HOST_CASES]
)
def test_redirect_host_is_only_the_host(status: int, location: str | None, host: str) -> None:
    assert redirect_host(status, location) == host


@pytest.mark.parametrize("status", [300, 301, 302, 303, 304, 307, 308])
def test_every_3xx_is_a_final_client_error(status: int) -> None:
    body = orjson.dumps({"response": [{"success": False, "error": {"message": f"key {K}"}}]})
    outcomes = classify(Attempt(status, body, detail="127.0.0.1:9"), 2)
    assert [(o.verdict, o.kind) for o in outcomes] == [(Verdict.REJECTED, "client_error")] * 2
    assert outcomes[0].message == (
        f"HTTP {status} redirect to 127.0.0.1:9: not followed (the key would go with it)"
    )


@pytest.mark.parametrize("status", [200, 400, 500])
def test_a_key_echoed_in_a_server_message_is_masked(status: int) -> None:
    body = orjson.dumps({"response": [{"success": status == 200,
                                       "error": {"message": f'bad clientKey: "{K}"'}}]})
    (outcome,) = classify(Attempt(status, body), 1)
    assert_no_key(outcome.message)
    assert outcome.message.startswith("bad clientKey")


@pytest.fixture
async def redirect_pair() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server answering 307 to a second one on another port that records every request."""
    received: list[bytes] = []

    async def record(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.json_response({"response": [{"success": True}]})

    target_app = web.Application()
    target_app.router.add_route("*", "/{tail:.*}", record)
    target = TestServer(target_app, host="127.0.0.1")
    await target.start_server()

    async def bounce(request: web.Request) -> web.Response:
        await request.read()
        location = str(target.make_url("/api")) + "?" + request.query_string
        return web.Response(status=307, headers={"Location": location})

    front_app = web.Application()
    front_app.router.add_route("*", "/api", bounce)
    front = TestServer(front_app, host="127.0.0.1")
    await front.start_server()
    yield str(front.make_url("/api")), received
    await front.close()
    await target.close()


@pytest.mark.parametrize("batch", [False, True], ids=["start", "multi"])
async def test_a_307_is_not_followed_and_the_key_goes_nowhere_else(
    redirect_pair: tuple[str, list[bytes]], tmp_path: Path, batch: bool
) -> None:
    url, received = redirect_pair
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"".join(line({"userId": f"u{i}", "time": 1_700_000_000 + i}) + b"\n"
                              for i in range(5)))
    out = tmp_path / "out"
    out.mkdir()
    report = await replay(settings_for(url, batch=batch), [str(data)], out,
                          control=RunControl(), rng=random.Random(1))

    assert received == [], "the second origin got nothing (before the fix: every body, key in it)"
    assert report.exit_code == ExitCode.FAILURES
    rows = read_rows(out / FAILURES)
    assert len(rows) == 5 and read_rows(out / RESULTS) == []
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert {r["kind"] for r in rows} == {"client_error"}
    assert all(r["http_status"] == 307 and "redirect to 127.0.0.1:" in r["message"]
               and port not in r["message"] for r in rows)


# --- configuration: key file permissions, worker bound --------------------------------------


class ListHandler(logging.Handler):
    """Keeps every message logged to it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """The messages of the `replayer` logger while the test runs (at any level)."""
    handler, saved = ListHandler(), (log.handlers[:], log.level, log.propagate)
    log.handlers[:], log.propagate = [handler], False
    log.setLevel(logging.DEBUG)
    yield handler.messages
    log.handlers[:], _, log.propagate = saved
    log.setLevel(saved[1])


@pytest.mark.parametrize(
    ("mode", "warned"),
    [(0o600, False), (0o400, False), (0o640, True), (0o604, True), (0o620, True), (0o644, True)],
    ids=["600", "400", "640", "604", "620", "644"],
)
def test_a_key_file_open_to_others_is_warned_about(
    tmp_path: Path, logged: list[str], mode: int, warned: bool
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(K + "\n")
    key_file.chmod(mode)
    settings = load_settings(flags={"client_key_file": str(key_file)},
                             env={"REPLAYER_ENDPOINT": "http://127.0.0.1:1/api",
                                  "LEANPLUM_APP_ID": "a"}, config_path=None)
    assert settings.client_key is not None and settings.client_key.reveal() == K
    if not warned:
        assert logged == []
        return
    assert logged == [(
        "WARNING: the client key file given by flag --client-key-file is accessible by group "
        f"or others (mode {mode:04o}); chmod 600 it"
    )]
    assert_no_key(logged[0])


def test_no_warning_for_what_is_not_a_regular_file() -> None:
    assert key_file_warning(0o010666, "x") is None  # a FIFO, as <(echo key) gives


def test_workers_up_to_4_per_cpu() -> None:
    cpus = os.cpu_count() or 1
    settings = load_settings(flags={"workers": 4 * cpus}, env={}, config_path=None)
    assert settings.workers == 4 * cpus
    with pytest.raises(ConfigError) as caught:
        load_settings(flags={"workers": 4 * cpus + 1}, env={}, config_path=None)
    assert str(caught.value) == (
        f"--workers {4 * cpus + 1} is more than 4 per CPU (this machine has {cpus} "
        f"CPU{'s' if cpus != 1 else ''}: at most {4 * cpus})"
    )
    with pytest.raises(ConfigError, match="^environment variable REPLAYER_WORKERS"):
        load_settings(flags={}, env={"REPLAYER_WORKERS": str(4 * cpus + 1)}, config_path=None)


# --- a real run: the key is in no file and no log line ----------------------------------------

LEAKY_LINES: list[bytes] = [
    line({"userId": "ok1", "time": 1_700_000_000}),
    line({"userId": "n1", "userAttributes": {"clientKey": K}}),
    line({"userId": "n2", "userAttributes": f'{{"appId":"{K}"}}'}),
    line({"userId": "n3", "x": [{"apiVersion": K}]}),
    line({"userId": "n4", "CLIENTKEY": K}),
    line({"userId": "n5", "city": f"clientKey={K}"}),
    f'{{"userId":"b1","clientKey":"{K}"'.encode(),  # unterminated
    f'{{"userId":"b2","userAttributes":{{"clientKey":"{K}"}},}}'.encode(),  # trailing comma
    b'{"userId":"b3","city":"\xff","clientKey":"' + K.encode() + b'"}',  # invalid UTF-8
    # longer than --max-line-bytes 1024, cut inside the key's value
    b'{"userId":"b4","note":"' + b"x" * 976 + b'","clientKey":"' + K.encode() + b'"}',  # cut
    b'{"userId":"b5","\\u0063lientKey":"' + K.encode() + b'"',
    line({"userId": "ok2", "time": 1_700_000_001}),
]


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    """Every log line of the run, at debug level, as the CLI's text format prints them."""
    stream = io.StringIO()
    saved = (log.handlers[:], log.level, log.propagate)
    setup_logging(fmt="text", level="debug")
    log.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    log.handlers[:], _, log.propagate = saved
    log.setLevel(saved[1])


@pytest.mark.parametrize("dry_run", [False, True], ids=["sent", "dry-run"])
async def test_the_key_is_in_no_output_file_and_no_log_line(
    start_emulator: StartEmulator, tmp_path: Path, captured_log: io.StringIO,
    capsys: pytest.CaptureFixture[str], dry_run: bool,
) -> None:
    emulator = await start_emulator()
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join(LEAKY_LINES) + b"\n")
    out = tmp_path / "out"
    out.mkdir()
    settings: Settings = settings_for(emulator.url, dry_run=dry_run, max_line_bytes=1024,
                                      save_responses=True)
    report = await replay(settings, [str(data)], out, control=RunControl(),
                          rng=random.Random(1))

    if not dry_run:
        build_report(out)  # report.html (and its charts) from the rows
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 5  # results, failures, summary, metrics, journal, run.json, ...
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert K not in text and K[:10] not in text, f"{path.name} holds (part of) the key"
    assert report.exit_code == ExitCode.FAILURES
    failures = read_rows(out / FAILURES)
    (cut,) = [row for row in failures if row["kind"] == "line_too_long"]
    assert cut["raw"].endswith('"clientKey":"[redacted]"…[truncated]')
    assert len(failures) == len(LEAKY_LINES) - 2 and len(read_rows(out / RESULTS)) == 2
    assert (out / REQUESTS).exists() == dry_run
    assert dry_run or (out / "report.html").exists()
    output = capsys.readouterr()
    logged = captured_log.getvalue()
    assert "invalid, not sent (secret_field)" in logged  # the log lines were captured
    for text in (logged, output.out, output.err):
        assert K not in text and K[:10] not in text


async def test_the_key_as_a_plain_value_in_a_record_never_reaches_a_row(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    # Validation cannot know a value is the key when no name says so; the row files can.
    emulator = await start_emulator(blocked_users=frozenset({"u1"}))
    data = tmp_path / "in.ndjson"
    data.write_bytes(orjson.dumps({"userId": "u1", "userAttributes": {"note": TEST_KEY}})
                     + b"\n")
    out = tmp_path / "out"
    out.mkdir()
    report = await replay(settings_for(emulator.url), [str(data)], out, control=RunControl())
    assert report.exit_code == ExitCode.FAILURES
    rows = read_rows(out / FAILURES)
    assert rows[0]["kind"] in ("blocked", "rejected")
    assert rows[0]["record"]["userAttributes"]["note"] == REDACTED
    assert TEST_KEY.encode() not in (out / FAILURES).read_bytes()


# Issue 21: the key's text as a plain value (an ID, an attribute, part of a string) is in no
# file that a run or a dry run writes, requests.ndjson and users.ndjson included.
PLAIN_KEY_LINES: list[bytes] = [
    line({"userId": "u1", "userAttributes": {"note": K}}),
    line({"userId": K, "deviceId": f"{K}-device", "city": f"near {K}"}),
    line({"deviceId": f"d-{K}", "userAttributes": {"tags": [K, "x"]}}),
    line({"userId": "blocked", "appVersion": K}),
]


@pytest.mark.parametrize("dry_run", [False, True], ids=["sent", "dry-run"])
async def test_the_keys_text_as_a_plain_value_is_in_no_file_a_run_writes(
    start_emulator: StartEmulator, tmp_path: Path, dry_run: bool
) -> None:
    emulator = await start_emulator(blocked_users=frozenset({"blocked"}))
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join(PLAIN_KEY_LINES) + b"\n")
    out = tmp_path / "out"
    out.mkdir()
    settings = settings_for(emulator.url, dry_run=dry_run, save_responses=True)
    report = await replay(settings, [str(data)], out, control=RunControl())

    assert report.exit_code == (ExitCode.OK if dry_run else ExitCode.FAILURES)
    names = {p.name for p in out.iterdir()}
    assert {"results.ndjson", "users.ndjson", "summary.json", "journal.log"} <= names
    assert (REQUESTS in names) == dry_run
    for path in out.rglob("*"):
        if path.is_file():
            assert K.encode() not in path.read_bytes(), f"{path.name} holds the key"
    users = read_rows(out / "users.ndjson")
    assert [u["userId"] for u in users] == ["u1", REDACTED, None, "blocked"]
    assert users[1]["deviceId"] == f"{REDACTED}-device"
    assert users[2]["deviceId"] == f"d-{REDACTED}"
    if dry_run:
        bodies = read_rows(out / REQUESTS)
        assert REDACTED in orjson.dumps(bodies).decode()
