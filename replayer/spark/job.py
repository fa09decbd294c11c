"""The driver of `replayer spark`: read the inputs with Spark, shuffle by user, replay each
partition with the engine on the executors, then merge DIR/parts/* into DIR.

Speculative execution is off (a speculative copy of a task would send its records twice).
Every partition's folder resumes from its journal, so a retried task loses nothing and
the same command run again after a failed job continues it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from replayer.config import Settings
from replayer.config.settings import EMBEDDED
from replayer.output.closing import close_folder
from replayer.output.layout import PARTS_DIR
from replayer.output.merge import merge_folders, read_part
from replayer.output.runfile import (
    InputPrint,
    Layout,
    ResumeError,
    RunRecord,
    check_resume,
    check_writer,
    fingerprints,
    read_run,
    write_run,
)
from replayer.output.summary import Layout as SummaryLayout
from replayer.output.summary import RunSummary
from replayer.records import ExitCode
from replayer.source.objects import is_url
from replayer.spark import task

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext
    from pyspark.sql import DataFrame, SparkSession

SPECULATION_NOTE = ("speculative execution is off for this job (spark.speculation=false): a "
                    "speculative copy of a task would send its records twice")
DATAFRAME = "<dataframe>"
T = TypeVar("T")


class SparkJobError(Exception):
    """The job cannot start or did not end (the message says why; `code` is the exit code)."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Source:
    """What the job reads: input files (names as given), or a DataFrame of start records."""

    names: tuple[str, ...]
    prints: tuple[InputPrint, ...]
    keyed: Callable[[SparkContext, int, int], RDD[task.Keyed]]
    check: Callable[[SparkContext], list[str]]  # sentences on unreadable inputs


def file_source(paths: Sequence[str]) -> Source:
    """The input files or objects (URLs, globs already expanded): their names as given (as
    rows name them), read on the executors."""
    names = tuple(paths)
    absolute = [p if is_url(p) else str(Path(p).absolute()) for p in paths]
    try:
        prints = fingerprints(paths)
    except (OSError, ResumeError) as exc:
        raise SparkJobError(f"cannot read the input on the driver: {exc}", ExitCode.INPUT) from None

    def keyed(sc: SparkContext, partitions: int, max_line_bytes: int) -> RDD[task.Keyed]:
        items = list(enumerate(absolute))
        return sc.parallelize(items, len(items)).flatMap(task.read_file(partitions,
                                                                        max_line_bytes))

    def check(sc: SparkContext) -> list[str]:
        items = list(enumerate(absolute))
        found = sc.parallelize(items, len(items)).map(task.check_readable).collect()
        return [f"the executors cannot read {names[i]}: {why}" for i, why in found if why]

    return Source(names, prints, keyed, check)


def frame_source(df: DataFrame) -> Source:
    """A DataFrame whose rows are start records: named <dataframe>, line = row index + 1."""
    text: RDD[str] = df.toJSON()  # type: ignore[assignment]  # toJSON() is an RDD of str
    rows = text.zipWithIndex().cache()
    count = rows.count()
    prints = (InputPrint(DATAFRAME, count, f"rows:{count}"),)

    def keyed(sc: SparkContext, partitions: int, max_line_bytes: int) -> RDD[task.Keyed]:
        return rows.map(task.keyed_rows(partitions, max_line_bytes))

    return Source((DATAFRAME,), prints, keyed, lambda sc: [])


def start_session(master: str | None, *, app_name: str = "replayer") -> SparkSession:
    """A SparkSession with speculation off; `local[N]` gets retries (local[N,4]); local
    executors run this Python (where replayer is installed) unless PYSPARK_PYTHON says."""
    from pyspark.sql import SparkSession

    if master is None or master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    builder = (SparkSession.Builder().appName(app_name).config("spark.speculation", "false")
               .config("spark.ui.showConsoleProgress", "false"))
    if master is not None:
        builder = builder.master(with_retries(master))
    return builder.getOrCreate()


def with_retries(master: str) -> str:
    """local[N] and local[*] retry no failed task; local[N,4] retries like a cluster does."""
    if master.startswith("local[") and master.endswith("]") and "," not in master:
        return f"{master[:-1]},4]"
    return "local[*,4]" if master == "local" else master


def run_job(spark: SparkSession, source: Source, settings: Settings, out_dir: Path, *,
            partitions: int | None = None, exit_after_requests: int | None = None,
            exit_attempts: int = 1, say: Callable[[str], None] = print) -> RunSummary:
    """Replays `source` into out_dir (parts in out_dir/parts/P/); the merged summary."""
    sc = spark.sparkContext
    if sc.getConf().get("spark.speculation", "false").lower() == "true":
        raise SparkJobError("spark.speculation is on in this session: a speculative copy of a "
                            "task would send its records twice; start one with it off",
                            ExitCode.USAGE)
    say(SPECULATION_NOTE)
    started_wall, started = time.time(), time.monotonic()
    try:
        check_writer(out_dir, "spark")  # a `replayer run` folder is not a job to resume
    except ResumeError as exc:
        raise SparkJobError(str(exc), ExitCode.USAGE) from None
    count = _partitions(out_dir, partitions, sc.defaultParallelism)
    record = RunRecord(state="running", endpoint=settings.endpoint, dry_run=settings.dry_run,
                       loop=False, inputs=source.prints, layout=Layout(workers=count),
                       writer="spark")
    _check_previous(out_dir, record)
    problems = _on_spark(lambda: source.check(sc))
    if problems:
        raise SparkJobError("; ".join(problems) + "; nothing was sent", ExitCode.INPUT)
    at_once = max(1, min(count, sc.defaultParallelism))
    share = dataclasses.replace(settings, rate_per_s=settings.rate_per_s / at_once
                                if settings.rate_per_s else None)
    if settings.rate_per_s:
        say(f"--rate {settings.rate_per_s:g} is shared by the {at_once} partitions that run at "
            f"once: {share.rate_per_s:g}/s each")
    job = task.PartJob(task.encode_settings(share, record), _key_from(sc, settings),
                       str(out_dir.absolute()), source.names, exit_after_requests,
                       exit_attempts)
    write_run(out_dir, record)
    results = _replay(source.keyed(sc, count, settings.max_line_bytes), count, job)
    folders = [out_dir / PARTS_DIR / str(i) for i in range(count)]
    return _merge(out_dir, folders, results, record, settings, source,
                  started_wall=started_wall, elapsed_s=time.monotonic() - started)


def _partitions(out_dir: Path, given: int | None, default: int) -> int:
    if (out_dir / "run.json").exists():
        try:
            previous = read_run(out_dir).layout.workers
        except ResumeError as exc:
            raise SparkJobError(str(exc), ExitCode.USAGE) from None
        if given is not None and given != previous:
            raise SparkJobError(f"{out_dir} holds a job of {previous} partitions: resume it "
                                f"with --partitions {previous} (users are shared out by "
                                "partition count), or use another --out", ExitCode.USAGE)
        return previous
    return given or default


def _check_previous(out_dir: Path, record: RunRecord) -> None:
    if (out_dir / "run.json").exists():
        try:
            check_resume(out_dir, record)
        except ResumeError as exc:
            raise SparkJobError(str(exc), ExitCode.USAGE) from None


def _key_from(sc: SparkContext, settings: Settings) -> str:
    """Where executors find the key: never in the job's data, its argv or its log. A dry
    run sends nothing, but its tasks still mask the key's text in the rows they write."""
    if settings.endpoint == EMBEDDED:
        return "none"
    if settings.client_key_file is not None:
        sc.addFile(str(settings.client_key_file.absolute()))
        return f"file:{settings.client_key_file.name}"
    return "env-if-set" if settings.dry_run else "env"


def _replay(keyed: RDD[task.Keyed], count: int, job: task.PartJob) -> list[task.PartResult]:
    shuffled = keyed.repartitionAndSortWithinPartitions(count, task.partition_of)
    return _on_spark(lambda: shuffled.mapPartitionsWithIndex(task.run_part(job)).collect())


def _on_spark(action: Callable[[], list[T]]) -> list[T]:
    """Runs a Spark action; a failed job as SparkJobError (its first line, no traceback)."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    try:
        return action()
    except (Py4JJavaError, PySparkException) as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        first = (lines[-1] if lines else type(exc).__name__)[:300]
        raise SparkJobError(f"the Spark job failed ({first}); every partition keeps its "
                            "journal: run the same command again to resume it",
                            ExitCode.WORKER) from None


def _merge(out_dir: Path, folders: list[Path], results: list[task.PartResult],
           record: RunRecord, settings: Settings, source: Source, *, started_wall: float,
           elapsed_s: float) -> RunSummary:
    found = task.describe(results)
    parts = [read_part(folder, run_id=record.run_id) for folder in folders]
    summary = merge_folders(
        out_dir, folders, parts, codes=found["codes"], run_id=record.run_id,
        settings=settings.redacted(), inputs=list(source.names), started_wall=started_wall,
        elapsed_s=elapsed_s, resume_with=None,
        stopped_because="; ".join(found["problems"]) or None,
        layout=SummaryLayout(workers=len(folders), per_worker=tuple(
            _per_part(i, p) for i, p in enumerate(parts))))
    # Each partition read only its own users' lines: the input's lines are their sum.
    present = [p for p in parts if p is not None]
    summary = dataclasses.replace(summary, lines_read=sum(p.lines_read for p in present),
                                  blank_lines=sum(p.blank_lines for p in present))
    return close_folder(out_dir, summary, record, inputs=list(source.names))


def _per_part(index: int, part: RunSummary | None) -> dict[str, Any]:
    counts = {} if part is None else {"records": part.records, "delivered": part.delivered,
                                      "failed": part.failed}
    return {"partition": index, "state": part.state if part else "died", **counts}
