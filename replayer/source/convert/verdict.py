"""The validator's verdict on a start record before convert writes it: the `parse_line` that
`run` and `validate` apply, on the line their reader would make of it, so that what convert
writes, run accepts (the same checks, the same line limit).

Pure: no I/O.
"""

from __future__ import annotations

from replayer.records import RawLine, RecordFailure
from replayer.source.convert.events import Refusal
from replayer.source.validate import parse_line

DEFAULT_MAX_LINE_BYTES = 1_048_576  # run's and validate's default --max-line-bytes


def refusal(data: bytes, *, max_line_bytes: int, now_s: float) -> Refusal | None:
    """Why `run` would refuse the record `data` (one line, no line end), or None."""
    truncated = len(data) > max_line_bytes  # as run's reader cuts a longer line
    line = RawLine("convert", 1, data[:max_line_bytes] if truncated else data, truncated)
    verdict = parse_line(line, now_s=now_s)
    if not isinstance(verdict, RecordFailure):
        return None
    return Refusal(verdict.kind.value, f"its start record ({len(data)} bytes) would fail "
                                       f"validation: {verdict.message}")
