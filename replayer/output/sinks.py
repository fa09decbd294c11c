"""Output files: results.ndjson, failures.ndjson and summary.json, written so a kill loses little.

Rows are buffered in memory and written with one `os.write` per flush (the pipeline
flushes every few tens of milliseconds); a process killed between flushes loses only
rows whose records the journal will send again, marked as possible duplicates.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from replayer.engine.classify import Outcome
from replayer.engine.lanes import Work
from replayer.records import RecordFailure

RESULTS = "results.ndjson"
FAILURES = "failures.ndjson"
SUMMARY = "summary.json"
METRICS = "metrics.ndjson"
REQUESTS = "requests.ndjson"  # --dry-run: every body that would have been sent
# orjson's output holds ~8 KB of allocation per row until joined: keep few queued.
MAX_BUFFERED_ROWS = 512


class NdjsonSink:
    """An append-only NDJSON file with an in-memory buffer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._buffer: list[bytes] = []
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        """Queues one row (written at the next flush, or now if many are queued)."""
        self._buffer.append(orjson.dumps(row))
        self.rows += 1
        if len(self._buffer) >= MAX_BUFFERED_ROWS:
            self.flush()

    def flush(self) -> None:
        """Writes every queued row to the file."""
        if self._buffer:
            data = b"\n".join(self._buffer) + b"\n"
            self._buffer.clear()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]

    def sync(self) -> None:
        """Flushes and asks the OS to put the file on disk."""
        self.flush()
        os.fsync(self._fd)

    def close(self) -> None:
        """Flushes and closes."""
        self.flush()
        os.close(self._fd)


def result_row(
    work: Work, outcome: Outcome, *, save_response: bool, status: str = "delivered"
) -> dict[str, Any]:
    """The results.ndjson row of a delivered record (`dry_run` when nothing was sent)."""
    s = work.session
    element = outcome.element or {}
    variants = element.get("variants")
    row: dict[str, Any] = {
        "file": s.file, "line": s.line_no, "userId": s.user_id, "deviceId": s.device_id,
        "status": status, "http_status": outcome.http_status,
        "attempts": work.attempts, "latency_ms": round(work.latency_ms, 3),
        "vars": len(element.get("vars") or {}),
        "variants": [v.get("id") for v in variants if isinstance(v, dict)]
        if isinstance(variants, list) else [],
    }
    _mark(row, work)
    if save_response:
        row["response"] = element
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


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Replaces `path` with `doc` so a reader sees the old file or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, path)


OUR_FILES = (RESULTS, FAILURES, SUMMARY, METRICS, REQUESTS, "journal.log", "run.json")
WORKERS_DIR = "workers"  # one folder per worker process, merged into the files above


class OutDirError(Exception):
    """The output folder cannot be used as asked (exists and is not empty, ...)."""


def prepare_out_dir(out_dir: Path | None, *, resume: bool, overwrite: bool, now_s: float) -> Path:
    """The folder this run writes to, created if needed.

    Default: a new timestamped folder under ./replay-out/. An existing non-empty folder
    is refused unless resuming (its files are continued) or overwriting (our files in it
    are removed; nothing else is touched).
    """
    if out_dir is None:
        if resume:
            raise OutDirError("--resume needs --out: the folder of the run to continue")
        stamp = datetime.fromtimestamp(now_s, UTC).strftime("%Y%m%dT%H%M%SZ")
        out_dir = Path("replay-out") / stamp
        n = 1
        while out_dir.exists():
            n += 1
            out_dir = Path("replay-out") / f"{stamp}-{n}"
    if resume:
        if not out_dir.is_dir():
            raise OutDirError(f"--resume: {out_dir} does not exist")
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise OutDirError(
                f"{out_dir} is not empty; use --resume to continue the run in it, "
                "--overwrite to start over, or another --out"
            )
        for name in OUR_FILES:
            (out_dir / name).unlink(missing_ok=True)
        for old in (*out_dir.glob("report.html"), *out_dir.glob("report-*.png")):
            old.unlink()  # a report of the run being replaced
        shutil.rmtree(out_dir / WORKERS_DIR, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir
