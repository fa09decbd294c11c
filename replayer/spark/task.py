"""What runs on Spark's executors: reading an input file as numbered lines, and replaying one
partition with the engine into its own run folder (DIR/parts/P/).

Imports no pyspark at module level (SparkFiles and TaskContext only inside the task), so
it can be shipped to executors and tested as plain functions. A partition's folder is an
ordinary run folder (rows, journal, run.json): a retried task resumes from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replayer.config import Secret, Settings
from replayer.config.settings import EMBEDDED
from replayer.engine.control import RunControl
from replayer.engine.intake import LineSource
from replayer.engine.replay import Replay, replay
from replayer.output.layout import PARTS_DIR, RUN, SUMMARY
from replayer.output.resume import read_resume
from replayer.output.runfile import ResumeError, RunRecord
from replayer.records import ExitCode, RawLine
from replayer.source.objects import is_url
from replayer.source.read import ReadCounts, iter_lines, open_source
from replayer.source.shard import owner
from replayer.workers.handoff import Handoff

KEY_ENV = ("LEANPLUM_CLIENT_KEY", "REPLAYER_CLIENT_KEY")
# A record between the stages: ((partition, file index, line no), (bytes, flag)). Line 0
# of a file carries no record: its flag is the file's count of blank lines.
Key = tuple[int, int, int]
Keyed = tuple[Key, tuple[bytes, int]]


def partition_of(key: Key) -> int:
    """The partition a keyed record goes to (its first element: owner() of its user)."""
    return key[0]


def read_file(partitions: int, max_line_bytes: int) -> Callable[[tuple[int, str]], Iterator[Keyed]]:
    """On an executor: one input file (index, path) as keyed records, numbered as
    `replayer run` numbers them (source.read.iter_lines), blank lines counted."""
    def read(item: tuple[int, str]) -> Iterator[Keyed]:
        index, path = item
        counts = ReadCounts()
        for raw in iter_lines([path], max_line_bytes=max_line_bytes, counts=counts):
            yield (owner(raw.data, partitions), index, raw.line_no), (raw.data, int(raw.truncated))
        yield (0, index, 0), (b"", counts.blank_lines)
    return read


def check_readable(item: tuple[int, str]) -> tuple[int, str | None]:
    """On an executor: (index, None) when the file or object can be opened, else (index,
    the reason)."""
    index, path = item
    try:
        with open_source(path) if is_url(path) else open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        return index, exc.strerror or str(exc)
    return index, None


def keyed_rows(partitions: int, max_line_bytes: int
               ) -> Callable[[tuple[str, int]], Keyed]:
    """A DataFrame row as JSON (from toJSON) and its index as a keyed record of line index+1."""
    def key(item: tuple[str, int]) -> Keyed:
        text, row_index = item
        data = text.encode("utf-8", "surrogatepass")
        truncated = len(data) > max_line_bytes
        data = data[:max_line_bytes] if truncated else data
        return (owner(data, partitions), 0, row_index + 1), (data, int(truncated))
    return key


def lines_of(rows: Iterable[Keyed], names: tuple[str, ...]) -> LineSource:
    """A partition's sorted records as the engine's lines (counts kept as read_lines does)."""
    def source(counts: ReadCounts, skip: Callable[[str, int], bool] | None) -> Iterator[RawLine]:
        for (_, index, line_no), (data, flag) in rows:
            if line_no == 0:
                counts.lines += flag
                counts.blank_lines += flag
                continue
            counts.lines += 1
            counts.bytes_read += len(data) + 1
            name = names[index]
            if skip is not None and skip(name, line_no):
                counts.skipped_done += 1
                continue
            yield RawLine(name, line_no, data, bool(flag))
    return source


@dataclass(frozen=True, slots=True)
class PartJob:
    """What each partition's task is given (pickled to executors): never the key itself.

    `key_from` says where the executor finds the key: "none" (embedded), "env"
    (LEANPLUM_CLIENT_KEY in its own environment), "env-if-set" (a dry run: the key only
    masks its own text in the rows) or "file:NAME" (a SparkFiles file).
    """

    settings: bytes  # a Handoff of the settings without the key (workers.handoff)
    key_from: str
    out_dir: str
    names: tuple[str, ...]
    exit_after_requests: int | None = None  # test hook: partition 0's first attempts die
    exit_attempts: int = 1  # ...this many of them


@dataclass(frozen=True, slots=True)
class PartResult:
    """One partition's end: its exit code, and a sentence when it could not start."""

    index: int
    exit_code: int
    problem: str | None = None


def _key(key_from: str) -> str | None | PartResult:
    if key_from == "none":
        return None
    if key_from.startswith("file:"):
        from pyspark import SparkFiles

        try:
            return Path(SparkFiles.get(key_from[5:])).read_text().strip()
        except OSError as exc:
            return PartResult(-1, ExitCode.USAGE, f"the key file cannot be read on an executor: "
                                                   f"{exc.strerror}")
    for name in KEY_ENV:
        if os.environ.get(name):
            return os.environ[name]
    if key_from == "env-if-set":
        return None
    return PartResult(-1, ExitCode.USAGE,
                      "no client key on the executor: set LEANPLUM_CLIENT_KEY in the executors' "
                      "environment, or give --client-key-file (sent with SparkFiles)")


def part_settings(job: PartJob, folder: Path) -> tuple[Settings, RunRecord] | PartResult:
    """The partition's settings (its key from where `key_from` says) and run.json."""
    handoff = Handoff.decode(job.settings)
    key = _key(job.key_from)
    if isinstance(key, PartResult):
        return key
    settings = dataclasses.replace(handoff.settings, out_dir=folder, workers=1,
                                   client_key=Secret(key) if key else None)
    if settings.endpoint != EMBEDDED and not settings.dry_run and key is None:
        return PartResult(-1, ExitCode.USAGE, "no client key for the executors")
    return settings, handoff.record


def run_part(job: PartJob) -> Callable[[int, Iterable[Keyed]], Iterable[PartResult]]:
    """On an executor: replays partition `index`'s records into DIR/parts/index/."""
    def run(index: int, rows: Iterable[Keyed]) -> Iterator[PartResult]:
        folder = Path(job.out_dir) / PARTS_DIR / str(index)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SUMMARY).unlink(missing_ok=True)  # an earlier attempt's: not this one's
        made = part_settings(job, folder)
        if isinstance(made, PartResult):
            yield dataclasses.replace(made, index=index)
            return
        settings, driver_record = made
        record = driver_record.for_worker(index)
        try:
            resume = read_resume(folder, record) if (folder / RUN).exists() else None
        except ResumeError as exc:
            yield PartResult(index, ExitCode.USAGE, str(exc))
            return
        report = asyncio.run(replay(
            settings, list(job.names), folder, control=RunControl(), resume=resume,
            record=record, lines=lines_of(rows, job.names), on_start=_hook(job, index)))
        yield PartResult(index, report.exit_code)
    return run


def _hook(job: PartJob, index: int) -> Callable[[Replay], None] | None:
    """The test hook: the first `exit_attempts` attempts of partition 0 exit the process after
    N requests (as a killed executor would)."""
    limit = job.exit_after_requests
    if limit is None or index != 0:
        return None
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None or context.attemptNumber() >= job.exit_attempts:
        return None

    def start(run: Replay) -> None:
        async def watch() -> None:
            while run.stats.requests < limit:
                await asyncio.sleep(0.001)
            os._exit(1)  # as a killed executor would: no flush, no summary

        _tasks.append(asyncio.get_running_loop().create_task(watch()))
    return start


_tasks: list[asyncio.Task[None]] = []  # the hook's task, kept referenced while it runs


def encode_settings(settings: Settings, record: RunRecord) -> bytes:
    """The settings for the executors, the key taken out (it reaches them another way)."""
    return Handoff(dataclasses.replace(settings, client_key=None), record).encode()


def describe(results: Iterable[PartResult]) -> dict[str, Any]:
    """The partitions' exit codes and problems, for the driver's messages."""
    found = list(results)
    return {"codes": [r.exit_code for r in found],
            "problems": [f"partition {r.index}: {r.problem}" for r in found if r.problem]}
