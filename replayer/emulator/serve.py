"""Serving the emulator over TCP: in process (embedded mode, tests) or blocking (`emulate`).

Both paths share `_serving`, so the tests of `embedded` cover what `run` serves.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from replayer.emulator.app import create_app
from replayer.emulator.config import EmulatorConfig

LOOPBACK = "127.0.0.1"
# In-flight answers (a slow fault sleeps for tens of seconds) must not hold up shutdown.
_SHUTDOWN_TIMEOUT_S = 1.0


class ListenError(OSError):
    """The emulator could not bind its address (port in use, address not local)."""


@asynccontextmanager
async def embedded(config: EmulatorConfig) -> AsyncIterator[str]:
    """Serve on 127.0.0.1 and a free port while the block runs; yields the URL ending in `/api`."""
    async with _serving(config, LOOPBACK, 0) as url:
        yield url


def run(config: EmulatorConfig, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM; prints `emulator listening on URL` to stderr once bound.

    Raises `ListenError` when the address cannot be bound.
    """
    asyncio.run(_serve_until_signal(config, host, port))


async def _serve_until_signal(config: EmulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with _serving(config, host, port) as url:
        print(f"emulator listening on {url}", file=sys.stderr, flush=True)
        await stop.wait()


@asynccontextmanager
async def _serving(config: EmulatorConfig, host: str, port: int) -> AsyncIterator[str]:
    runner = web.AppRunner(
        create_app(config), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
    )
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        bound_port = runner.addresses[0][1]  # the real port when 0 asked for a free one
        shown_host = f"[{host}]" if ":" in host else host
        yield f"http://{shown_host}:{bound_port}/api"
    finally:
        await runner.cleanup()
