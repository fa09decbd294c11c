"""MetricsRow: one row of metrics.ndjson (one second of a run), its codec, a tolerant reader
and the merge of several processes' rows by second."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

Latency = dict[str, float | None]
Buckets = list[list[float]]


@dataclass(frozen=True, slots=True)
class MetricsRow:
    """The interval since the previous row (counts, latency) and the state at its end."""

    t: float  # wall clock, s
    elapsed_s: float = 0.0
    requests: int = 0
    delivered: int = 0
    failed: int = 0
    failed_by_kind: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    latency_ms: Latency = field(default_factory=dict)
    latency_buckets_ms: Buckets = field(default_factory=list)
    scheduled_latency_ms: Latency = field(default_factory=dict)
    planned: float | None = None  # requests the schedule planned in the interval; None unpaced
    latency_sum_ms: float = 0.0
    in_flight: int = 0
    retry_waiting: int = 0
    pending: int = 0
    lines_read: int = 0
    bytes_read: int = 0
    bytes_total: int | None = None
    outage: bool = False
    rate_per_s: float | None = None  # --rate auto: the controller's rate at the row's end
    rate_state: str | None = None  # --rate auto: climbing, holding or backing off
    limited_by_cause: dict[str, int] = field(default_factory=dict)  # 429s: throttled, ...
    records_read: int = 0  # lines read that this process owns (each ends as one row)
    records_seen: int = 0  # non-blank lines it took, its own or not (its share: read / seen)
    blank_lines: int = 0
    input_ended: bool = False  # the whole input was read: records_read is final
    prior_delivered: int = 0  # a resume: rows of earlier sessions, delivered ...
    prior_failed_by_kind: dict[str, int] = field(default_factory=dict)  # ... and failed


_NUMBER = (int, float)
_TYPES: dict[str, type | tuple[type, ...]] = {
    "t": _NUMBER, "elapsed_s": _NUMBER, "requests": int, "delivered": int, "failed": int,
    "failed_by_kind": dict, "retries": int, "latency_ms": dict, "latency_buckets_ms": list,
    "scheduled_latency_ms": dict, "planned": (*_NUMBER, type(None)), "latency_sum_ms": _NUMBER,
    "in_flight": int, "retry_waiting": int, "pending": int, "lines_read": int,
    "bytes_read": int, "bytes_total": (int, type(None)), "outage": bool,
    "rate_per_s": (*_NUMBER, type(None)), "rate_state": (str, type(None)),
    "limited_by_cause": dict, "records_read": int, "records_seen": int, "blank_lines": int,
    "input_ended": bool,
    "prior_delivered": int, "prior_failed_by_kind": dict,
}
_FLAGS = ("outage", "input_ended")


class RowError(ValueError):
    """A line of metrics.ndjson that is not a row replayer wrote."""


def encode_row(row: MetricsRow) -> bytes:
    """One line of metrics.ndjson (newline included)."""
    return orjson.dumps({f.name: getattr(row, f.name) for f in dataclasses.fields(row)}) + b"\n"


def decode_row(line: bytes) -> MetricsRow:
    """A line read back; RowError for anything but a row (absent fields take their defaults)."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise RowError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict) or "t" not in doc:
        raise RowError("not a metrics row")
    values: dict[str, Any] = {}
    for name, value in doc.items():
        types = _TYPES.get(name)
        if types is None:
            continue  # a field of a later version: ignored
        if not isinstance(value, types) or (isinstance(value, bool) and name not in _FLAGS):
            raise RowError(f"the field {name} has the wrong type")
        values[name] = value
    return MetricsRow(**values)


@dataclass(frozen=True, slots=True)
class ReadRows:
    """The rows of a file, and how many lines were skipped (torn or not rows)."""

    rows: list[MetricsRow]
    skipped: int = 0


def read_rows(path: Path) -> ReadRows:
    """Every row of a metrics.ndjson (none if it does not exist), skipping undecodable lines."""
    if not path.exists():
        return ReadRows([])
    rows, skipped = [], 0
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(decode_row(line))
        except RowError:
            skipped += 1  # a torn last line after a kill, or a line nobody should have written
    return ReadRows(rows, skipped)


def merge_by_second(rows: Iterable[MetricsRow]) -> list[MetricsRow]:
    """One row per wall-clock second: counts summed, latency percentiles the worst seen,
    histograms added, progress (lines, bytes read) the furthest (each process reads all),
    records read and earlier sessions' rows summed (each process owns its share)."""
    by_second: dict[int, list[MetricsRow]] = {}
    for row in rows:
        by_second.setdefault(int(row.t), []).append(row)
    return [_merge_second(by_second[s]) for s in sorted(by_second)]


def _merge_second(rows: Sequence[MetricsRow]) -> MetricsRow:
    if len(rows) == 1:
        return rows[0]
    planned = [r.planned for r in rows if r.planned is not None]
    rates = [r.rate_per_s for r in rows if r.rate_per_s is not None]
    states = sorted({r.rate_state for r in rows if r.rate_state is not None})
    return MetricsRow(
        t=max(r.t for r in rows), elapsed_s=max(r.elapsed_s for r in rows),
        requests=sum(r.requests for r in rows), delivered=sum(r.delivered for r in rows),
        failed=sum(r.failed for r in rows),
        failed_by_kind=dict(sum((Counter(r.failed_by_kind) for r in rows), Counter())),
        retries=sum(r.retries for r in rows),
        latency_ms=_worst([r.latency_ms for r in rows]),
        latency_buckets_ms=_add_buckets([r.latency_buckets_ms for r in rows]),
        scheduled_latency_ms=_worst([r.scheduled_latency_ms for r in rows]),
        planned=round(sum(planned), 2) if planned else None,
        latency_sum_ms=round(sum(r.latency_sum_ms for r in rows), 3),
        in_flight=sum(r.in_flight for r in rows), retry_waiting=sum(r.retry_waiting for r in rows),
        pending=sum(r.pending for r in rows),
        lines_read=max(r.lines_read for r in rows), bytes_read=max(r.bytes_read for r in rows),
        bytes_total=max((r.bytes_total for r in rows if r.bytes_total is not None), default=None),
        outage=any(r.outage for r in rows),
        rate_per_s=round(sum(rates), 2) if rates else None,
        rate_state=", ".join(states) if states else None,
        limited_by_cause=dict(sum((Counter(r.limited_by_cause) for r in rows), Counter())),
        records_read=sum(r.records_read for r in rows),
        records_seen=max(r.records_seen for r in rows),
        blank_lines=max(r.blank_lines for r in rows),
        input_ended=all(r.input_ended for r in rows),
        prior_delivered=sum(r.prior_delivered for r in rows),
        prior_failed_by_kind=dict(sum((Counter(r.prior_failed_by_kind) for r in rows),
                                      Counter())),
    )


def _worst(views: Sequence[Latency]) -> Latency:
    out: Latency = {}
    for view in views:
        for name, value in view.items():
            seen = out.get(name)
            out[name] = value if seen is None else seen if value is None else max(seen, value)
    return out


def _add_buckets(lists: Sequence[Buckets]) -> Buckets:
    counts: Counter[float] = Counter()
    for pairs in lists:
        for upper, n in pairs:
            counts[upper] += int(n)
    return [[upper, counts[upper]] for upper in sorted(counts)]


def merge_files(sources: Sequence[Path], target: Path) -> int:
    """Writes `target` (atomically) as the by-second merge of `sources`; returns lines skipped."""
    reads = [read_rows(source) for source in sources]
    merged = merge_by_second(row for read in reads for row in read.rows)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(b"".join(encode_row(row) for row in merged))
    tmp.replace(target)
    return sum(read.skipped for read in reads)
