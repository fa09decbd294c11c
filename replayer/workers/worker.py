"""One worker process of `--workers N`: its signals, its hand-off, its share of the replay.

argv (from the parent, see parent.py): HANDOFF_FD INDEX COUNT FOLDER new|resume
The settings, the client key, the run id and the inputs come over the inherited pipe
HANDOFF_FD (an input may be a signed URL: argv is readable by anyone).
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from replayer.engine.control import RunControl
from replayer.engine.replay import replay, tune_gc
from replayer.observe.logs import setup_logging
from replayer.output.layout import RUN
from replayer.output.live_users import LiveUsers
from replayer.output.resume import read_resume, retry_kinds
from replayer.records import ExitCode
from replayer.source.shard import Shard, parse_shard
from replayer.workers.handoff import Handoff, receive

# The parent's "stop at once" (after a first stop): a signal of its own, since two of the
# same signal sent back to back can merge into one pending signal.
AT_ONCE = signal.SIGUSR1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, AT_ONCE)
_NAMED = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def die_with_parent() -> None:
    """Asks Linux to SIGKILL this process when its parent dies (no orphans after kill -9)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: a kill -9 of the parent may leave workers finishing their share
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(int(ExitCode.WORKER))


@dataclass(slots=True)
class StopSignals:
    """Turns the parent's signals into stop requests, whatever order they are handled in.

    The parent sends the named signal (its stop reason) and then, for a second stop,
    AT_ONCE; both pending, Linux hands over the lower number (SIGUSR1) first. An AT_ONCE
    seen first stops at once with a stand-in reason that the named signal then replaces.
    """

    control: RunControl
    stand_in: bool = False

    def on(self, signum: int) -> None:
        """Handles one signal of STOP_SIGNALS."""
        control = self.control
        if signum == AT_ONCE:
            if not control.stopping.is_set():
                control.request_stop("SIGINT")
                self.stand_in = True
            control.hard_stop.set()
            return
        name = _NAMED[signal.Signals(signum)]
        if self.stand_in:
            self.stand_in = False
            control.stop_reason = name
            return
        control.request_stop(name)


async def _work(handoff: Handoff, index: int, count: int, folder: Path, resume: bool,
                early_signals: list[int]) -> int:
    stops = StopSignals(RunControl())
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stops.on, signum)
    # Blocked by main() while the loop was made; pending ones arrive now, at the handlers.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    for early in early_signals:
        stops.on(early)
    settings = dataclasses.replace(handoff.settings, out_dir=folder)
    # JSON lines to the parent, which logs them again in the run's format and limits.
    setup_logging(fmt="json", level=settings.log_level, quiet=settings.quiet, limit=False)
    record = handoff.record
    shard = _share(settings.shard, index, count)
    # Its part of users.ndjson starts from the rows the resume reads (see replay()).
    users = (LiveUsers(handoff.paths, spill_dir=folder, owns=shard.holds_key)
             if resume and (folder / RUN).exists() else None)
    try:
        state = (read_resume(folder, record, retry=retry_kinds(settings), users=users)
                 if users is not None else None)
        report = await replay(settings, handoff.paths, folder, control=stops.control,
                              resume=state, shard=shard, record=record)
    finally:
        if users is not None:
            users.discard()  # its spills, unless written
    # From here to exit a signal would only kill a worker that has done its work (the
    # loop's teardown puts the default actions back): keep them pending until exit.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    return report.exit_code


def _share(run_shard: str | None, index: int, count: int) -> Shard:
    """Worker `index` of `count`: of the whole input, or of the run's --shard."""
    return (parse_shard(run_shard).within(index, count) if run_shard is not None
            else Shard(index, count))


def main(argv: list[str], *, early_signals: list[int]) -> int:
    """One worker: HANDOFF_FD INDEX COUNT FOLDER new|resume; returns its exit code."""
    fd, index, count, folder, mode = argv
    tune_gc()
    handoff = receive(int(fd))
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # until _work's handlers are set
    # Python's own loop: with uvloop a worker's signals at start-up went astray (tests in
    # tests/test_workers.py); the workers' share of the CPU is the records, not the loop.
    with asyncio.Runner() as runner:
        return runner.run(_work(handoff, int(index), int(count), Path(folder),
                                mode == "resume", early_signals))
