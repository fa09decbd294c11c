"""One set of outputs from several run folders: workers' (`--workers`), shards' (`replayer
merge`) and Spark partitions' (`replayer spark`) all merge here.

Rows are concatenated (results, failures, requests), metrics merged by second, and the
folders' summaries merged by `summary.merge` (the one summary merge); `close_folder`
then writes users.ndjson from the merged rows, summary.json and run.json.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from replayer.observe.logs import log
from replayer.output import metrics
from replayer.output.layout import FAILURES, METRICS, REQUESTS, RESULTS, SUMMARY
from replayer.output.summary import Layout, RunSummary, SummaryError, decode
from replayer.output.summary import merge as merge_summaries


def read_part(folder: Path, *, run_id: str | None) -> RunSummary | None:
    """The folder's summary.json (if `run_id` is given: only if that invocation wrote it)."""
    path = folder / SUMMARY
    try:
        part = decode(path.read_bytes(), source=str(path))
    except FileNotFoundError:
        return None
    except SummaryError as exc:
        log.warning("not merged: %s", exc)
        return None
    if run_id is not None and part.run_id != run_id:
        log.warning("not merged: %s is from another session (run %s)", path, part.run_id)
        return None
    return part


def combine_rows(out_dir: Path, folders: Sequence[Path]) -> None:
    """Writes out_dir's results, failures, requests and metrics from the folders' own."""
    for name in (RESULTS, FAILURES, REQUESTS):
        if any((f / name).exists() for f in folders):
            _concatenate([f / name for f in folders], out_dir / name)
    skipped = metrics.merge_files([f / METRICS for f in folders], out_dir / METRICS)
    if skipped:
        log.warning("skipped %d unreadable lines of the merged %s", skipped, METRICS)


def merge_folders(
    out_dir: Path, folders: Sequence[Path], parts: Sequence[RunSummary | None], *,
    codes: Sequence[int] = (), run_id: str, settings: dict[str, Any], inputs: Sequence[str],
    started_wall: float, elapsed_s: float, resume_with: str | None, layout: Layout,
    stopped_because: str | None = None,
) -> RunSummary:
    """Combines the folders' rows into `out_dir` and returns their merged summary.

    `parts` are the folders' summaries (None: the folder has none, and the merged run is
    WORKER, exit 5); `codes` are exit statuses seen from outside, folded in.
    """
    combine_rows(out_dir, folders)
    return merge_summaries(
        [p for p in parts if p is not None], expected=len(folders), started_wall=started_wall,
        elapsed_s=elapsed_s, settings=settings, inputs=list(inputs), run_id=run_id,
        extra_codes=codes, stopped_because=stopped_because, resume_with=resume_with,
        layout=layout)


def _concatenate(sources: list[Path], target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as out:
        for source in sources:
            if source.exists():
                with open(source, "rb") as f:
                    while chunk := f.read(1 << 20):
                        out.write(chunk)
    os.replace(tmp, target)
