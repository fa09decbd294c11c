"""`replayer merge DIR... --out DIR [--partial]`: the folders of `--shard I/N` runs as one run.

The shards must be one run cut in N: same inputs (fingerprints), dry run or not, loop,
endpoint and N, each shard given once, none missing, each finished. Anything else is
refused (exit 2) naming the folder and the reason; `--partial` merges what is there and
says what is missing. The exit code is the merged summary's (the worst of the shards').
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from replayer.commands.console import print_summary
from replayer.observe.logs import setup_logging
from replayer.output.closing import close_folder
from replayer.output.layout import OutDirError, prepare_out_dir
from replayer.output.lock import FolderLock
from replayer.output.merge import merge_folders, read_part
from replayer.output.runfile import Layout as RunLayout
from replayer.output.runfile import ResumeError, RunRecord, read_run
from replayer.output.sinks import OutputError
from replayer.output.summary import Layout, RunSummary
from replayer.records import ExitCode


class MergeError(Exception):
    """The folders cannot be merged as one run (the message names the folder and why)."""


@dataclass(frozen=True, slots=True)
class ShardFolder:
    """One shard's folder as read: its run.json, its summary (None: none written), I and N."""

    folder: Path
    record: RunRecord
    summary: RunSummary | None
    index: int  # 1-based, as --shard spells it
    count: int

    @property
    def label(self) -> str:
        """"I/N"."""
        return f"{self.index}/{self.count}"

    def unfinished(self) -> str | None:
        """Why this shard is not finished (None: it is)."""
        if self.summary is None:
            return f"{self.folder} has no summary.json (its run is {self.record.state})"
        if self.summary.state != "finished" or self.record.state != "finished":
            return f"{self.folder} is {self.summary.state} (exit {self.summary.exit_code})"
        return None


@dataclass(frozen=True, slots=True)
class MergePlan:
    """The shards to merge, in shard order, and what a partial merge leaves out."""

    shards: tuple[ShardFolder, ...]
    count: int
    missing: tuple[str, ...]  # "I/N" of shards not given
    unfinished: tuple[str, ...]  # one sentence per unfinished shard

    def gaps(self) -> str | None:
        """One sentence on what the merge lacks (None: nothing)."""
        said = [f"shard {m} is missing" for m in self.missing] + list(self.unfinished)
        return "; ".join(said) if said else None


def read_shard(folder: Path) -> ShardFolder:
    """A shard's folder; MergeError naming it if it is not one."""
    try:
        record = read_run(folder)
    except ResumeError as exc:
        raise MergeError(f"{folder}: not a finished run folder ({exc})") from None
    label = record.layout.run_shard
    if label is None:
        raise MergeError(f"{folder}: not a shard (its run had no --shard)")
    index, _, count = label.partition("/")
    return ShardFolder(folder, record, read_part(folder, run_id=None), int(index), int(count))


def plan(shards: Sequence[ShardFolder], *, partial: bool) -> MergePlan:
    """Checks that the shards are one run cut in N; MergeError with the first problem."""
    first = shards[0]
    seen: dict[int, ShardFolder] = {}
    for shard in shards:
        reason = _differs(first, shard)
        if reason:
            raise MergeError(f"{shard.folder}: {reason} than {first.folder}; shards of one "
                             "run must share inputs and settings")
        twin = seen.get(shard.index)
        if twin is not None:
            same = twin.folder.resolve() == shard.folder.resolve()
            raise MergeError(f"{shard.folder}: shard {shard.label} is given twice"
                             + (" (the same folder)" if same else f" (also {twin.folder})"))
        seen[shard.index] = shard
    missing = tuple(f"{i}/{first.count}" for i in range(1, first.count + 1) if i not in seen)
    unfinished = tuple(u for s in shards if (u := s.unfinished()) is not None)
    if missing and not partial:
        raise MergeError(f"shard(s) {', '.join(missing)} missing: give every folder of the "
                         f"{first.count} shards, or --partial to merge what is there")
    if unfinished and not partial:
        raise MergeError(f"{unfinished[0]}: resume it first (its run.json says how), or "
                         "--partial to merge what is there")
    ordered = tuple(seen[i] for i in sorted(seen))
    return MergePlan(ordered, first.count, missing, unfinished)


def _differs(a: ShardFolder, b: ShardFolder) -> str | None:
    """How b's run differs from a's, in a few words (None: they are shards of one run)."""
    ra, rb = a.record, b.record
    if a.count != b.count:
        return f"it is shard {b.label}, of {b.count} shards, not {a.count}"
    if ra.inputs is None or rb.inputs is None:
        return "it read stdin or a pipe, which cannot be compared"
    if (ra.inputs, ra.input_format) != (rb.inputs, rb.input_format):
        return "it read other inputs (names, sizes or content)"
    if ra.dry_run != rb.dry_run:
        return "it was a dry run" if rb.dry_run else "it was a real run"
    if ra.loop != rb.loop:
        return "its --loop differs"
    if ra.endpoint != rb.endpoint:
        return f"it sent to {rb.endpoint}, not {ra.endpoint}"
    return None


def merge_shards(merge: MergePlan, out_dir: Path) -> RunSummary:
    """Writes the merged outputs into out_dir (locked by the caller); returns the summary."""
    parts = [s.summary for s in merge.shards]
    present = [p for p in parts if p is not None]
    first = merge.shards[0]
    started = min((_wall(p.started_at) for p in present), default=time.time())
    ended = max((_wall(p.ended_at) for p in present), default=started)
    settings: dict[str, Any] = dict(present[0].settings) if present else {}
    settings.update(shard=None, out_dir=str(out_dir))
    gaps = merge.gaps()
    summary = merge_folders(
        out_dir, [s.folder for s in merge.shards], parts,
        codes=[ExitCode.WORKER] if merge.missing else [], run_id=first.record.run_id,
        settings=settings, inputs=present[0].inputs if present else [],
        started_wall=started, elapsed_s=ended - started, resume_with=None,
        stopped_because=f"merged without all shards: {gaps}" if gaps else None,
        layout=Layout(workers=sum(p.layout.workers for p in present) or 1,
                      per_worker=tuple(_per_shard(s) for s in merge.shards)))
    record = RunRecord(state=summary.state, endpoint=first.record.endpoint,
                       dry_run=first.record.dry_run, loop=first.record.loop,
                       inputs=first.record.inputs, layout=RunLayout(workers=1), writer="merge")
    names = [p.file for p in first.record.inputs or ()]
    return close_folder(out_dir, summary, record, inputs=names)


def _per_shard(shard: ShardFolder) -> dict[str, Any]:
    s = shard.summary
    counts = {} if s is None else {"records": s.records, "delivered": s.delivered,
                                   "failed": s.failed, "unfinished": s.unfinished}
    return {"shard": shard.label, "folder": str(shard.folder),
            "state": s.state if s else shard.record.state,
            "exit_code": s.exit_code if s else None, **counts}


def _wall(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return time.time()


_EPILOG = """\b
Example:
  replayer merge runs/shard-1 runs/shard-2 runs/shard-3 --out runs/all

\b
Exit codes:
  0    every record of every shard delivered
  1    some records failed (each is a row of failures.ndjson)
  2    refused: folders that are not the shards of one finished run, or an
       --out that is not new or empty (the folder and the reason are printed)
  3, 4, 6, 8, 129, 143
       a shard's own exit code: the worst of the shards' wins, as in
       `replayer run --help`
  5    with --partial: a shard was missing
  7    an output could not be written (one line says which file and why)
  130  stopped by SIGINT (Ctrl-C), or a shard's code
"""


@click.command("merge", epilog=_EPILOG)
@click.argument("dirs", nargs=-1, required=True, metavar="DIR...",
                type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              required=True, help="The folder for the merged outputs (new or empty).")
@click.option("--partial", is_flag=True,
              help="Merge the shards that are there even if some are missing or unfinished.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def merge(dirs: tuple[Path, ...], out_dir: Path, partial: bool, quiet: bool) -> None:
    """Combine the folders of `replayer run --shard I/N` runs into one set of outputs."""
    setup_logging(fmt="text", level="info", quiet=quiet)
    try:
        merge_plan = plan([read_shard(d) for d in dirs], partial=partial)
        if any(out_dir.resolve() == s.folder.resolve() for s in merge_plan.shards):
            raise MergeError(f"{out_dir}: --out must be a folder of its own, not a shard's")
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = click.get_current_context().with_resource(FolderLock(out_dir))
        prepare_out_dir(lock, resume=False, overwrite=False,
                        choices="give a new or empty folder as --out")
    except (MergeError, OutDirError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(ExitCode.USAGE)
    except OutputError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(ExitCode.OUTPUT)
    if merge_plan.gaps():
        click.echo(f"partial merge of {len(merge_plan.shards)} of {merge_plan.count} shards: "
                   f"{merge_plan.gaps()}", err=True)
    summary = merge_shards(merge_plan, out_dir)
    if not quiet:
        print_summary(summary, out_dir)
    sys.exit(summary.exit_code)
