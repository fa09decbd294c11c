"""Run control: how a run is asked to stop, how it drains, and which exit code it ends with."""

from __future__ import annotations

import asyncio
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from replayer.records import ExitCode

# A stop asked for by a signal ends the run with that signal's code (resumable).
SIGNAL_CODES = {"SIGINT": ExitCode.SIGINT, "SIGTERM": ExitCode.SIGTERM,
                "SIGHUP": ExitCode.SIGHUP}
# A stop the run asked for itself ends it as finished (the summary says which).
PLANNED_STOPS = ("duration", "schedule", "threshold")


@dataclass(slots=True)
class RunControl:
    """How the outside (signals, the CLI) and the run itself ask a running replay to stop."""

    stop_reason: str | None = None  # a key of SIGNAL_CODES or one of PLANNED_STOPS
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    hard_stop: asyncio.Event = field(default_factory=asyncio.Event)

    def request_stop(self, reason: str) -> None:
        """First call: graceful stop. A second call: stop at once (the first reason stays)."""
        if self.stopping.is_set():
            self.hard_stop.set()
            return
        self.stop_reason = reason
        self.stopping.set()

    def stop_at_once(self) -> None:
        """Stop without draining (after an abort: the answers would not be written anyway)."""
        self.stopping.set()
        self.hard_stop.set()


@dataclass(frozen=True, slots=True)
class Abort:
    """What ended a run before its end that is not a stop request: the code and one sentence."""

    code: ExitCode
    reason: str


def exit_code(*, abort: Abort | None, stop_reason: str | None, thresholds_failed: bool,
              failed: int) -> ExitCode:
    """The run's exit code: an abort, else a signal, else thresholds, else failed rows."""
    if abort is not None:
        return abort.code
    if stop_reason in SIGNAL_CODES:
        return SIGNAL_CODES[stop_reason]
    if thresholds_failed:
        return ExitCode.THRESHOLD
    return ExitCode.FAILURES if failed else ExitCode.OK


async def drain(requests: AbstractSet[asyncio.Task[None]], *, timeout_s: float | None,
                hard_stop: asyncio.Event) -> None:
    """Waits for in-flight `requests` (all of them, or until `timeout_s` or a hard stop).

    The set shrinks as requests finish (each task removes itself); what is left when this
    returns is for the caller to cancel.
    """
    hard = asyncio.ensure_future(hard_stop.wait())
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    try:
        while requests and not hard.done():
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return
            await asyncio.wait({*requests, hard}, timeout=left,
                               return_when=asyncio.FIRST_COMPLETED)
    finally:
        hard.cancel()
