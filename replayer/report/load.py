"""Reads a run's output folder for the report: summary.json whole, the row files streamed.

Memory stays bounded for any run: metrics keep a few numbers per second, failures a
count per user and per kind, users.ndjson its counts and the most-failing users;
results.ndjson is never read (summary.json has its totals).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from replayer.config.settings import holds_schedule
from replayer.output.layout import FAILURES, METRICS, OUR_FILES, SUMMARY, USERS
from replayer.output.user_rows import UserRow, read_users

EXAMPLE_CHARS = 300  # an example failure message is cut to this length
MAX_KINDS = 200  # kinds kept with an example; more would only come from a broken file
TOP_USERS = 10
TOP_FAILING_USERS = 20  # users.ndjson's most-failing users shown
_RESTART_S = 1.0  # elapsed_s going back by more than this: a resumed run's rows begin


class NotAnOutputDir(Exception):
    """The folder given is not (yet) a replayer output folder; the message says why."""


@dataclass(frozen=True, slots=True)
class Metrics:
    """metrics.ndjson as columns: one entry per row, each row an interval of about 1 s.

    `edges_s` has one more entry than the rows: row i covers edges_s[i]..edges_s[i+1],
    in seconds of run time (the pause between a run and its resume is left out).
    """

    edges_s: list[float] = field(default_factory=lambda: [0.0])
    requests: list[int] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    retry_waiting: list[int] = field(default_factory=list)
    outage: list[bool] = field(default_factory=list)
    # Load-test columns, None where a row has no number (older files, or nothing answered).
    planned: list[float | None] = field(default_factory=list)  # None: the run was unpaced
    delivered_p99_ms: list[float | None] = field(default_factory=list)
    scheduled_p99_ms: list[float | None] = field(default_factory=list)
    failed_by_kind: dict[str, dict[int, int]] = field(default_factory=dict)  # kind: {row: n}
    # --rate auto: the controller's rate (None in rows without it), and 429s by cause.
    rate_per_s: list[float | None] = field(default_factory=list)
    throttled: list[int] = field(default_factory=list)
    limited_per_user: list[int] = field(default_factory=list)  # profile lock and devMode 429s
    resumed_at_s: list[float] = field(default_factory=list)
    unreadable_rows: int = 0

    @property
    def rows(self) -> int:
        """How many rows were read."""
        return len(self.requests)

    @property
    def has_auto_rate(self) -> bool:
        """Some row has the --rate auto controller's rate."""
        return any(r is not None for r in self.rate_per_s)

    @property
    def has_plan(self) -> bool:
        """Some row says how many requests the schedule planned (a run paced by --rate)."""
        return any(p is not None for p in self.planned)

    @property
    def planned_total(self) -> int | None:
        """Requests planned over the run: the rows' sum, rounded to a whole request (a row
        holds the schedule's integral over its second); None when unpaced."""
        counts = [p for p in self.planned if p is not None]
        return round(sum(counts)) if counts else None

    @property
    def has_scheduled_latency(self) -> bool:
        """Some row has a scheduled-view p99 (runs made since the load-test mode)."""
        return any(p is not None for p in self.scheduled_p99_ms)

    def kind_series(self, kind: str) -> list[int]:
        """Failures of one kind per row (0 where the row has none)."""
        points = self.failed_by_kind.get(kind, {})
        return [points.get(i, 0) for i in range(self.rows)]


@dataclass(frozen=True, slots=True)
class UserFailures:
    """One user among the most-failing: the id it is keyed by, its failures and their kinds."""

    user: str
    by_device_id: bool  # keyed by deviceId: the failed rows had no userId
    failures: int
    kinds: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class FailureTally:
    """What failures.ndjson holds, counted in one streaming pass (plus one for top users)."""

    rows: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)  # kind: first message seen
    top_users: tuple[UserFailures, ...] = ()
    without_user: int = 0  # rows with neither userId nor deviceId (unparsable lines)
    users: int = 0  # distinct users with at least one failure
    unreadable_rows: int = 0


@dataclass(frozen=True, slots=True)
class UsersTally:
    """What users.ndjson holds, counted in one streaming pass: users by how much of theirs
    was delivered, and the most-failing (most failures first; ties: ids in increasing order)."""

    users: int = 0
    fully_delivered: int = 0
    partly_delivered: int = 0
    none_delivered: int = 0
    with_failures: int = 0
    top: tuple[UserRow, ...] = ()
    unreadable_rows: int = 0


@dataclass(frozen=True, slots=True)
class RunData:
    """Everything the report shows, read from one output folder."""

    out_dir: Path
    summary: dict[str, Any]
    metrics: Metrics
    failures: FailureTally
    has_metrics: bool
    has_failures: bool
    file_sizes: tuple[tuple[str, int], ...]
    users: UsersTally | None = None  # None: no users.ndjson (a run from before it existed)

    @property
    def followed_a_plan(self) -> bool:
        """The run held a schedule (a load test's --rate, --pace original) and its metrics
        show it: planned counts, or scheduled latency (each record planned at its recorded
        time). A ceiling --rate or --rate auto plans nothing, whatever its metrics hold."""
        settings = self.summary.get("settings")
        return (isinstance(settings, dict) and holds_schedule(settings)
                and (self.metrics.has_plan or self.metrics.has_scheduled_latency))


def load_run(out_dir: Path) -> RunData:
    """Reads `out_dir`; raises NotAnOutputDir when it is not a finished replayer folder."""
    summary = read_summary(out_dir)
    metrics_path, failures_path, users_path = out_dir / METRICS, out_dir / FAILURES, out_dir / USERS
    return RunData(
        out_dir=out_dir,
        summary=summary,
        metrics=read_metrics(metrics_path) if metrics_path.is_file() else Metrics(),
        failures=tally_failures(failures_path) if failures_path.is_file() else FailureTally(),
        has_metrics=metrics_path.is_file(),
        has_failures=failures_path.is_file(),
        file_sizes=tuple((name, (out_dir / name).stat().st_size) for name in OUR_FILES
                         if (out_dir / name).is_file()),
        users=tally_users(users_path) if users_path.is_file() else None,
    )


def read_summary(out_dir: Path) -> dict[str, Any]:
    """summary.json as a dict; NotAnOutputDir with the reason when there is none."""
    if not out_dir.is_dir():
        raise NotAnOutputDir(f"{out_dir} is not a folder")
    path = out_dir / SUMMARY
    if not path.is_file():
        if any((out_dir / name).exists() for name in OUR_FILES):
            raise NotAnOutputDir(
                f"{out_dir} has no {SUMMARY} yet: its run is still going or was killed before "
                "the end (finish it with `replayer run ... --resume`, then report)")
        raise NotAnOutputDir(f"{out_dir} is not a replayer output folder (no {SUMMARY})")
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise NotAnOutputDir(f"{path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or "state" not in doc:
        raise NotAnOutputDir(f"{path} is not a replayer summary (no \"state\")")
    return doc


def _rows(path: Path) -> Iterator[dict[str, Any] | None]:
    """Each non-blank line of an NDJSON file parsed, or None when it is not a JSON object."""
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield None  # e.g. the last line of a run killed mid-write
                continue
            yield row if isinstance(row, dict) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: Any) -> float | None:
    """A number from a row, None for null, a missing key or anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _p99(value: Any) -> float | None:
    """The p99 of a row's {p50, p90, p99, max} latency object."""
    return _float(value.get("p99")) if isinstance(value, dict) else None


def read_metrics(path: Path) -> Metrics:
    """Streams metrics.ndjson into columns (a few numbers per second of run)."""
    m = Metrics()
    offset_s, last_elapsed_s, unreadable = 0.0, 0.0, 0
    for row in _rows(path):
        if row is None:
            unreadable += 1
            continue
        elapsed = row.get("elapsed_s")
        elapsed_s = float(elapsed) if isinstance(elapsed, int | float) else last_elapsed_s + 1.0
        if elapsed_s < last_elapsed_s - _RESTART_S:  # a resume: its clock starts again
            offset_s = m.edges_s[-1]
            m.resumed_at_s.append(offset_s)
        last_elapsed_s = elapsed_s
        # Strictly increasing edges, even when two rows share a millisecond.
        m.edges_s.append(max(offset_s + elapsed_s, m.edges_s[-1] + 1e-3))
        index = m.rows
        m.requests.append(_int(row.get("requests")))
        m.delivered.append(_int(row.get("delivered")))
        m.failed.append(_int(row.get("failed")))
        m.retries.append(_int(row.get("retries")))
        m.retry_waiting.append(_int(row.get("retry_waiting")))
        m.outage.append(row.get("outage") is True)
        m.planned.append(_float(row.get("planned")))
        m.delivered_p99_ms.append(_p99(row.get("latency_ms")))
        m.scheduled_p99_ms.append(_p99(row.get("scheduled_latency_ms")))
        m.rate_per_s.append(_float(row.get("rate_per_s")))
        limited = row.get("limited_by_cause")
        limited = limited if isinstance(limited, dict) else {}
        m.throttled.append(_int(limited.get("throttled")))
        m.limited_per_user.append(sum(_int(n) for k, n in limited.items() if k != "throttled"))
        kinds = row.get("failed_by_kind")
        if isinstance(kinds, dict):
            for kind, n in kinds.items():
                if _int(n):
                    m.failed_by_kind.setdefault(str(kind), {})[index] = _int(n)
    return dataclasses.replace(m, unreadable_rows=unreadable)


def _user_key(row: dict[str, Any]) -> tuple[str, bool] | None:
    """(id, keyed by deviceId) as lanes key users: userId, else deviceId; None without either."""
    user_id, device_id = row.get("userId"), row.get("deviceId")
    if isinstance(user_id, str) and user_id:
        return user_id, False
    if isinstance(device_id, str) and device_id:
        return device_id, True
    return None


def tally_failures(path: Path, *, top: int = TOP_USERS) -> FailureTally:
    """Counts failures.ndjson per kind and per user, streaming; a second pass finds the
    kinds of the `top` most-failing users (ties: ids in increasing order)."""
    rows = without_user = unreadable = 0
    by_kind: Counter[str] = Counter()
    examples: dict[str, str] = {}
    per_user: Counter[tuple[str, bool]] = Counter()
    for row in _rows(path):
        if row is None:
            unreadable += 1
            continue
        rows += 1
        kind = str(row.get("kind"))
        by_kind[kind] += 1
        if kind not in examples and len(examples) < MAX_KINDS:
            examples[kind] = str(row.get("message", ""))[:EXAMPLE_CHARS]
        key = _user_key(row)
        if key is None:
            without_user += 1
        else:
            per_user[key] += 1
    ranked = sorted(per_user.items(), key=lambda item: (-item[1], item[0]))[:top]
    kinds_of: dict[tuple[str, bool], Counter[str]] = {key: Counter() for key, _ in ranked}
    if kinds_of:
        for row in _rows(path):
            if row is not None and (key := _user_key(row)) in kinds_of:
                kinds_of[key][str(row.get("kind"))] += 1
    top_users = tuple(
        UserFailures(user, by_device, n,
                     tuple(sorted(kinds_of[(user, by_device)].items(),
                                  key=lambda kv: (-kv[1], kv[0]))))
        for (user, by_device), n in ranked
    )
    return FailureTally(rows=rows, by_kind=dict(by_kind), examples=examples,
                        top_users=top_users, without_user=without_user, users=len(per_user),
                        unreadable_rows=unreadable)


def tally_users(path: Path, *, top: int = TOP_FAILING_USERS) -> UsersTally:
    """Counts users.ndjson's users by delivery, streaming, and keeps the `top` most-failing."""
    counts: Counter[str] = Counter()

    def failing() -> Iterator[UserRow]:
        for row in read_users(path):
            if row is None:
                counts["unreadable"] += 1
                continue
            counts["users"] += 1
            counts["fully" if row.delivered == row.records
                   else "partly" if row.delivered else "none"] += 1
            if row.failures:
                counts["failing"] += 1
                yield row

    ranked = heapq.nsmallest(top, failing(), key=lambda row: (-row.failures, row.key))
    return UsersTally(users=counts["users"], fully_delivered=counts["fully"],
                      partly_delivered=counts["partly"], none_delivered=counts["none"],
                      with_failures=counts["failing"], top=tuple(ranked),
                      unreadable_rows=counts["unreadable"])
