"""The replay: wires the stages (intake -> lanes -> dispatch -> attempt -> settle -> rows).

The only module that knows the order of the stages. One TaskGroup owns every task: the
intake, the dispatcher (and each request it starts), the monitor's loops and the pacer.
Shutdown is a path of its own: stop intake, drain in-flight work for up to the drain
timeout, flush every file, write summary.json and run.json.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from replayer.config import Settings
from replayer.engine import send
from replayer.engine.attempt import Attempter
from replayer.engine.control import PLANNED_STOPS, Abort, RunControl, drain, exit_code
from replayer.engine.decide import Rules
from replayer.engine.dispatch import AutoRateFeed, Batching, Dispatcher
from replayer.engine.endpoint import open_endpoint, open_poster
from replayer.engine.finish import Finisher
from replayer.engine.flow import Flow
from replayer.engine.intake import Intake, LineSource, Reading, input_lines, lane_cap
from replayer.engine.lanes import Lanes
from replayer.engine.monitor import Monitor
from replayer.engine.outage import Outage
from replayer.engine.pacing import Clock, Pacer, Pacing, RealClock, SchedulePacer
from replayer.engine.rate_control import RateController, auto_rate_of
from replayer.engine.retry import RetryPolicy
from replayer.engine.schedule import parse_rate
from replayer.engine.settle import Settler
from replayer.engine.spill import FileSpill
from replayer.engine.stats import RunStats
from replayer.observe.logs import log
from replayer.observe.thresholds import any_failed
from replayer.output import summary as run_summary
from replayer.output.closing import close_folder
from replayer.output.journal import Journal, ResumeState
from replayer.output.layout import FAILURES, METRICS, REQUESTS, RESULTS
from replayer.output.live_users import LiveUsers
from replayer.output.resume import PriorRows
from replayer.output.runfile import RunRecord, record_for
from replayer.output.sinks import NdjsonSink, OutputError
from replayer.output.summary import Counts, RunSummary
from replayer.records import ExitCode, KeyText
from replayer.source.read import ChunkReader, ReadCounts, total_size
from replayer.source.shard import Shard


@dataclass(frozen=True, slots=True)
class RunReport:
    """What the CLI needs after a run: the exit code and the summary written."""

    exit_code: int
    summary: RunSummary
    out_dir: Path


def pacer_for(settings: Settings, clock: Clock) -> Pacing | None:
    """The pacer --rate asks for: a schedule's, a load test's constant one, a ceiling, or
    one whose rate the --rate auto controller sets (starting at its start rate)."""
    auto = auto_rate_of(settings)
    if auto is not None:
        return Pacer(auto.start_per_s, clock=clock)
    if settings.rate_schedule:
        return SchedulePacer(parse_rate(settings.rate_schedule), clock=clock)
    if settings.rate_per_s and settings.holds_schedule():
        # A load test holds a schedule: each request has its time, and after a stall the
        # run catches up as fast as --concurrency allows (as wrk2 does). Elsewhere --rate
        # is a ceiling.
        return SchedulePacer(parse_rate(f"{settings.rate_per_s:.9f}"), clock=clock)
    if settings.rate_per_s:
        return Pacer(settings.rate_per_s, clock=clock)
    return None


def users_tally(reading: Reading, out_dir: Path, *, secret: str | None,
                owns: Callable[[str], bool] | None) -> LiveUsers | None:
    """users.ndjson kept as the rows are written: a fresh run's tally starts empty, a
    resume's from the rows it read (None without one: the end derives the file from all
    the rows). `owns`: a worker's, whose users go to its parent as a part."""
    if reading.resume is None:
        return LiveUsers(reading.paths, key=KeyText(secret), spill_dir=out_dir, owns=owns)
    users = reading.resume.users
    if users is not None:
        users.mask_with(KeyText(secret))
    return users


def rules_for(settings: Settings, *, auto: bool) -> Rules:
    """What the settler decides by: retries, ambiguous answers, throttles (paced with
    --rate auto)."""
    policy = RetryPolicy(max_attempts=settings.max_attempts, base_s=settings.backoff_base_s,
                         max_s=settings.backoff_max_s, jitter=settings.backoff_jitter)
    return Rules(policy, fail_ambiguous=settings.on_ambiguous == "fail",
                 throttle_wait_max_s=settings.throttle_wait_max_s, paced_throttles=auto)


def batching_for(settings: Settings) -> Batching:
    """How many users and actions a request carries (one of each without batching). A
    schedule's requests go when planned, not when the read-ahead is full."""
    if not settings.batch:
        return Batching()
    return Batching(settings.batch_users, settings.batch_actions,
                    settings.batch_linger_ms / 1000.0, fill=not settings.holds_schedule())


class Replay:
    """One process's run: builds the stages, runs them, and says how it ended."""

    def __init__(self, settings: Settings, reading: Reading, out_dir: Path, *,
                 poster: send.Poster, url: str, auth: bytes, clock: Clock,
                 rng: random.Random, control: RunControl, secret: str | None = None,
                 keep_users: bool = True, unpaced: bool = False,
                 owns: Callable[[str], bool] | None = None) -> None:
        self.settings, self.reading, self.out_dir = settings, reading, out_dir
        self.clock, self.control = clock, control
        self.stats, self.counts = RunStats(), ReadCounts()
        self._spill = FileSpill(out_dir)
        self.pacer = pacer_for(settings, clock)
        auto = auto_rate_of(settings)
        self.auto = (AutoRateFeed(RateController(auto, now_s=clock.now()), self.pacer, clock)
                     if auto is not None and isinstance(self.pacer, Pacer) else None)
        paced = self.pacer is not None and self.auto is None
        if unpaced and paced:
            self.pacer = None  # (it still reads ahead as the paced run does)
        lanes = Lanes(lane_cap=lane_cap(settings, paced=paced), spill=self._spill)
        self.flow = flow = Flow(lanes)
        self.results = NdjsonSink(out_dir / RESULTS, secret=secret)
        self.failures = NdjsonSink(out_dir / FAILURES, secret=secret)
        self.metrics = NdjsonSink(out_dir / METRICS)
        self.journal = Journal(out_dir)
        self.outage = Outage(window_s=settings.outage_window_s,
                             probe_max_s=settings.outage_probe_max_s,
                             limit_s=settings.outage_limit_s, clock=clock, flow=flow)
        self.users = (users_tally(reading, out_dir, secret=secret, owns=owns)
                      if keep_users else None)
        finisher = Finisher(results=self.results, failures=self.failures, stats=self.stats,
                            save_responses=settings.save_responses, dry_run=settings.dry_run,
                            users=self.users)
        self.intake = Intake(settings=settings, reading=reading, flow=flow, finisher=finisher,
                             stats=self.stats, outage=self.outage, clock=clock,
                             paced=paced)
        attempter = Attempter(poster=poster, url=url, auth=auth, batch=settings.batch,
                              clock=clock, outage=self.outage,
                              before_send=self.journal.sending,
                              never_left=self.journal.never_left)
        self.settler = Settler(flow=flow, finisher=finisher,
                               rules=rules_for(settings, auto=self.auto is not None),
                               outage=self.outage, clock=clock, rng=rng)
        self.dispatcher = Dispatcher(flow=flow, attempter=attempter, settler=self.settler,
                                     outage=self.outage, pacer=self.pacer, clock=clock,
                                     control=control, batching=batching_for(settings),
                                     concurrency=settings.concurrency, auto=self.auto)
        self.monitor = Monitor(flow=flow, stats=self.stats, counts=self.counts,
                               outage=self.outage, clock=clock,
                               # A ceiling plans no request: metrics.ndjson counts none.
                               pacer=self.pacer if settings.holds_schedule() else None,
                               limits=self.dispatcher.limits, auto=self.auto,
                               control=control, metrics=self.metrics,
                               flushed=(self.results, self.failures),
                               fail_if=settings.fail_if, abort_on_fail=settings.abort_on_fail,
                               prior=reading.resume.prior if reading.resume else None,
                               # --loop reads the input again and again: no end to measure by
                               bytes_total=None if settings.loop else total_size(reading.paths))
        self.started_wall = time.time()
        self.finished_s = clock.now()

    async def run(self) -> ExitCode:
        """Replays every input line; returns the exit code."""
        reader: ChunkReader | None = None
        try:
            reader = ChunkReader(input_lines(self.reading, self.counts))
            await self._run_stages(reader)
        except* OutputError as group:
            self.flow.stop(Abort(ExitCode.OUTPUT, str(group.exceptions[0])))
        finally:
            if reader is not None:
                reader.stop()
            self.finished_s = self.clock.now()
            self._close_files()
        return self.exit_code()

    async def _run_stages(self, reader: ChunkReader) -> None:
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self.intake.run(reader), name="intake"),
                tg.create_task(self.monitor.flush_often(), name="flusher"),
                tg.create_task(self.monitor.metrics_often(), name="metrics"),
            ]
            dispatch = tg.create_task(self.dispatcher.run(tg), name="dispatch")
            if self.pacer is not None:
                tasks.append(tg.create_task(self.pacer.run(), name="pacer"))
            if self.settings.duration_s:
                tasks.append(tg.create_task(self.monitor.stop_after(self.settings.duration_s)))
            stop = tg.create_task(self.control.stopping.wait())
            await asyncio.wait({dispatch, stop}, return_when=asyncio.FIRST_COMPLETED)
            reader.stop()
            for task in (*tasks, dispatch, stop):
                task.cancel()
            await drain(self.dispatcher.requests, timeout_s=self._drain_timeout_s(),
                        hard_stop=self.control.hard_stop)
            # Records still waiting for a retry are left without a row: a resume sends them.
            for task in (*self.dispatcher.requests, *self.settler.timers):
                task.cancel()

    def _drain_timeout_s(self) -> float | None:
        if self.flow.abort is not None or self.control.hard_stop.is_set():
            return 0.0
        return self.settings.drain_timeout_s if self.control.stopping.is_set() else None

    def _close_files(self) -> None:
        """Flushes and closes every file; after an output error, what still can be."""
        closers: list[Callable[[], None]] = [
            self.monitor.write_metrics, self.metrics.close, self.results.close,
            self.failures.close, self.journal.close, self._spill.close]
        for close in closers:
            try:
                close()
            except OutputError as exc:
                self.flow.stop(Abort(ExitCode.OUTPUT, str(exc)))

    def exit_code(self) -> ExitCode:
        """The run's code (control.exit_code); 5 (a dead worker) is the parent's."""
        failed = self.stats.by_status["failed"]
        if self.reading.resume is not None:
            failed += self.reading.resume.prior.by_status["failed"]
        return exit_code(abort=self.flow.abort, stop_reason=self.control.stop_reason,
                         thresholds_failed=any_failed(self.monitor.final_verdicts()),
                         failed=failed)

    def part(self, code: ExitCode, *, run_id: str, resume_command: str | None) -> RunSummary:
        """This process's summary (one part of the run's)."""
        stats, resume = self.stats, self.reading.resume
        prior = resume.prior if resume is not None else PriorRows()
        this_session = stats.by_status["delivered"] + stats.by_status["failed"]
        counts = Counts(
            delivered=stats.by_status["delivered"] + prior.by_status["delivered"],
            failed_by_kind=stats.by_kind + prior.by_kind, unfinished=self.flow.lanes.pending,
            requests=stats.requests, user_lookups=stats.user_lookups, retries=stats.retries,
            ambiguous_attempts=stats.ambiguous_attempts,
            possible_duplicates=stats.possible_duplicates + prior.possible_duplicates,
            outages=self.outage.count, lines_read=self.counts.lines,
            blank_lines=self.counts.blank_lines, records_this_session=this_session,
            throttled=self.dispatcher.limits.total.get("throttled", 0))
        shard = self.reading.shard
        return run_summary.build(
            counts, {"delivered": stats.latency, "failed": stats.failed_latency,
                     "service": stats.service, "scheduled": stats.scheduled,
                     "behind": stats.behind},
            exit_code=code, started_wall=self.started_wall,
            elapsed_s=self.finished_s - self.monitor.started_s,
            settings=self.settings.redacted(), inputs=self.reading.paths, run_id=run_id,
            dry_run=self.settings.dry_run,
            stopped_by=self.control.stop_reason if self.control.stop_reason in PLANNED_STOPS
            else None,
            stopped_because=self.flow.abort.reason if self.flow.abort is not None else None,
            thresholds=self.monitor.verdict_rows(),
            resumed=None if resume is None else {
                "lines_already_done": self.counts.skipped_done,
                "resent_in_flight": stats.possible_duplicates},
            resume_with=resume_command,
            layout=run_summary.Layout(shard=f"{shard.index + 1}/{shard.count}"
                                      if shard is not None and shard.count > 1 else None),
            steady_rate_per_s=self.monitor.steady_rate_per_s(),
        )


def rereadable(reading: Reading) -> bool:
    """The inputs can be read a second time: local files, a single pass, not a resume."""
    return (reading.lines is None and reading.resume is None and not reading.loop
            and all(Path(p).is_file() for p in reading.paths))


async def slow_server_estimate(settings: Settings, reading: Reading, *, control: RunControl,
                               clock: Clock, rng: random.Random) -> dict[str, int] | None:
    """The calls and lookups of a dry run whose answers come one at a time, as from a
    server slower than the reading and than any --rate ceiling: the other end of an
    estimate's range when the input was larger than the read-ahead (which of a user's
    records meet in one call then depends on how answers and reading interleave). Writes
    nothing that stays; None when stopped before its end."""
    with tempfile.TemporaryDirectory(prefix="replayer-estimate-") as folder, _quiet():
        poster = send.DryPoster(os.devnull, slow=True)
        try:
            run = Replay(settings, reading, Path(folder), poster=poster, url=settings.endpoint,
                         auth=send.auth_prefix(settings.app_id or "", "[redacted]"),
                         clock=clock, rng=rng, control=control, keep_users=False,
                         unpaced=True)
            code = await run.run()
        finally:
            poster.close()
        if code.state != "finished":
            return None
        return {"requests": run.stats.requests, "user_lookups": run.stats.user_lookups}


@contextmanager
def _quiet() -> Iterator[None]:
    """Rows of the second pass are not news: its log lines below warnings are dropped."""
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(level)


def tune_gc() -> None:
    """Collects cycles less often: the run allocates many short-lived objects and few cycles.

    Measured on 30,000 records, --no-batch, 5 paired runs: 14.5% less CPU with the
    same peak memory. `freeze` also keeps start-up objects out of every collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def replay(
    settings: Settings,
    paths: Sequence[str],
    out_dir: Path,
    *,
    control: RunControl,
    resume: ResumeState | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    resume_command: str | None = None,
    on_start: Callable[[Replay], None] | None = None,
    shard: Shard | None = None,
    record: RunRecord | None = None,
    lines: LineSource | None = None,
) -> RunReport:
    """Runs one replay against the configured endpoint (starting the embedded emulator if asked).

    `record` is what run.json says of the run (the CLI's, checked against the folder on a
    resume); without one, a record of a single-process run of `paths` is made. `lines`
    replaces reading `paths` (which then only name the inputs): a Spark partition's lines.
    """
    if record is None:
        record = record_for(settings, paths, resume_with=resume_command)
    async with AsyncExitStack() as stack:
        if settings.dry_run:
            secret = settings.client_key.reveal() if settings.client_key is not None else None
            dry = send.DryPoster(out_dir / REQUESTS, key=KeyText(secret))
            stack.callback(dry.close)
            poster: send.Poster = dry
            # The bodies are built with the key redacted: it is never in them to leak.
            url, auth = settings.endpoint, send.auth_prefix(settings.app_id or "", "[redacted]")
        else:
            endpoint = await open_endpoint(settings, stack)
            poster = await open_poster(settings, stack)
            url, auth = endpoint.url, send.auth_prefix(endpoint.app_id, endpoint.client_key)
            secret = endpoint.client_key
        reading = Reading(paths, settings.max_line_bytes, loop=settings.loop, resume=resume,
                          shard=shard, lines=lines)
        # A worker's or a Spark partition's folder gets no users.ndjson; a worker keeps its
        # users all the same, as a part of it that its parent merges.
        single = record.layout.shard is None
        owns = shard.holds_key if not single and shard is not None else None
        run = Replay(settings, reading, out_dir, poster=poster, url=url, auth=auth,
                     clock=clock or RealClock(), rng=rng or random.Random(), control=control,
                     secret=secret, keep_users=single or owns is not None, owns=owns)
        run.journal.save_run(record.with_state("running"))
        if on_start is not None:
            on_start(run)
        code = await run.run()
        part = run.part(code, run_id=record.run_id, resume_command=resume_command)
        if (settings.dry_run and settings.batch and not settings.holds_schedule()
                and run.flow.was_full and rereadable(reading) and code.state == "finished"):
            part = dataclasses.replace(part, estimate_max=await slow_server_estimate(
                settings, reading, control=control, clock=clock or RealClock(),
                rng=rng or random.Random()))
        summary = run_summary.merge(
            [part], expected=1, started_wall=run.started_wall, elapsed_s=part.elapsed_s,
            settings=part.settings, inputs=part.inputs, run_id=record.run_id,
            resume_with=resume_command, layout=part.layout)
        summary = close_folder(out_dir, summary, record, inputs=paths,
                               users=single, live=run.users)
        return RunReport(summary.exit_code, summary, out_dir)
    raise AssertionError("unreachable")  # pragma: no cover
