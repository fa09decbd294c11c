"""The Leanplum API emulator: an aiohttp app that speaks `start` and `multi` and records them.

`create_app` builds it; `embedded` serves it in process; `replayer emulate` serves it standalone.
"""

from __future__ import annotations

from replayer.emulator.app import create_app
from replayer.emulator.config import (
    DEFAULT_APP_ID,
    DEFAULT_CLIENT_KEY,
    EmulatorConfig,
    LatencyModel,
)
from replayer.emulator.faults import Fault, FaultConfig, FaultKind
from replayer.emulator.serve import ListenError, embedded, run

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_CLIENT_KEY",
    "EmulatorConfig",
    "Fault",
    "FaultConfig",
    "FaultKind",
    "LatencyModel",
    "ListenError",
    "create_app",
    "embedded",
    "run",
]
