"""Output files: results.ndjson, failures.ndjson and summary.json, written so a kill loses little.

Rows are buffered in memory and written with one `os.write` per flush (the pipeline
flushes every few tens of milliseconds); a process killed between flushes loses only
rows whose records the journal will send again, marked as possible duplicates.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import orjson

from replayer.records import KeyText, RecordFailure, Session

# orjson's output holds ~8 KB of allocation per row until joined: keep few queued.
MAX_BUFFERED_ROWS = 512


class Work(Protocol):
    """What a row says of a sent session (the engine's `Work` is one)."""

    @property
    def session(self) -> Session: ...
    @property
    def attempts(self) -> int: ...
    @property
    def ambiguous(self) -> int: ...
    @property
    def latency_ms(self) -> float: ...
    @property
    def resent(self) -> bool: ...


class Outcome(Protocol):
    """What a row says of the answer to it (the engine's `Outcome` is one)."""

    @property
    def http_status(self) -> int | None: ...
    @property
    def element(self) -> dict[str, Any] | None: ...


class OutputError(Exception):
    """An output could not be written (disk full, folder not writable, ...): the run stops
    with exit 7. The message is one line naming the file and the cause."""


def open_append(path: Path) -> int:
    """An fd appending to `path` (created if missing); OutputError if it cannot be opened."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot open {path} for writing: {exc.strerror}") from None


def write_all(fd: int, data: bytes, path: Path) -> None:
    """Writes all of `data` to `fd`, going on after a short write; OutputError on failure."""
    try:
        written = os.write(fd, data)  # all of it, nearly always: no view to make
        if written == len(data):
            return
        view = memoryview(data)
        while True:
            if written <= 0:
                raise OutputError(f"cannot write {path}: the write made no progress")
            view = view[written:]
            if not view:
                return
            written = os.write(fd, view)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None


class NdjsonSink:
    """An append-only NDJSON file with an in-memory buffer."""

    def __init__(self, path: Path, *, secret: str | None = None) -> None:
        self.path = path
        self._fd = open_append(path)
        self._buffer: list[bytes] = []
        self.rows = 0
        # Whatever a record carried (a value under any name), the key's text never reaches
        # the file. One search per flush, not per row.
        self._key = KeyText(secret)

    def write(self, row: dict[str, Any]) -> None:
        """Queues one row (written at the next flush, or now if many are queued)."""
        self._buffer.append(orjson.dumps(row))
        self.rows += 1
        if len(self._buffer) >= MAX_BUFFERED_ROWS:
            self.flush()

    def write_line(self, line: bytes) -> None:
        """Queues one row already encoded (without its newline)."""
        self._buffer.append(line)
        self.rows += 1
        if len(self._buffer) >= MAX_BUFFERED_ROWS:
            self.flush()

    def flush(self) -> None:
        """Writes every queued row to the file."""
        if self._buffer:
            data = self._key.mask_json(b"\n".join(self._buffer) + b"\n")
            self._buffer.clear()
            write_all(self._fd, data, self.path)

    def close(self) -> None:
        """Flushes and closes (the file is closed even when the flush fails)."""
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1


_COUNTED = (dict, list)  # what a response's vars may be counted in (orjson makes no others)


def result_row(
    work: Work, outcome: Outcome, *, save_response: bool, status: str = "delivered"
) -> dict[str, Any]:
    """The results.ndjson row of a delivered record (`dry_run` when nothing was sent)."""
    s = work.session
    element = outcome.element
    vars: Any = None
    variants: Any = None
    if element:
        vars, variants = element.get("vars"), element.get("variants")
    row: dict[str, Any] = {
        "file": s.file, "line": s.line_no, "userId": s.user_id, "deviceId": s.device_id,
        "status": status, "http_status": outcome.http_status,
        "attempts": work.attempts, "latency_ms": round(work.latency_ms, 3),
        "vars": len(vars) if type(vars) in _COUNTED else 0,  # whatever the answer holds
        # (no comprehension for the common empty list: a call each in Python 3.11)
        "variants": [v.get("id") for v in variants if isinstance(v, dict)]
        if variants and isinstance(variants, list) else [],
    }
    if work.ambiguous or work.resent or s.pass_no > 1:
        _mark(row, work)
    if save_response:
        row["response"] = element or {}
    return row


def _mark(row: dict[str, Any], work: Work) -> None:
    """What a row says beyond its outcome: possible duplicates, and the pass of a loop."""
    if work.ambiguous:
        row["ambiguous_attempts"] = work.ambiguous
    if work.resent:
        row["possible_duplicate"] = True
    if work.session.pass_no > 1:
        row["pass"] = work.session.pass_no


def failure_row(
    work: Work, kind: str, message: str, http_status: int | None
) -> dict[str, Any]:
    """The failures.ndjson row of a valid record that was not delivered."""
    s = work.session
    row: dict[str, Any] = {
        "file": s.file, "line": s.line_no, "userId": s.user_id, "deviceId": s.device_id,
        "kind": kind, "message": message, "http_status": http_status,
        "attempts": work.attempts, "record": s.record,
    }
    _mark(row, work)
    return row


def invalid_row(failure: RecordFailure) -> dict[str, Any]:
    """The failures.ndjson row of a line that failed validation (never sent)."""
    row: dict[str, Any] = {
        "file": failure.file, "line": failure.line_no,
        "userId": failure.user_id, "deviceId": failure.device_id,
        "kind": failure.kind, "message": failure.message, "http_status": None,
        "attempts": 0,
    }
    if failure.record is not None:
        row["record"] = failure.record
    else:
        row["raw"] = failure.raw
    return row


def write_atomic(path: Path, data: bytes) -> None:
    """Replaces `path` with `data` so a reader sees the old file or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """`write_atomic` of `doc` as indented JSON."""
    write_atomic(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
