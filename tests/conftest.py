"""Shared fixtures: the emulator in process on 127.0.0.1, run settings, output readers."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import socket
import sys
import threading
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from replayer.config import Secret, Settings
from replayer.emulator import EmulatorConfig, create_app
from replayer.output.layout import SUMMARY
from replayer.source.generate import write_records

REPO = Path(__file__).resolve().parents[1]


DATA = REPO / "tests" / "data"  # what the tests know of the API, written for them (tests/data/README.md)
TEST_APP_ID = "test-app"
TEST_KEY = "test-secret-key-7f3a9c"  # distinctive, so a leak is easy to grep for


@dataclasses.dataclass
class Emulator:
    """A running emulator: its /api URL and a way to read its recorded state."""

    url: str
    config: EmulatorConfig
    http: aiohttp.ClientSession

    async def state(self) -> dict[str, Any]:
        base = self.url.rsplit("/api", 1)[0]
        async with self.http.get(f"{base}/_emulator/state") as response:
            return orjson.loads(await response.read())  # type: ignore[no-any-return]


StartEmulator = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emulator() -> AsyncIterator[StartEmulator]:
    """Starts emulators with the test credentials (overridable per call); stops them after."""
    servers: list[TestServer] = []
    http = aiohttp.ClientSession()

    async def start(*, port: int | None = None, **overrides: Any) -> Emulator:
        """`port`: bind that one (a test's closed port coming back), else a free one."""
        config = EmulatorConfig(app_id=TEST_APP_ID, client_key=TEST_KEY, **overrides)
        server = TestServer(create_app(config), host="127.0.0.1", port=port)
        await server.start_server()
        servers.append(server)
        return Emulator(str(server.make_url("/api")), config, http)

    yield start
    for server in servers:
        await server.close()
    await http.close()


def settings_for(url: str, **overrides: Any) -> Settings:
    """Run settings aimed at an emulator URL, with fast retries for tests."""
    base = Settings(endpoint=url, app_id=TEST_APP_ID, client_key=Secret(TEST_KEY),
                    backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5.0)
    return dataclasses.replace(base, **overrides)


def generated(path: Path, *, records: int, users: int, seed: int = 1) -> Path:
    """Writes a generated session file and returns its path."""
    buffer = io.BytesIO()
    write_records(buffer, records=records, users=users, seed=seed)
    path.write_bytes(buffer.getvalue())
    return path


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of an NDJSON output file (empty when it does not exist)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def input_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of every line of an input file that parses to an object."""
    out = []
    for n, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out.append((n, obj))
    return out


class FakeClock:
    """Virtual time: `sleep` records the delay and jumps time forward instead of waiting."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_s = start_s
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.now_s

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now_s

    async def sleep(self, seconds: float) -> None:
        import asyncio

        self.sleeps.append(seconds)
        self.now_s += seconds
        await asyncio.sleep(0)


@contextmanager
def emulator_thread(config: EmulatorConfig | None = None, *, port: int = 0) -> Iterator[str]:
    """An emulator on its own loop in a thread, so the CLI can run its own asyncio.run().

    Yields its /api URL; `config` defaults to the test credentials, `port` 0 to a free one.
    """
    config = config or EmulatorConfig(app_id=TEST_APP_ID, client_key=TEST_KEY)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    url: list[str] = []

    async def serve() -> web.AppRunner:
        runner = web.AppRunner(create_app(config))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        url.append(f"http://127.0.0.1:{runner.addresses[0][1]}/api")
        return runner

    def target() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield url[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def emulator_state(url: str) -> dict[str, Any]:
    """What an emulator has recorded (GET /_emulator/state), read without an event loop."""
    with urllib.request.urlopen(url.rsplit("/api", 1)[0] + "/_emulator/state") as answer:
        return orjson.loads(answer.read())  # type: ignore[no-any-return]


@pytest.fixture
def threaded_emulator() -> Iterator[str]:
    """The test emulator in a thread (emulator_thread); yields its /api URL."""
    with emulator_thread() as url:
        yield url


# ---- the CLI in a process of its own ----------------------------------------------------

CLI_ENV = {**os.environ, "LEANPLUM_APP_ID": TEST_APP_ID, "LEANPLUM_CLIENT_KEY": TEST_KEY,
           "REPLAYER_OUTAGE_PROBE_MAX_S": "0.05", "REPLAYER_BACKOFF_BASE_S": "0.01",
           "REPLAYER_BACKOFF_MAX_S": "0.05"}


def closed_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago: bound, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_cli(data: Path, out: Path, port: int, *extra: str) -> tuple[int, str]:
    """`replayer run` in a process of its own against 127.0.0.1:`port`, with fast retries and
    a 0.5 s outage limit: its exit code and what it printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "replayer", "run", str(data), "--out", str(out),
        # No preflight: these runs meet the dead endpoint in the engine's outage path (the
        # preflight, which would stop them first with exit 4, has tests of its own).
        "--endpoint", f"http://127.0.0.1:{port}/api", "--outage-limit", "0.5",
        "--no-preflight", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=CLI_ENV)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, (stdout + stderr).decode()


def summary_of(out: Path) -> dict[str, Any]:
    """summary.json of the run in `out`."""
    doc = orjson.loads((out / SUMMARY).read_bytes())
    assert isinstance(doc, dict)
    return doc


@asynccontextmanager
async def gated_emulator(*, held_after: int, **config: Any) -> AsyncIterator[
        tuple[str, asyncio.Event]]:
    """An in-process emulator (test credentials, `config` overrides) that holds every request
    after the first `held_after` until the event is set: a run is certainly going on while a
    test looks at it, whatever the machine's speed. Yields the /api URL and the event."""
    release = asyncio.Event()
    answered = 0

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal answered
        if request.path == "/api":
            answered += 1
            if answered > held_after:
                await release.wait()
        return await handler(request)

    app = create_app(EmulatorConfig(app_id=TEST_APP_ID, client_key=TEST_KEY, **config))
    app.middlewares.append(gate)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/api")), release
    finally:
        release.set()
        await server.close()
