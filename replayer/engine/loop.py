"""Which event loop a run uses: uvloop where it is installed (auto), or Python's own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from replayer.config import ConfigError


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory for asyncio.Runner: uvloop's for "auto" (when it imports) and "uvloop";
    None (Python's own loop) for "asyncio", or for "auto" without uvloop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("--event-loop uvloop: uvloop is not installed "
                              "(pip install uvloop, or use --event-loop asyncio)") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
