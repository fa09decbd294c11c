"""`--workers N`: N processes, each replaying the users whose stable hash falls in its share.

The parent starts the endpoint (the embedded emulator, if asked), spawns the workers in
their own sessions (so a Ctrl-C reaches the parent once and is forwarded once), hands
each its settings and key over a pipe (handoff.py), waits, and merges their folders
(`workers/I/` under --out) into one results.ndjson, failures.ndjson, metrics.ndjson and
summary.json. A worker dies with its parent (PR_SET_PDEATHSIG), so `kill -9` of the
parent leaves no orphan sending requests. Resume continues each worker's folder; it
needs the same number of workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from replayer.config import Secret, Settings
from replayer.engine.control import RunControl
from replayer.engine.endpoint import open_endpoint
from replayer.engine.rate_control import worker_share
from replayer.engine.replay import RunReport
from replayer.observe.logs import relay
from replayer.output.closing import close_folder
from replayer.output.layout import SUMMARY, USERS_PART, WORKERS_DIR
from replayer.output.live_users import merge_parts
from replayer.output.merge import merge_folders, read_part
from replayer.output.runfile import RunRecord, record_for, write_run
from replayer.output.summary import Layout, RunSummary
from replayer.records import ExitCode
from replayer.source.read import is_stream
from replayer.source.shard import shard_label
from replayer.workers.handoff import Handoff, HandoffPipe, worker_env
from replayer.workers.worker import AT_ONCE, STOP_SIGNALS

# The parent's stop reason -> the signal that asks a worker to stop for the same reason.
_FORWARD = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}


def worker_count(settings: Settings, paths: Sequence[str]) -> int:
    """How many workers to run: the setting (0 = one per CPU); 1 for stdin or a pipe (read once)."""
    # A load test runs in one process: one schedule, one clock, one set of latency views.
    if any(is_stream(p) for p in paths) or settings.is_load_test():
        return 1
    return settings.workers or os.cpu_count() or 1


async def run_workers(
    settings: Settings, paths: Sequence[str], out_dir: Path, count: int, *,
    control: RunControl, resume_command: str | None, record: RunRecord | None = None,
) -> RunReport:
    """Runs `count` worker processes and merges what they wrote into `out_dir`.

    `record` is the run's run.json (checked by the CLI on a resume); each worker's folder
    gets `record.for_worker(i)`.
    """
    started_wall, started = time.time(), time.monotonic()
    if record is None:
        record = record_for(settings, paths, workers=count, resume_with=resume_command,
                            shard=shard_label(settings.shard))
    run_id = record.run_id
    folders = [out_dir / WORKERS_DIR / str(i) for i in range(count)]
    clear_stale(folders)
    async with AsyncExitStack() as stack:
        endpoint = await open_endpoint(settings, stack)
        share = dataclasses.replace(
            settings, endpoint=endpoint.url, app_id=endpoint.app_id, workers=1,
            client_key=Secret(endpoint.client_key),
            concurrency=math.ceil(settings.concurrency / count),
            rate_per_s=settings.rate_per_s / count if settings.rate_per_s else None,
            **worker_share(settings, count),
        )
        write_run(out_dir, record.with_state("running"))
        env = worker_env(os.environ)
        procs = [await _spawn(i, count, folders[i], env,
                              Handoff(share, record.for_worker(i), tuple(paths)),
                              resume=settings.resume) for i in range(count)]
        forward = asyncio.create_task(_forward_signals(control, procs))
        relays = [asyncio.create_task(_relay_stderr(proc)) for proc in procs]
        codes = [await proc.wait() for proc in procs]
        await asyncio.gather(*relays)  # every line a worker wrote, to its end
        forward.cancel()
    # Synchronous from here to the end: a signal now is only noted by the loop's handler,
    # so the merge always completes (the workers are done; nothing is left to stop).
    summary = merge_outputs(out_dir, folders, codes, run_id=run_id, settings=settings,
                            paths=paths, started_wall=started_wall,
                            elapsed_s=time.monotonic() - started, resume_command=resume_command)
    # Each worker wrote its users as a part (a resumed one's tally started from the rows its
    # resume read; clear_stale removed any part of an earlier session): merged, no row is
    # read again.
    parts = [folder / USERS_PART for folder in folders]
    tallied = (functools.partial(merge_parts, parts, rows=summary.delivered + summary.failed)
               if all(p.is_file() for p in parts) else None)
    summary = close_folder(out_dir, summary, record, inputs=paths, tallied=tallied)
    for part in parts:
        part.unlink(missing_ok=True)  # used, or of no use to a later session
    return RunReport(summary.exit_code, summary, out_dir)


def clear_stale(folders: Sequence[Path]) -> None:
    """Creates the workers' folders and removes the summaries and users' parts an earlier
    session left in them."""
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for name in (SUMMARY, SUMMARY + ".tmp", USERS_PART):
            (folder / name).unlink(missing_ok=True)


async def _spawn(index: int, count: int, folder: Path, env: dict[str, str],
                 handoff: Handoff, *,
                 resume: bool) -> asyncio.subprocess.Process:
    """Starts worker `index` with its stop signals blocked (it unblocks them once it can
    handle them) and its hand-off (settings, key, inputs) on an inherited pipe."""
    pipe = HandoffPipe(handoff)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "replayer.workers.main", str(pipe.fd), str(index), str(count),
            str(folder), "resume" if resume else "new",
            env=env, start_new_session=True, stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, pass_fds=(pipe.fd,),
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        pipe.close()


async def _relay_stderr(proc: asyncio.subprocess.Process) -> None:
    """Logs again each line of a worker's stderr (its JSON log lines): on the terminal they
    go above the live display, never into it."""
    assert proc.stderr is not None
    while True:
        try:
            line = await proc.stderr.readline()
        except ValueError:  # a line longer than the stream's buffer: what follows of it
            line = await proc.stderr.read(1 << 16)
        if not line:
            return
        relay(line)


async def _forward_signals(control: RunControl,
                           procs: list[asyncio.subprocess.Process]) -> None:
    """Passes the parent's stop on to every worker, for the same reason; a second as AT_ONCE."""
    await control.stopping.wait()
    _signal_all(procs, _FORWARD.get(control.stop_reason or "", signal.SIGINT))
    await control.hard_stop.wait()
    _signal_all(procs, AT_ONCE)


def _signal_all(procs: list[asyncio.subprocess.Process], signum: int) -> None:
    for proc in procs:
        if proc.returncode is None:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                continue  # it ended meanwhile: its return code tells how


# ---- merging ---------------------------------------------------------------------------


def merge_outputs(
    out_dir: Path, folders: Sequence[Path], codes: Sequence[int], *, run_id: str,
    settings: Settings, paths: Sequence[str], started_wall: float, elapsed_s: float,
    resume_command: str | None,
) -> RunSummary:
    """Writes one set of output files from the workers' folders; returns their summary.

    A worker's summary counts only if it is this invocation's (`run_id`); a worker
    without one died, and the run is WORKER (exit 5), as is any return code that is not
    one of ours (negative: killed by a signal).
    """
    parts = [read_part(folder, run_id=run_id) for folder in folders]
    return merge_folders(
        out_dir, folders, parts, codes=codes, run_id=run_id, settings=settings.redacted(),
        inputs=list(paths), started_wall=started_wall, elapsed_s=elapsed_s,
        resume_with=resume_command, stopped_because=_dead_workers(parts, codes),
        layout=Layout(workers=len(folders), shard=shard_label(settings.shard), per_worker=tuple(
            _per_worker(i, part, code) for i, (part, code) in enumerate(zip(parts, codes,
                                                                            strict=True)))),
    )


def _dead_workers(parts: Sequence[RunSummary | None], codes: Sequence[int]) -> str | None:
    """One sentence on the workers that died or ended in a way nobody can vouch for."""
    dead = [f"worker {i} {_how(code)}" + ("" if part else " before writing its summary")
            for i, (part, code) in enumerate(zip(parts, codes, strict=True))
            if part is None or ExitCode.of_child(code) is ExitCode.WORKER]
    return "; ".join(dead) + "; see its messages above" if dead else None


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _per_worker(index: int, part: RunSummary | None, code: int) -> dict[str, Any]:
    counts = {} if part is None else {
        "records": part.records, "delivered": part.delivered, "failed": part.failed,
        "unfinished": part.unfinished}
    return {"worker": index, "state": part.state if part else "died", "exit_code": code,
            **counts}
