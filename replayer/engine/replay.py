"""The replay: read -> validate -> lanes -> pace -> send -> classify -> retry or write.

The only module that knows the order of the stages. One TaskGroup owns every task:
the intake (reading and validating), the dispatcher (taking ready lanes, pacing,
starting one task per request), the flusher (outputs reach the disk every few tens of
ms) and the pacer. Shutdown is a path of its own: stop intake, drain in-flight work for
up to the drain timeout, flush every file, save run.json.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import logging
import random
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp

from replayer.config import Settings
from replayer.engine import send
from replayer.engine.classify import Outcome, Verdict, classify
from replayer.engine.health import Health
from replayer.engine.lanes import Lane, Lanes, Take, Work
from replayer.engine.pacing import Clock, Pacer, Pacing, RealClock, ScheduleEnded, SchedulePacer
from replayer.engine.retry import RetryPolicy, parse_retry_after
from replayer.engine.schedule import OriginalPace, parse_rate
from replayer.engine.spill import FileSpill
from replayer.observe import thresholds
from replayer.observe.logs import about, log
from replayer.observe.stats import RunStats
from replayer.observe.thresholds import Observed, any_failed, evaluate, parse_threshold
from replayer.output.journal import Journal, ResumeError, ResumeState, fingerprint
from replayer.output.sinks import (
    FAILURES,
    METRICS,
    REQUESTS,
    RESULTS,
    SUMMARY,
    NdjsonSink,
    failure_row,
    invalid_row,
    result_row,
    write_json_atomic,
)
from replayer.records import RawLine, RecordFailure
from replayer.source.read import ChunkReader, ReadCounts, iter_lines, total_size
from replayer.source.shard import Shard
from replayer.source.validate import parse_line

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_INVALID_KEY = 3
EXIT_INPUT = 4
EXIT_WORKER = 5
EXIT_THRESHOLD = 6
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


FLUSH_INTERVAL_S = 0.05
LOAD_PERCENTILES = (50, 90, 99, 99.9, 99.99)
METRICS_INTERVAL_S = 1.0
MEMORY_CAP = 20_000  # sessions held in memory across all lanes
PACED_MEMORY_CAP = 2_000
SPILL_CAP = 500_000  # sessions waiting on disk before intake pauses


@dataclass(slots=True)
class RunControl:
    """How the outside (signals, the CLI) asks a running replay to stop."""

    stop_reason: str | None = None  # "SIGINT" | "SIGTERM" once asked
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    hard_stop: asyncio.Event = field(default_factory=asyncio.Event)

    def request_stop(self, reason: str) -> None:
        """First call: graceful stop. A second call: stop at once."""
        if self.stopping.is_set():
            self.hard_stop.set()
            return
        self.stop_reason = reason
        self.stopping.set()


@dataclass(slots=True)
class RunReport:
    """What the CLI needs after a run: the exit code and the summary written."""

    exit_code: int
    summary: dict[str, Any]
    out_dir: Path


class Replay:
    """One run's state. Built by `replay()`; tests may build it with a fake clock."""

    def __init__(
        self,
        settings: Settings,
        paths: Sequence[str],
        out_dir: Path,
        *,
        poster: send.Poster,
        url: str,
        auth: bytes,
        clock: Clock,
        rng: random.Random,
        control: RunControl,
        resume: ResumeState | None,
        shard: Shard | None = None,
    ) -> None:
        self.settings = settings
        self.paths = list(paths)
        self.out_dir = out_dir
        self.poster = poster
        self._delivered_status = "dry_run" if settings.dry_run else "delivered"
        self._start_url = f"{url}?action=start"
        self._multi_url = f"{url}?action=multi"
        self._auth = auth
        self.clock = clock
        self.rng = rng
        self.control = control
        self.resume = resume
        self.shard = shard
        self.policy = RetryPolicy(
            max_attempts=settings.max_attempts, base_s=settings.backoff_base_s,
            max_s=settings.backoff_max_s, jitter=settings.backoff_jitter,
        )
        self.stats = RunStats()
        self.counts = ReadCounts()
        self.bytes_total = total_size(self.paths)  # for progress: None for stdin, pipes, .gz
        self._spill = FileSpill(out_dir)
        lane_cap = settings.batch_actions if settings.batch else 16
        self.lanes = Lanes(lane_cap=lane_cap, spill=self._spill)
        self.results = NdjsonSink(out_dir / RESULTS)
        self.failures = NdjsonSink(out_dir / FAILURES)
        self.metrics = NdjsonSink(out_dir / METRICS)
        self.journal = Journal(out_dir)
        self.pacer: Pacing | None = None
        if settings.rate_schedule:
            self.pacer = SchedulePacer(parse_rate(settings.rate_schedule), clock=clock)
        elif settings.rate_per_s and settings.is_load_test():
            # A load test holds a schedule: each request has its time, and after a stall
            # the run catches up as fast as --concurrency allows (as wrk2 does), so the
            # scheduled view shows the stall and no more. Elsewhere --rate is a ceiling.
            self.pacer = SchedulePacer(parse_rate(f"{settings.rate_per_s:.9f}"), clock=clock)
        elif settings.rate_per_s:
            self.pacer = Pacer(settings.rate_per_s, clock=clock)
        self.pace = OriginalPace(settings.speed) if settings.pace == "original" else None
        # A paced run needs little read-ahead; reading 20,000 records at the start would
        # only delay the first requests of the schedule.
        paced = self.pacer is not None or self.pace is not None
        self.memory_cap = PACED_MEMORY_CAP if paced else MEMORY_CAP
        self._pace_origin: tuple[int, float, float] | None = None  # pass, first time, start
        self.thresholds = [parse_threshold(spec) for spec in settings.fail_if]
        self.verdicts: list[thresholds.Verdict] = []
        self.health = Health(window_s=settings.outage_window_s,
                             probe_max_s=settings.outage_probe_max_s, last_ok_s=clock.now())
        self.outages = 0
        self._planned_total = 0.0
        self._in_outage = False
        self.in_flight = 0
        self.retry_waiting = 0
        self.intake_done = False
        self.fatal: Outcome | None = None
        self.input_error: str | None = None
        self._changed = asyncio.Event()  # something the dispatcher may act on
        self._room = asyncio.Event()  # the intake may read on
        self._requests: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self.started_wall = time.time()
        self.started = clock.now()
        self.finished = self.started

    # ---- the run -------------------------------------------------------------------

    async def run(self) -> int:
        """Replays every input line; returns the exit code."""
        reader: ChunkReader | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                reader = ChunkReader(self._lines())
                intake = tg.create_task(self._intake(reader), name="intake")
                dispatch = tg.create_task(self._dispatch(), name="dispatch")
                flusher = tg.create_task(self._flush_often(), name="flusher")
                metrics = tg.create_task(self._metrics_often(), name="metrics")
                pacer = tg.create_task(self.pacer.run(), name="pacer") if self.pacer else None
                timer = (tg.create_task(self._stop_after(self.settings.duration_s))
                         if self.settings.duration_s else None)
                await self._until_done_or_stopped(dispatch)
                reader.stop()
                for task in (intake, dispatch, flusher, metrics, pacer, timer):
                    if task is not None:
                        task.cancel()
                await self._drain()
        finally:
            if reader is not None:
                reader.stop()
            self.finished = self.clock.now()
            self._close_files()
        return self.exit_code()

    def _lines(self) -> Iterator[RawLine]:
        skip = self.resume.is_done if self.resume is not None else None
        lines = iter_lines(
            self.paths, max_line_bytes=self.settings.max_line_bytes, counts=self.counts, skip=skip
        )
        if not self.settings.loop:
            yield from lines
            return
        yield from lines
        for pass_no in itertools.count(2):  # until the duration (or a signal) stops the run
            for raw in iter_lines(self.paths, max_line_bytes=self.settings.max_line_bytes,
                                  counts=self.counts):
                yield dataclasses.replace(raw, pass_no=pass_no)

    async def _until_done_or_stopped(self, dispatch: asyncio.Task[None]) -> None:
        stop = asyncio.ensure_future(self.control.stopping.wait())
        try:
            await asyncio.wait({dispatch, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()

    async def _drain(self) -> None:
        """Lets in-flight requests finish (up to the drain timeout on a stop), then cancels the rest.

        Records still waiting for a retry are left without a row: a resume sends them.
        """
        timeout_s: float | None = None
        if self.fatal is not None or self.control.hard_stop.is_set():
            timeout_s = 0.0
        elif self.control.stopping.is_set():
            timeout_s = self.settings.drain_timeout_s
        hard = asyncio.ensure_future(self.control.hard_stop.wait())
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        try:
            while self._requests and not hard.done():
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    break
                await asyncio.wait(
                    {*self._requests, hard}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            hard.cancel()
            for task in (*self._requests, *self._timers):
                task.cancel()

    # ---- intake ----------------------------------------------------------------------

    async def _intake(self, reader: ChunkReader) -> None:
        allow_unknown = self.settings.allow_unknown_fields
        lanes = self.lanes
        resume = self.resume
        shard = self.shard
        try:
            while (chunk := await reader.next_chunk()) is not None:
                now_s = self.clock.wall()  # for the "not in the future" check on `time`
                for raw in chunk:
                    if shard is not None and not shard.owns(raw.data):
                        continue
                    parsed = parse_line(raw, allow_unknown_fields=allow_unknown, now_s=now_s)
                    if isinstance(parsed, RecordFailure):
                        row = invalid_row(parsed)
                        if raw.pass_no > 1:
                            row["pass"] = raw.pass_no
                        self.failures.write(row)
                        self.stats.failed(parsed.kind)
                        log.info("invalid, not sent (%s): %s", parsed.kind, parsed.message,
                                 extra=about(parsed.file, parsed.line_no,
                                             parsed.user_id or parsed.device_id, parsed.kind))
                        continue
                    if raw.pass_no > 1:
                        suffix = self.settings.loop_suffix.replace("{n}", str(raw.pass_no))
                        parsed = parsed.in_pass(raw.pass_no, suffix)
                    work = Work(parsed)
                    if self.pace is not None and not await self._until_due(work):
                        continue
                    if resume is not None and resume.was_sent(parsed.file, parsed.line_no):
                        work.resent = True
                        self.stats.possible_duplicates += 1
                    lanes.push(work)
                self._changed.set()
                while (lanes.in_memory >= self.memory_cap or lanes.spilled >= SPILL_CAP
                       or self._down()):
                    self._room.clear()
                    await self._room.wait()
        except (OSError, EOFError, zlib.error) as exc:
            self.input_error = f"reading the input failed: {exc}"
        finally:
            self.intake_done = True
            self._changed.set()

    async def _until_due(self, work: Work) -> bool:
        """--pace original: waits until the record's recorded time comes round (scaled by
        speed); False (and a failure row) for a record that has no time."""
        assert self.pace is not None
        s = work.session
        if s.time_s is None:
            self._fail(work, "missing_time", "--pace original needs a time on every record", None)
            return False
        origin = self._pace_origin
        if origin is None or origin[0] != s.pass_no:  # each pass starts its timeline anew
            origin = self._pace_origin = (s.pass_no, s.time_s, self.clock.now())
        work.scheduled_s = origin[2] + self.pace.offset_s(origin[1], s.time_s)
        wait_s = work.scheduled_s - self.clock.now()
        if wait_s > 0:
            self._changed.set()  # what was pushed so far may go while this one waits
            await self.clock.sleep(wait_s)
        return True

    # ---- dispatch --------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()
            if self._down():
                await self._probe_turn()
            take = await self._next_take()
            if take is None:
                self._slots.release()
                return
            planned = await self._planned_time(take)
            if planned is None:
                self._slots.release()
                return
            task = self._tg.create_task(self._send(take, planned))
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)

    async def _planned_time(self, take: Take) -> float | None:
        """When this request was planned to go (after pacing); None when the schedule ended."""
        if self.pacer is None:
            due = [w.scheduled_s for w in take.works if w.scheduled_s is not None]
            return min(due) if due else self.clock.now()
        try:
            return await self.pacer.wait()
        except ScheduleEnded:
            self.control.request_stop("schedule")
            return None

    async def _probe_turn(self) -> None:
        """During an outage: one request at a time, after a growing pause (it is a probe)."""
        while self.in_flight:
            self._changed.clear()
            await self._changed.wait()
        if self._down():
            delay_s = self.health.probe_delay_s()
            log.warning("server unavailable for %.0f s: waiting, next probe in %.1f s",
                        self.clock.now() - self.health.last_ok_s, delay_s)
            await self.clock.sleep(delay_s)

    def _finished_all(self) -> bool:
        return self.intake_done and self.lanes.pending == 0

    async def _next_take(self) -> Take | None:
        s = self.settings
        max_users, max_actions = (s.batch_users, s.batch_actions) if s.batch else (1, 1)
        linger_s = s.batch_linger_ms / 1000.0 if s.batch else 0.0
        while True:
            if self.fatal is not None or self.input_error is not None:
                return None
            if self.lanes.ready_count:
                if linger_s and self.lanes.ready_count < max_users and not self.intake_done:
                    await self._linger(linger_s, max_users)
                take = self.lanes.take(max_users=max_users, max_actions=max_actions)
                if take is not None:
                    return take
            if self._finished_all():
                return None
            self._changed.clear()
            await self._changed.wait()

    async def _linger(self, linger_s: float, max_users: int) -> None:
        """Waits up to `linger_s` for a batch to fill with more users."""
        deadline = self.clock.now() + linger_s
        while self.lanes.ready_count < max_users and not self.intake_done:
            left = deadline - self.clock.now()
            if left <= 0:
                return
            self._changed.clear()
            try:
                async with asyncio.timeout(left):
                    await self._changed.wait()
            except TimeoutError:
                return

    # ---- one request -----------------------------------------------------------------

    async def _send(self, take: Take, planned: float) -> None:
        self.in_flight += 1
        try:
            answers: dict[int, Answer] = {}
            await self._attempt(take.parts, answers, planned)
            if self.fatal is None:
                for lane, works in take.parts:
                    self._settle(lane, works, answers)
        finally:
            self.in_flight -= 1
            self._slots.release()
            self._changed.set()

    async def _attempt(self, parts: Parts, answers: dict[int, Answer], planned: float) -> None:
        """Sends `parts` in one call and records each work's answer in `answers`.

        A call refused as too large (403 on a multi) was ignored as a whole: it costs no
        attempt, and its halves go out one after the other. Works left without an answer
        (after a fatal answer, or behind an earlier half of the same user that must be
        retried first) were not sent; they stay queued, first in their lanes.
        """
        works = [w for _, ws in parts for w in ws]
        for work in works:
            work.attempts += 1
            work.scheduled_s = None  # a retry is timed from when it goes
        self.journal.sending([(w.session.file, w.session.line_no) for w in works])
        if self.settings.batch:
            body = send.multi_body(self._auth, works, now_s=self.clock.wall())
            url = self._multi_url
        else:
            body = send.start_body(self._auth, works[0])
            url = self._start_url
        sent = self.clock.now()
        attempt = await self.poster(url, body, actions=len(works))
        self.stats.request(users=len(parts))
        self.stats.answered(service_ms=attempt.latency_ms,
                            scheduled_ms=(self.clock.now() - planned) * 1000.0,
                            behind_ms=max(0.0, sent - planned) * 1000.0)
        outcomes = classify(attempt, len(works))
        self._note_health(attempt.status)
        verdict = outcomes[0].verdict
        if verdict is Verdict.FATAL:
            self._stop_fatal(outcomes[0])
            return
        if verdict is Verdict.SPLIT:
            for work in works:
                work.attempts -= 1
            for half in _halves(parts):
                await self._attempt(half, answers, planned)
                if self.fatal is not None or (len(parts) == 1 and _may_retry(half, answers)):
                    return  # one user's later actions must not overtake a retry
            return
        retry_after_s = parse_retry_after(attempt.retry_after, now_s=self.clock.wall())
        for work, outcome in zip(works, outcomes, strict=True):
            work.latency_ms = attempt.latency_ms
            answers[id(work)] = Answer(outcome, retry_after_s)

    def _note_health(self, status: int | None) -> None:
        now_s = self.clock.now()
        if status is None or status == 429 or status >= 500:
            self.health.failed(now_s=now_s)
        else:
            self.health.answered(now_s=now_s)
            if self._in_outage:
                self._in_outage = False
                log.warning("server answering again: resuming")
                self._room.set()

    def _down(self) -> bool:
        """Whether the server counts as down now; notes the moment an outage begins."""
        down = self.health.down(now_s=self.clock.now())
        if down and not self._in_outage:
            self._in_outage = True
            self.outages += 1
            log.warning("every request of the last %.0f s failed: pausing intake, probing",
                        self.health.window_s)
        return down

    def _settle(self, lane: Lane, works: tuple[Work, ...], answers: dict[int, Answer]) -> None:
        """Writes the final outcomes of one lane's works; the rest wait for another attempt."""
        final: list[Work] = []
        delay_s = 0.0
        for work in works:
            answer = answers.get(id(work))
            wait_s = 0.0 if answer is None else self._decide(work, answer)
            if wait_s is None:
                final.append(work)
            else:
                delay_s = max(delay_s, wait_s)
        if not self.lanes.settle(lane, works, final):
            self.retry_waiting += 1
            self.stats.retried(sum(1 for w in works if id(w) in answers) - len(final))
            timer = self._tg.create_task(self._release_later(lane, delay_s))
            self._timers.add(timer)
            timer.add_done_callback(self._timers.discard)
        self._room.set()

    def _decide(self, work: Work, answer: Answer) -> float | None:
        """Writes the row of a final outcome and returns None, or returns the retry delay."""
        outcome, retry_after_s = answer
        verdict = outcome.verdict
        if verdict is Verdict.DELIVERED:
            self.results.write(result_row(work, outcome, save_response=self.settings.save_responses,
                                          status=self._delivered_status))
            self.stats.delivered(latency_ms=work.latency_ms)
            self.stats.ambiguous_attempts += work.ambiguous
            if log.isEnabledFor(logging.DEBUG):
                s = work.session
                log.debug("delivered after %d attempt(s)", work.attempts,
                          extra=about(s.file, s.line_no, s.lane))
            return None
        if verdict in (Verdict.SKIPPED, Verdict.REJECTED):
            self._fail(work, outcome.kind, outcome.message, outcome.http_status)
            return None
        if verdict is Verdict.AMBIGUOUS:
            work.ambiguous += 1
            if self.settings.on_ambiguous == "fail":
                message = f"may have been processed ({outcome.kind}: {outcome.message})"
                self._fail(work, "ambiguous", message, outcome.http_status)
                return None
        if self._down():
            # The server is down, not the record: wait for it without using up attempts.
            work.free_attempts += 1
            return 0.0
        counted = work.attempts - work.free_attempts
        delay = self.policy.next_delay(counted, self.rng, retry_after_s=retry_after_s)
        if delay is None:
            message = f"gave up after {work.attempts} attempts: {outcome.message}"
            self._fail(work, outcome.kind, message, outcome.http_status)
        elif log.isEnabledFor(logging.DEBUG):
            s = work.session
            log.debug("retry in %.2f s after %s: %s", delay, outcome.kind, outcome.message,
                      extra=about(s.file, s.line_no, s.lane, outcome.kind))
        return delay

    def _fail(self, work: Work, kind: str, message: str, http_status: int | None) -> None:
        s = work.session
        log.info("failed (%s) after %d attempt(s): %s", kind, work.attempts, message,
                 extra=about(s.file, s.line_no, s.lane, kind))
        self.failures.write(failure_row(work, kind, message, http_status))
        self.stats.failed(kind, latency_ms=work.latency_ms)
        self.stats.ambiguous_attempts += work.ambiguous

    async def _release_later(self, lane: Lane, delay_s: float) -> None:
        """After a retry delay the lane is free again; it held no concurrency slot meanwhile."""
        try:
            await self.clock.sleep(delay_s)
        finally:
            self.retry_waiting -= 1
        self.lanes.release(lane)
        self._changed.set()

    def _stop_fatal(self, outcome: Outcome) -> None:
        if self.fatal is None:
            self.fatal = outcome
        self._changed.set()
        self.control.stopping.set()

    async def _flush_often(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self.results.flush()
            self.failures.flush()

    async def _stop_after(self, duration_s: float) -> None:
        """--duration: a graceful stop, as on SIGTERM, once the time is up."""
        await self.clock.sleep(duration_s)
        log.warning("duration of %.0f s reached: stopping", duration_s)
        self.control.request_stop("duration")

    async def _metrics_often(self) -> None:
        while True:
            await asyncio.sleep(METRICS_INTERVAL_S)
            self.metrics.write(self.metrics_row())
            self.metrics.flush()
            if self.settings.abort_on_fail and self.thresholds:
                verdicts = evaluate(self.thresholds, self.observed())
                failed = [v.text for v in verdicts if v.failed]
                if failed and not self.control.stopping.is_set():
                    log.warning("threshold failed, stopping: %s", "; ".join(failed))
                    self.verdicts = verdicts  # the run ends on these, not on later numbers
                    self.control.request_stop("threshold")

    def observed(self) -> Observed:
        """What the thresholds are checked against."""
        stats = self.stats
        return Observed(
            scheduled=stats.scheduled, service=stats.service, requests=stats.requests,
            records=stats.by_status["delivered"] + stats.by_status["failed"],
            failed=stats.by_status["failed"], elapsed_s=self.clock.now() - self.started,
        )

    def metrics_row(self) -> dict[str, Any]:
        """One row of metrics.ndjson: the interval since the last row, and the state now."""
        window = self.stats.take_window()
        return {
            "t": round(self.clock.wall(), 3),
            "elapsed_s": round(self.clock.now() - self.started, 3),
            "requests": window.requests,
            "delivered": window.delivered,
            "failed": sum(window.failed.values()),
            "failed_by_kind": dict(window.failed),
            "retries": window.retries,
            "latency_ms": window.latency.summary(),
            "latency_buckets_ms": window.latency.buckets_ms(),
            "scheduled_latency_ms": window.scheduled.summary(),
            "planned": self._planned_in_window(),
            "latency_sum_ms": round(window.latency.total, 3),
            "in_flight": self.in_flight,
            "retry_waiting": self.retry_waiting,
            "pending": self.lanes.pending,
            "lines_read": self.counts.lines,
            "bytes_read": self.counts.bytes_read,
            "bytes_total": self.bytes_total,
            "outage": self._in_outage,
        }

    def _planned_in_window(self) -> float | None:
        """Requests the schedule planned since the last metrics row (None when unpaced)."""
        if self.pacer is None:
            return None
        now = self.pacer.planned_by(self.clock.now() - self.started)
        planned, self._planned_total = now - self._planned_total, now
        return round(planned, 2)

    def _close_files(self) -> None:
        self.metrics.write(self.metrics_row())
        self.metrics.close()
        self.results.close()
        self.failures.close()
        self.journal.close()
        self._spill.close()

    # ---- the end ---------------------------------------------------------------------

    def unfinished(self) -> int:
        """Valid records read but without a row (the run stopped before they finished)."""
        return self.lanes.pending

    def exit_code(self) -> int:
        """0 all delivered, 1 some failed, 3 access refused, 4 bad input, 6 a threshold failed,
        130/143 on signals (5, a dead worker, is the parent's: see workers.py)."""
        if self.fatal is not None:
            return EXIT_INVALID_KEY
        if self.input_error is not None:
            return EXIT_INPUT
        if self.control.stop_reason == "SIGINT":
            return EXIT_SIGINT
        if self.control.stop_reason == "SIGTERM":
            return EXIT_SIGTERM
        if self.control.stop_reason != "threshold":
            self.verdicts = evaluate(self.thresholds, self.observed())
        if any_failed(self.verdicts):
            return EXIT_THRESHOLD
        return EXIT_FAILURES if self.stats.by_status["failed"] else EXIT_OK

    def summary(self, exit_code: int, *, resume_command: str | None) -> dict[str, Any]:
        """summary.json: counts, rates, latency, timing, settings (secrets redacted)."""
        stats = self.stats
        prior = self.resume.prior if self.resume is not None else RunStats()
        elapsed_s = max(self.finished - self.started, 1e-9)
        this_run = stats.by_status["delivered"] + stats.by_status["failed"]
        delivered = stats.by_status["delivered"] + prior.by_status["delivered"]
        failed = stats.by_status["failed"] + prior.by_status["failed"]
        doc: dict[str, Any] = {
            "state": self._state(exit_code),
            "exit_code": exit_code,
            "lines_read": self.counts.lines,
            "blank_lines": self.counts.blank_lines,
            "records": delivered + failed,
            "delivered": delivered,
            "failed": failed,
            "unfinished": self.unfinished(),
            "failures_by_kind": dict(sorted((stats.by_kind + prior.by_kind).items())),
            "requests": stats.requests,
            "user_lookups": stats.user_lookups,
            "retries": stats.retries,
            "ambiguous_attempts": stats.ambiguous_attempts,
            "possible_duplicates": stats.possible_duplicates + prior.possible_duplicates,
            "outages": self.outages,
            "records_per_s": round(this_run / elapsed_s, 1),
            "latency_ms": stats.latency_summary(),
            "failed_latency_ms": stats.failed_latency.summary(),
            "latency_histogram_ms": {
                "delivered": stats.latency.buckets_ms(),
                "failed": stats.failed_latency.buckets_ms(),
                "service": stats.service.buckets_ms(),
                "scheduled": stats.scheduled.buckets_ms(),
            },
            # Per request: from the actual send, and from when it was planned to go.
            "request_latency_ms": {
                "service": stats.service.summary(LOAD_PERCENTILES),
                "scheduled": stats.scheduled.summary(LOAD_PERCENTILES),
            },
            "behind_schedule_ms": stats.behind.summary(LOAD_PERCENTILES),
            "started_at": _iso(self.started_wall),
            "ended_at": _iso(self.started_wall + elapsed_s),
            "elapsed_s": round(elapsed_s, 3),
            "settings": self.settings.redacted(),
            "inputs": list(self.paths),
        }
        if self.settings.dry_run:
            doc["dry_run"] = True
        if self.control.stop_reason in ("duration", "schedule", "threshold"):
            doc["stopped_by"] = self.control.stop_reason
        if self.verdicts:
            doc["thresholds"] = [{"threshold": spec, "value": v.value, "failed": v.failed,
                                  "text": v.text}
                                 for spec, v in zip(self.settings.fail_if, self.verdicts,
                                                    strict=True)]
        if self.resume is not None:
            doc["resumed"] = {
                "lines_already_done": self.counts.skipped_done,
                "resent_in_flight": stats.possible_duplicates,
            }
        if self.fatal is not None:
            doc["stopped_because"] = f"{self.fatal.kind}: {self.fatal.message}"
        if self.input_error is not None:
            doc["stopped_because"] = self.input_error
        if resume_command is not None and exit_code not in (EXIT_OK, EXIT_FAILURES,
                                                            EXIT_THRESHOLD):
            doc["resume_with"] = resume_command
        return doc

    def _state(self, exit_code: int) -> str:
        if exit_code in (EXIT_OK, EXIT_FAILURES, EXIT_THRESHOLD):
            return "finished"
        if exit_code in (EXIT_SIGINT, EXIT_SIGTERM):
            return "interrupted"
        return "aborted"


class Answer(NamedTuple):
    """What the server said about one work: the outcome and any Retry-After."""

    outcome: Outcome
    retry_after_s: float | None


Parts = tuple[tuple[Lane, tuple[Work, ...]], ...]


def _may_retry(parts: Parts, answers: dict[int, Answer]) -> bool:
    """True when some work of `parts` has no final answer yet (it may be sent again)."""
    for _, works in parts:
        for work in works:
            answer = answers.get(id(work))
            if answer is None or answer.outcome.verdict in (Verdict.RETRYABLE, Verdict.AMBIGUOUS):
                return True
    return False


def tune_gc() -> None:
    """Collects cycles less often: the run allocates many short-lived objects and few cycles.

    Measured on 30,000 records, --no-batch, 5 paired runs: 14.5% less CPU with the
    same peak memory. `freeze` also keeps start-up objects out of every collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _halves(parts: Parts) -> list[Parts]:
    """Splits a refused multi call in two: by users, or a lone user's actions in order."""
    if len(parts) > 1:
        mid = len(parts) // 2
        return [parts[:mid], parts[mid:]]
    lane, works = parts[0]
    mid = len(works) // 2
    return [((lane, works[:mid]),), ((lane, works[mid:]),)]


def _iso(wall_s: float) -> str:
    return datetime.fromtimestamp(wall_s, UTC).isoformat(timespec="milliseconds")


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
) -> RunReport:
    """Runs one replay against the configured endpoint (starting the embedded emulator if asked)."""
    async with AsyncExitStack() as stack:
        if settings.dry_run:
            dry = send.DryPoster(out_dir / REQUESTS)
            stack.callback(dry.close)
            poster: send.Poster = dry
            # The bodies are built with the key redacted: it is never in them to leak.
            url, auth = settings.endpoint, send.auth_prefix(settings.app_id or "", "[redacted]")
        else:
            endpoint = await open_endpoint(settings, stack)
            connector = aiohttp.TCPConnector(limit=settings.concurrency, limit_per_host=0)
            http = await stack.enter_async_context(aiohttp.ClientSession(
                connector=connector, timeout=send.client_timeout(settings.timeout_s)))
            poster = send.HttpPoster(http)
            url, auth = endpoint.url, send.auth_prefix(endpoint.app_id, endpoint.client_key)
        run = Replay(
            settings, paths, out_dir, poster=poster, url=url, auth=auth,
            clock=clock or RealClock(), rng=rng or random.Random(), control=control,
            resume=resume, shard=shard,
        )
        inputs = fingerprint_or_none(paths)
        run.journal.save_run(_run_doc(inputs, resume_command, state="running",
                                      endpoint=settings.endpoint))
        if on_start is not None:
            on_start(run)
        exit_code = await run.run()
        summary = run.summary(exit_code, resume_command=resume_command)
        write_json_atomic(out_dir / SUMMARY, summary)
        run.journal.save_run(_run_doc(inputs, resume_command, state=summary["state"],
                                      endpoint=settings.endpoint))
        return RunReport(exit_code, summary, out_dir)
    raise AssertionError("unreachable")  # pragma: no cover


def fingerprint_or_none(paths: Sequence[str]) -> list[dict[str, Any]] | None:
    """The input's fingerprint, or None for stdin (such a run cannot resume)."""
    try:
        return fingerprint(paths)
    except ResumeError:
        return None


def _run_doc(
    inputs: list[dict[str, Any]] | None, resume_command: str | None, *, state: str, endpoint: str
) -> dict[str, Any]:
    return {"version": 1, "state": state, "endpoint": endpoint, "inputs": inputs,
            "resume_with": resume_command}


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
