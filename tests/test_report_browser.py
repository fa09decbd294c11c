"""report.html in a real headless Chromium: no console error, nothing fetched, numbers and
threshold verdicts shown.

Chromium is driven over the DevTools protocol (a websocket on 127.0.0.1) with aiohttp.
Without /usr/bin/chromium the test is skipped, except under CI, where it fails:
`.ci/install-browser` installs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from replayer.output.layout import SUMMARY
from replayer.report import build_report
from tests.conftest import StartEmulator
from tests.test_report import faulty_run

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
LISTENING = re.compile(rb"DevTools listening on (ws://127\.0\.0\.1:(\d+)/\S+)")
BUDGET_S = 30.0


def require_chromium() -> None:
    """Skips without Chromium, unless under CI, where a missing browser is a failure."""
    if CHROMIUM.exists():
        return
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"CI: {CHROMIUM} is missing; .ci/install-browser installs it")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium, or .ci/install-browser); "
                "with CI=true this test fails instead")


class DevTools:
    """One page target over the DevTools protocol: calls, and every event seen meanwhile."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        # DevTools takes text frames only; a binary frame closes the connection.
        await self.ws.send_str(orjson.dumps({"id": call_id, "method": method,
                                             "params": params}).decode())
        while True:
            message = await self._receive()
            if message.get("id") == call_id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]  # type: ignore[no-any-return]

    async def wait_for(self, method: str) -> dict[str, Any]:
        while not any(e.get("method") == method for e in self.events):
            await self._receive()
        return next(e for e in self.events if e.get("method") == method)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression,
                                 returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"]["value"]

    async def _receive(self) -> dict[str, Any]:
        message = await self.ws.receive()
        assert message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), message
        data: dict[str, Any] = orjson.loads(message.data)
        if "method" in data:
            self.events.append(data)
        return data

    def errors(self) -> list[str]:
        """Exceptions, console.error calls and error log entries the page produced."""
        found = []
        for e in self.events:
            method, params = e["method"], e.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append(f"console.error: {params.get('args')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url')}")
        return found

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events
                if e["method"] == "Network.requestWillBeSent"]


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[DevTools]:
    """A headless Chromium with a fresh profile; yields its first page over DevTools."""
    proc = await asyncio.create_subprocess_exec(
        str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    assert proc.stderr is not None
    drain: asyncio.Task[None] | None = None
    try:
        port = await _devtools_port(proc.stderr)
        # Chromium logs on; keep reading so that a full pipe never blocks it.
        drain = asyncio.create_task(_discard(proc.stderr))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield DevTools(ws)
    finally:
        if drain is not None:
            drain.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the browser's children too
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def _devtools_port(stderr: asyncio.StreamReader) -> int:
    seen = []
    while line := await stderr.readline():
        seen.append(line)
        if match := LISTENING.search(line):
            return int(match.group(2))
    raise AssertionError(f"Chromium exited before listening: {b''.join(seen[-20:])!r}")


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.read(1 << 16):
        pass


async def test_report_opens_in_chromium_without_errors_and_shows_the_summary(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    require_chromium()
    out = await faulty_run(start_emulator, tmp_path, fail_if=("failed>0", "p99>3600s"))
    files = build_report(out)
    summary = orjson.loads((out / SUMMARY).read_bytes())
    url = files.html.resolve().as_uri()

    async with asyncio.timeout(BUDGET_S), chromium(tmp_path / "profile") as page:
        for domain in ("Runtime", "Log", "Page", "Network"):
            await page.call(f"{domain}.enable")
        await page.call("Page.navigate", url=url)
        await page.wait_for("Page.loadEventFired")
        text: str = await page.evaluate("document.body.innerText")
        images = await page.evaluate(
            "Array.from(document.images, i => [i.complete, i.naturalWidth, i.naturalHeight])")
        scripts = await page.evaluate("document.scripts.length")
        errors = page.errors()
        requested = page.requested_urls()

    assert errors == []
    assert [u for u in requested if not u.startswith("data:image/png;base64,")] == [url], \
        "the page fetched nothing but itself and its embedded images"
    assert scripts == 0
    assert len(images) == 4 and all(ok and w > 0 and h > 0 for ok, w, h in images), images
    lines = set(text.splitlines())
    for label, key in (("Records", "records"), ("Delivered", "delivered"),
                       ("Failed", "failed"), ("Unfinished", "unfinished"),
                       ("Requests", "requests"), ("Retries", "retries"),
                       ("Lines read", "lines_read"), ("Records per second", "records_per_s"),
                       ("Exit code", "exit_code")):
        assert f"{label}\t{summary[key]:,}" in lines, label
    for p, value in summary["latency_ms"].items():
        assert f"Latency {p} (delivered)\t{value:,} ms" in lines
    assert f"delivered\t{summary['latency_ms']['p50']:,} ms" in text
    assert f"failed\t{summary['failed_latency_ms']['p50']:,} ms" in text
    for kind, n in summary["failures_by_kind"].items():
        assert f"{kind}\t{n:,}\t" in text, kind
    assert f"Started at\t{summary['started_at']}" in lines
    assert "client_key\t[redacted]" in lines
    # The thresholds table, one row each with its verdict, and the headline's badge.
    verdicts = summary["thresholds"]
    assert [v["failed"] for v in verdicts] == [True, False]
    assert "Thresholds: 1 of 2 failed" in lines
    assert "threshold\tmeasured\tresult\tverdict" in lines
    for v in verdicts:
        result = "FAIL" if v["failed"] else "pass"
        assert f"{v['threshold']}\t{v['value']:,}\t{result}\t{v['text']}" in lines, v
    assert "finished thresholds failed exit code 6" in text
