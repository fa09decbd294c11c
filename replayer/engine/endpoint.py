"""Where requests go: the endpoint and its credentials, and the one HTTP session of a run."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import aiohttp

from replayer.config import Settings
from replayer.engine import send


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where requests go and the credentials they carry (repr hides the key)."""

    url: str
    app_id: str
    client_key: str = field(repr=False)


async def open_endpoint(settings: Settings, stack: AsyncExitStack) -> Endpoint:
    """The API to send to; for `embedded`, an emulator started on a free loopback port."""
    if settings.endpoint == "embedded":
        from replayer.emulator.config import EmulatorConfig
        from replayer.emulator.serve import embedded

        config = EmulatorConfig()
        url = await stack.enter_async_context(embedded(config))
        return Endpoint(url, config.app_id, config.client_key)
    assert settings.app_id is not None and settings.client_key is not None
    return Endpoint(settings.endpoint, settings.app_id, settings.client_key.reveal())


async def open_poster(settings: Settings, stack: AsyncExitStack) -> send.HttpPoster:
    """The run's one aiohttp session (keep-alive, --concurrency connections), closed by `stack`."""
    connector = aiohttp.TCPConnector(limit=settings.concurrency, limit_per_host=0)
    http = await stack.enter_async_context(aiohttp.ClientSession(
        connector=connector, timeout=send.NO_LIMIT))
    deadlines = send.Deadlines(settings.timeout_s)  # --timeout, one timer for all requests
    stack.callback(deadlines.close)
    return send.HttpPoster(http, deadlines)
