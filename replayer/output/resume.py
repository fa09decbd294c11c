"""What a resume picks up from an earlier run's folder, every file read once and validated.

A torn last line (a kill mid-write) is cut; any other line replayer did not write ends
the resume with ResumeError("FILE line N: ..."). Line numbers are checked against the
input's size before they are stored, so memory follows the input, never a number read.
With --retry-failed, the failure rows of passing kinds are taken out of failures.ndjson
(replaced at once) and their lines sent again, marked where an earlier try may have landed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from replayer.config import Settings
from replayer.output.layout import FAILURES, JOURNAL, RESULTS, RUN, WORKERS_DIR
from replayer.output.runfile import InputPrint, ResumeError, RunRecord, check_resume
from replayer.output.sinks import OutputError
from replayer.records import TRANSIENT_KINDS, FailureKind

if TYPE_CHECKING:
    from replayer.output.live_users import LiveUsers

_BLOCK_LINES = 1 << 13  # lines per LineSet block (1 KiB of bits)
_KINDS = frozenset(k.value for k in FailureKind)
_HINT = "the folder cannot be resumed; start a new --out"
UNSENT = "unsent"  # a journal entry's mark: that request never reached the server


@dataclass(slots=True)
class LineSet:
    """A set of (file, line number): per file, bitmap blocks of 8192 lines made as needed.

    1M lines cost ~125 KB; a block exists only where a line was added, so memory follows
    the lines added, not the largest number.
    """

    blocks: dict[str, dict[int, bytearray]] = field(default_factory=dict)
    size: int = 0

    def add(self, file: str, line_no: int) -> None:
        """Adds a line."""
        block_no, offset = divmod(line_no, _BLOCK_LINES)
        block = self.blocks.setdefault(file, {}).get(block_no)
        if block is None:
            block = self.blocks[file][block_no] = bytearray(_BLOCK_LINES // 8)
        index, bit = divmod(offset, 8)
        if not block[index] & (1 << bit):
            block[index] |= 1 << bit
            self.size += 1

    def discard(self, file: str, line_no: int) -> None:
        """Removes a line, if it is there."""
        block_no, offset = divmod(line_no, _BLOCK_LINES)
        block = self.blocks.get(file, {}).get(block_no)
        index, bit = divmod(offset, 8)
        if block is not None and block[index] & (1 << bit):
            block[index] &= ~(1 << bit) & 0xFF
            self.size -= 1

    def __contains__(self, key: tuple[str, int]) -> bool:
        file, line_no = key
        block_no, offset = divmod(line_no, _BLOCK_LINES)
        block = self.blocks.get(file, {}).get(block_no)
        if block is None:
            return False
        index, bit = divmod(offset, 8)
        return bool(block[index] & (1 << bit))


@dataclass(slots=True)
class PriorRows:
    """The rows an earlier run wrote, as the summary counts them: by status and failure kind."""

    by_status: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    possible_duplicates: int = 0

    def failed(self, kind: str) -> None:
        """Counts one failure row of `kind`."""
        self.by_status["failed"] += 1
        self.by_kind[kind] += 1


@dataclass(slots=True)
class ResumeState:
    """What an earlier run finished, and which unfinished lines it may already have sent."""

    done: LineSet
    sent: LineSet
    prior: PriorRows
    duplicate_rows: int = 0  # lines found in the outputs more than once (should stay 0)
    # failure rows to send again (--retry-failed): (file, line, whether it may have landed)
    retried: list[tuple[str, int, bool]] = field(default_factory=list)
    drop_failures: bool = False  # failures.ndjson holds rows of a kind sent again
    # users.ndjson's tally of the rows the folder keeps, when one was asked for
    users: LiveUsers | None = None

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


def retry_kinds(settings: Settings) -> frozenset[str]:
    """The failure kinds a resume sends again: the passing ones with --retry-failed."""
    return frozenset(TRANSIENT_KINDS) if settings.retry_failed else frozenset()


def read_resume(folder: Path, now: RunRecord, *, retry: frozenset[str] = frozenset(),
                users: LiveUsers | None = None) -> ResumeState:
    """A folder's resume state, refused unless `now` may continue its run.json (check_resume)
    and every row and journal entry in it is one replayer wrote for these inputs.

    Failure rows of a kind in `retry` are removed from failures.ndjson: their lines are
    not done, and the rows the resume writes for them replace them (one row per line).
    `users`, a fresh tally, is given every row the folder keeps (as state.users).
    """
    check_resume(folder, now)
    assert now.inputs is not None  # check_resume refused a run without fingerprints
    statuses = frozenset({"dry_run"} if now.dry_run else {"delivered"})
    state = read_folder(folder, line_limits(now.inputs), statuses=statuses, retry=retry,
                        users=users)
    if state.drop_failures:
        _drop_failures(folder / FAILURES, retry)
    return state


def check_workers(out_dir: Path, now: RunRecord) -> None:
    """Validates every workers/I/ folder a `now.layout.workers`-worker resume will read.

    A folder with a run.json is read as its worker will read it; one without may hold
    no rows (its worker had not started), else the resume is refused.
    """
    if now.layout.workers <= 1:
        return
    for index in range(now.layout.workers):
        folder = out_dir / WORKERS_DIR / str(index)
        if (folder / RUN).exists():
            read_resume(folder, now.for_worker(index))
            continue
        for name in (RESULTS, FAILURES):
            if (folder / name).exists() and (folder / name).stat().st_size > 0:
                raise ResumeError(f"{folder / name} holds rows but {folder / RUN} is missing; "
                                  f"{_HINT}")


def line_limits(inputs: tuple[InputPrint, ...]) -> dict[str, int]:
    """Per input file name, the largest line number a row may carry."""
    return {p.file: p.max_line_no() for p in inputs}


def read_folder(folder: Path, limits: Mapping[str, int], *,
                statuses: frozenset[str] = frozenset({"delivered", "dry_run"}),
                retry: frozenset[str] = frozenset(),
                users: LiveUsers | None = None) -> ResumeState:
    """Repairs torn tails, validates and collects the rows and journal entries of `folder`;
    failure rows of a kind in `retry` leave their lines to be sent again (and the file:
    state.drop_failures), and `users` is given each row that stays."""
    state = ResumeState(LineSet(), LineSet(), PriorRows(), users=users)
    for name in (RESULTS, FAILURES):
        path = folder / name
        repair_torn_tail(path)
        if path.exists():
            for n, row in _lines(path):
                key = _row_key(row, path, n, limits, statuses if name == RESULTS else None)
                if name == FAILURES and row["kind"] in retry:
                    state.drop_failures = True  # every row of the kind, as _drop_failures
                    if key not in state.done:
                        landed = bool(row.get("ambiguous_attempts")
                                      or row.get("possible_duplicate"))
                        state.retried.append((*key, landed))
                        continue
                elif users is not None:
                    users.prior(row, result=name == RESULTS)
                _count_row(key, row, name, state)
    journal = folder / JOURNAL
    repair_torn_tail(journal)  # else the next entry would be glued to the torn one
    if journal.exists():
        for n, entry in _lines(journal):
            file, line_nos, sent = _journal_entry(entry, journal, n, limits)
            for line_no in line_nos:
                if not sent:
                    state.sent.discard(file, line_no)
                elif not state.is_done(file, line_no):
                    state.sent.add(file, line_no)
    # A retried line is marked only where its earlier tries may have landed; a 503 or a
    # refused connection certainly did not.
    for file, line_no, landed in state.retried:
        if landed:
            state.sent.add(file, line_no)
        else:
            state.sent.discard(file, line_no)
    return state


def _drop_failures(path: Path, kinds: frozenset[str]) -> None:
    """Replaces failures.ndjson by its rows whose kind is not in `kinds` (read line by line,
    written beside it, then renamed over it: a kill leaves the old file or the new one)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(path, "rb") as source, open(tmp, "wb") as kept:
            for raw in source:
                if orjson.loads(raw)["kind"] not in kinds:
                    kept.write(raw)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None


def _lines(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                yield n, orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise _bad(path, n, "not JSON") from None


def _bad(path: Path, n: int, what: str) -> ResumeError:
    return ResumeError(f"{path} line {n}: {what}; {_HINT}")


def _check_file(file: Any, path: Path, n: int, limits: Mapping[str, int]) -> int:
    """The largest line number of `file`, refused unless it names one of the inputs."""
    if not isinstance(file, str):
        raise _bad(path, n, "its file name is not a string")
    limit = limits.get(file)
    if limit is None:
        raise _bad(path, n, f"{file!r} is not one of this run's inputs")
    return limit


def _check_line(file: Any, line_no: Any, path: Path, n: int, limits: Mapping[str, int]) -> None:
    limit = _check_file(file, path, n, limits)
    if not isinstance(line_no, int) or isinstance(line_no, bool):
        raise _bad(path, n, f"line number {line_no!r} is not an integer")
    if not 1 <= line_no <= limit:
        raise _bad(path, n, f"line number {line_no} is outside {file} (1 to {limit})")


def _row_key(row: Any, path: Path, n: int, limits: Mapping[str, int],
             statuses: frozenset[str] | None) -> tuple[str, int]:
    """(file, line) of a results row (`statuses` given) or a failures row (None)."""
    if not isinstance(row, dict):
        raise _bad(path, n, "not a row replayer wrote (not a JSON object)")
    _check_line(row.get("file"), row.get("line"), path, n, limits)
    if statuses is not None and row.get("status") not in statuses:
        raise _bad(path, n, f"status {row.get('status')!r} is not one of "
                            f"{', '.join(sorted(statuses))} (a row of another kind of run)")
    if statuses is None and row.get("kind") not in _KINDS:
        raise _bad(path, n, f"failure kind {row.get('kind')!r} is not one replayer writes")
    if not isinstance(row.get("possible_duplicate", False), bool):
        raise _bad(path, n, "possible_duplicate must be true or false")
    return row["file"], row["line"]


def _count_row(key: tuple[str, int], row: dict[str, Any], name: str, state: ResumeState) -> None:
    if key in state.done:
        state.duplicate_rows += 1
        return
    state.done.add(*key)
    if name == RESULTS:
        state.prior.by_status["delivered"] += 1  # a dry run counts its rows as delivered too
    else:
        state.prior.failed(row["kind"])
    if row.get("possible_duplicate"):
        state.prior.possible_duplicates += 1


def _journal_entry(entry: Any, path: Path, n: int,
                   limits: Mapping[str, int]) -> tuple[str, list[int], bool]:
    """(file, lines, sent): `[file, [line, ...]]` before a request, with a last "unsent"
    when that request never reached the server."""
    if not (isinstance(entry, list) and len(entry) in (2, 3) and isinstance(entry[1], list)
            and entry[2:] in ([], [UNSENT])):
        raise _bad(path, n, "not a journal entry replayer wrote ([file, [line, ...]])")
    file, line_nos = entry[0], entry[1]
    _check_file(file, path, n, limits)
    for line_no in line_nos:
        _check_line(file, line_no, path, n, limits)
    return file, line_nos, len(entry) == 2
