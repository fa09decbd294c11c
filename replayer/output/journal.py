"""The run's journal: one line per request, written before it goes out, naming its lines.

Three files in the output folder carry a run across a crash:
- results.ndjson and failures.ndjson themselves say which lines are finished;
- `journal.log` (this module) names the lines of every request; a line in it but in
  neither output file was in flight at the crash and is sent again, marked as a possible
  duplicate;
- `run.json` (output/runfile.py) says what the run was, replaced atomically.
What a resume reads back, and how it is validated, is output/resume.py.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from replayer.output.layout import JOURNAL, RUN
from replayer.output.resume import (
    UNSENT,
    LineSet,
    ResumeState,
    line_limits,
    read_folder,
    read_resume,
    repair_torn_tail,
)
from replayer.output.runfile import (
    ResumeError,
    RunRecord,
    check_resume,
    fingerprints,
    write_run,
)
from replayer.output.sinks import open_append, write_all, write_json_atomic

__all__ = [
    "JOURNAL", "RUN", "Journal", "LineSet", "ResumeError", "ResumeState", "check_resume",
    "fingerprint", "load_resume", "previous_run", "read_resume", "repair_torn_tail",
]


def fingerprint(paths: Sequence[str]) -> list[dict[str, Any]]:
    """The inputs' fingerprints as run.json stores them (see runfile.fingerprints)."""
    return [p.to_doc() for p in fingerprints(paths)]


def previous_run(out_dir: Path, paths: Sequence[str]) -> dict[str, Any]:
    """The run.json of the run in `out_dir` as a dict, refused unless it read these inputs.

    Kept for callers not yet on `check_resume`; reads the older run.json shape too.
    """
    run_file = out_dir / RUN
    try:
        previous = orjson.loads(run_file.read_bytes())
    except FileNotFoundError:
        raise ResumeError(f"{out_dir} holds no run to resume ({RUN} is missing)") from None
    except orjson.JSONDecodeError as exc:
        raise ResumeError(f"{run_file}: not valid JSON ({exc}); the folder cannot be resumed; "
                          "start a new --out") from None
    if not isinstance(previous, dict):
        raise ResumeError(f"{run_file}: not a JSON object; the folder cannot be resumed; "
                          "start a new --out")
    if previous.get("inputs") != fingerprint(paths):
        raise ResumeError(
            f"the input differs from the one the run in {out_dir} started with; "
            "resume with the same files in the same order, or start a new --out folder"
        )
    return previous


def load_resume(out_dir: Path, paths: Sequence[str]) -> ResumeState:
    """Reads an earlier run's folder: checks the input, repairs torn rows, validates and
    collects done lines (the older entry point; `read_resume` checks the whole RunRecord)."""
    previous_run(out_dir, paths)
    return read_folder(out_dir, line_limits(fingerprints(paths)))


class Journal:
    """The append-only log of sent lines, and the atomic run.json beside it."""

    def __init__(self, out_dir: Path) -> None:
        self._dir = out_dir
        self._path = out_dir / JOURNAL
        self._fd = open_append(self._path)

    def sending(self, lines: Sequence[tuple[str, int]]) -> None:
        """Records, before a request goes out, the lines it carries (one write per request)."""
        self._write(lines, ())

    def never_left(self, lines: Sequence[tuple[str, int]]) -> None:
        """Records that the request of `lines` never reached the server (no connection was
        made): a resume sends them again without the possible-duplicate mark."""
        if lines:
            self._write(lines, (UNSENT,))

    def _write(self, lines: Sequence[tuple[str, int]], tail: tuple[str, ...]) -> None:
        if len(lines) == 1:  # --no-batch: one line per request, the same bytes
            file, line_no = lines[0]
            write_all(self._fd, orjson.dumps([file, [line_no], *tail]) + b"\n", self._path)
            return
        by_file: dict[str, list[int]] = {}
        for file, line_no in lines:
            by_file.setdefault(file, []).append(line_no)
        write_all(self._fd, b"".join(orjson.dumps([f, ls, *tail]) + b"\n"
                                     for f, ls in by_file.items()), self._path)

    def save_run(self, record: RunRecord | dict[str, Any]) -> None:
        """Replaces run.json (a dict is the older shape, until every caller builds a RunRecord)."""
        if isinstance(record, RunRecord):
            write_run(self._dir, record)
        else:
            write_json_atomic(self._dir / RUN, record)

    def close(self) -> None:
        """Closes the log."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

