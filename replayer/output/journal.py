"""The run's journal: what was sent, what the input was, and what a resume must skip.

Three files in the output folder carry a run across a crash:
- results.ndjson and failures.ndjson themselves say which lines are finished;
- `journal.log` gets one line per request, written before the request goes out, naming
  the lines it carries; a line in it but in neither output file was in flight at the
  crash and is sent again, marked as a possible duplicate;
- `run.json` holds the input's fingerprint and the run's state, replaced atomically.
Nothing is ever rewritten per record: resuming reads each file once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from replayer.observe.stats import RunStats
from replayer.output.sinks import FAILURES, RESULTS, write_json_atomic
from replayer.source.read import display_name, is_stream

JOURNAL = "journal.log"
RUN = "run.json"
_EDGE = 1 << 20  # bytes hashed at each end of an input file


class ResumeError(Exception):
    """A resume that cannot go on safely (different input, nothing to resume, stdin)."""


def fingerprint(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Identifies the input: per file its name, size and a hash of its first and last MiB."""
    prints = []
    for path in paths:
        if is_stream(path):
            raise ResumeError(f"{display_name(path)} can be read only once (stdin or a pipe), "
                              "so a run reading it cannot resume")
        size = os.path.getsize(path)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            digest.update(f.read(_EDGE))
            if size > _EDGE:
                f.seek(max(_EDGE, size - _EDGE))
                digest.update(f.read(_EDGE))
        prints.append({"file": display_name(path), "size": size, "sha256_edges": digest.hexdigest()})
    return prints


@dataclass(slots=True)
class LineSet:
    """A set of (file, line number) kept as one bitmap per file: 1M lines cost 125 KB."""

    bits: dict[str, bytearray] = field(default_factory=dict)
    size: int = 0

    def add(self, file: str, line_no: int) -> None:
        """Adds a line."""
        bitmap = self.bits.setdefault(file, bytearray())
        index, bit = divmod(line_no, 8)
        if index >= len(bitmap):
            bitmap.extend(bytes(index - len(bitmap) + 1 + len(bitmap) // 2))
        if not bitmap[index] & (1 << bit):
            bitmap[index] |= 1 << bit
            self.size += 1

    def __contains__(self, key: tuple[str, int]) -> bool:
        file, line_no = key
        bitmap = self.bits.get(file)
        if bitmap is None:
            return False
        index, bit = divmod(line_no, 8)
        return index < len(bitmap) and bool(bitmap[index] & (1 << bit))


@dataclass(slots=True)
class ResumeState:
    """What an earlier run finished, and which unfinished lines it may already have sent."""

    done: LineSet
    sent: LineSet
    prior: RunStats
    duplicate_rows: int = 0  # lines found in the outputs more than once (should stay 0)

    def is_done(self, file: str, line_no: int) -> bool:
        """True when the line already has its row."""
        return (file, line_no) in self.done

    def was_sent(self, file: str, line_no: int) -> bool:
        """True when the line was in flight when the earlier run stopped."""
        return (file, line_no) in self.sent


def repair_torn_tail(path: Path) -> int:
    """Cuts a partly written last line (a kill mid-write); returns the bytes removed."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        keep = _last_newline_end(f, size)
        f.truncate(keep)
        return size - keep


def _last_newline_end(f: BinaryIO, size: int) -> int:
    pos = size
    while pos > 0:
        step = min(1 << 16, pos)
        pos -= step
        f.seek(pos)
        chunk = f.read(step)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            return pos + idx + 1
    return 0


def previous_run(out_dir: Path, paths: Sequence[str]) -> dict[str, Any]:
    """The run.json of the run in `out_dir`, refused unless it read these same inputs."""
    run_file = out_dir / RUN
    if not run_file.exists():
        raise ResumeError(f"{out_dir} holds no run to resume ({RUN} is missing)")
    previous: dict[str, Any] = orjson.loads(run_file.read_bytes())
    if previous.get("inputs") != fingerprint(paths):
        raise ResumeError(
            f"the input differs from the one the run in {out_dir} started with; "
            "resume with the same files in the same order, or start a new --out folder"
        )
    return previous


def load_resume(out_dir: Path, paths: Sequence[str]) -> ResumeState:
    """Reads an earlier run's folder: checks the input, repairs torn rows, collects done lines."""
    previous_run(out_dir, paths)
    state = ResumeState(LineSet(), LineSet(), RunStats())
    for name, status in ((RESULTS, "delivered"), (FAILURES, "failed")):
        path = out_dir / name
        repair_torn_tail(path)
        if path.exists():
            _count_rows(path, status, state)
    journal = out_dir / JOURNAL
    repair_torn_tail(journal)  # else the next entry would be glued to the torn one
    if journal.exists():
        for file, lines in _journal_entries(journal):
            for line_no in lines:
                if not state.is_done(file, line_no):
                    state.sent.add(file, line_no)
    return state


def _count_rows(path: Path, status: str, state: ResumeState) -> None:
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                row = orjson.loads(raw)
                key = (row["file"], row["line"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise ResumeError(
                    f"{path} line {n} is not a row replayer wrote; the folder cannot be resumed"
                ) from None
            if key in state.done:
                state.duplicate_rows += 1
                continue
            state.done.add(*key)
            if status == "delivered":
                state.prior.by_status["delivered"] += 1
            else:
                state.prior.failed(row.get("kind", "unknown"))
            if row.get("possible_duplicate"):
                state.prior.possible_duplicates += 1


def _journal_entries(path: Path) -> Iterable[tuple[str, list[int]]]:
    with open(path, "rb") as f:
        for raw in f:
            try:
                file, lines = orjson.loads(raw)
            except (orjson.JSONDecodeError, ValueError):
                continue  # a torn last entry: its request never went out
            yield file, lines


class Journal:
    """The append-only log of sent lines, and the atomic run.json beside it."""

    def __init__(self, out_dir: Path) -> None:
        self._dir = out_dir
        self._fd = os.open(out_dir / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def sending(self, lines: Sequence[tuple[str, int]]) -> None:
        """Records, before a request goes out, the lines it carries (one write per request)."""
        by_file: dict[str, list[int]] = {}
        for file, line_no in lines:
            by_file.setdefault(file, []).append(line_no)
        os.write(self._fd, b"".join(orjson.dumps([f, ls]) + b"\n" for f, ls in by_file.items()))

    def save_run(self, doc: dict[str, Any]) -> None:
        """Replaces run.json."""
        write_json_atomic(self._dir / RUN, doc)

    def close(self) -> None:
        """Closes the log."""
        os.close(self._fd)
