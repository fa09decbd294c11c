"""RunSummary: the one typed record of a run's truth (summary.json), its codec and its merge.

Pure. Every process of a run builds one `RunSummary` of its own share (`Part` values
from the engine); a run's summary.json is always `merge()` of its parts, one part for a
single process, one per worker or shard otherwise, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from replayer.config.checks import describe_target
from replayer.config.settings import holds_schedule
from replayer.observe.stats import Histogram
from replayer.records import ExitCode, worst
from replayer.source.redact import shown_url

VERSION = 2
LOAD_PERCENTILES = (50, 90, 99, 99.9, 99.99)
# The latency views every summary carries, as histograms (merged exactly, bucket by bucket).
VIEWS = ("delivered", "failed", "service", "scheduled", "behind")

ESTIMATED = ("requests", "user_lookups")  # what a dry run estimates (estimate_max's keys)
Latency = dict[str, float | None]
Buckets = list[list[float]]


class SummaryError(ValueError):
    """A summary.json that is not one replayer wrote (the message names the file)."""


@dataclass(frozen=True, slots=True)
class Layout:
    """How a run was spread over processes: fields that depend on it are not compared."""

    workers: int = 1
    shard: str | None = None  # "I/N" for one shard of a fan-out
    per_worker: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class RunSummary:
    """summary.json: counts, outcomes, latency, timing, settings (secrets redacted)."""

    state: str
    exit_code: int
    lines_read: int
    blank_lines: int
    records: int
    delivered: int
    failed: int
    unfinished: int
    failures_by_kind: dict[str, int]
    requests: int
    user_lookups: int
    retries: int
    ambiguous_attempts: int
    possible_duplicates: int
    outages: int
    records_this_session: int  # rows written by this session (a resume's first is not)
    records_per_s: float
    latency_ms: Latency
    failed_latency_ms: Latency
    latency_histogram_ms: dict[str, Buckets]
    latency_max_ms: dict[str, float]
    request_latency_ms: dict[str, Latency]
    behind_schedule_ms: Latency
    started_at: str
    ended_at: str
    elapsed_s: float
    settings: dict[str, Any]
    inputs: list[str]
    run_id: str = ""
    version: int = VERSION
    dry_run: bool = False
    stopped_by: str | None = None  # duration | schedule | threshold
    stopped_because: str | None = None  # why an aborted run stopped, in one sentence
    thresholds: tuple[dict[str, Any], ...] = ()
    resumed: dict[str, int] | None = None
    resume_with: str | None = None
    layout: Layout = field(default_factory=Layout)
    throttled: int = 0  # requests answered with a throttling 429 (the app-wide limit)
    throttled_share: float | None = None  # throttled / requests; None without requests
    steady_rate_per_s: float | None = None  # --rate auto: the rate it settled on (all workers)
    # A dry run of an input larger than its read-ahead: `requests` and `user_lookups` as a
    # server slower than the reading would make them (the other end of their range).
    estimate_max: dict[str, int] | None = None

    @property
    def code(self) -> ExitCode:
        """The exit code as the enum."""
        return ExitCode.of_child(self.exit_code)

    @property
    def held_schedule(self) -> bool:
        """The run held a schedule (a load test's rate or the recorded pace): only then
        do the scheduled view and the time behind schedule mean anything."""
        return holds_schedule(self.settings)

    @property
    def target(self) -> str:
        """Where the run's records went, in words (the emulator says nothing reached Leanplum)."""
        return describe_target(str(self.settings.get("endpoint", "")), dry_run=self.dry_run)


# ---- building one process's summary --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counts:
    """What one process counted: rows by outcome (this session and, on resume, before)."""

    delivered: int = 0
    failed_by_kind: Mapping[str, int] = field(default_factory=dict)
    unfinished: int = 0
    requests: int = 0
    user_lookups: int = 0
    retries: int = 0
    ambiguous_attempts: int = 0
    possible_duplicates: int = 0
    outages: int = 0
    lines_read: int = 0
    blank_lines: int = 0
    records_this_session: int = 0
    throttled: int = 0


def build(
    counts: Counts, histograms: Mapping[str, Histogram], *, exit_code: ExitCode,
    started_wall: float, elapsed_s: float, settings: dict[str, Any], inputs: Sequence[str],
    run_id: str, dry_run: bool = False, stopped_by: str | None = None,
    stopped_because: str | None = None, thresholds: Sequence[dict[str, Any]] = (),
    resumed: dict[str, int] | None = None, resume_with: str | None = None,
    layout: Layout | None = None, steady_rate_per_s: float | None = None,
    estimate_max: dict[str, int] | None = None,
) -> RunSummary:
    """The summary of one process (or of a merge): every derived field computed here only."""
    hists = {view: histograms.get(view) or Histogram() for view in VIEWS}
    failed = sum(counts.failed_by_kind.values())
    # A run that wrote failures, in this session or an earlier one, never exits 0.
    code = worst([exit_code, ExitCode.FAILURES if failed else ExitCode.OK])
    elapsed_s = max(elapsed_s, 1e-9)
    return RunSummary(
        state=code.state, exit_code=int(code),
        lines_read=counts.lines_read, blank_lines=counts.blank_lines,
        records=counts.delivered + failed, delivered=counts.delivered, failed=failed,
        unfinished=counts.unfinished,
        failures_by_kind=dict(sorted((k, n) for k, n in counts.failed_by_kind.items() if n)),
        requests=counts.requests, user_lookups=counts.user_lookups, retries=counts.retries,
        ambiguous_attempts=counts.ambiguous_attempts,
        possible_duplicates=counts.possible_duplicates, outages=counts.outages,
        records_this_session=counts.records_this_session,
        records_per_s=round(counts.records_this_session / elapsed_s, 1),
        latency_ms=hists["delivered"].summary(),
        failed_latency_ms=hists["failed"].summary(),
        latency_histogram_ms={view: h.buckets_ms() for view, h in hists.items()},
        latency_max_ms={view: round(h.max_value, 3) for view, h in hists.items() if h.count},
        request_latency_ms={view: hists[view].summary(LOAD_PERCENTILES)
                            for view in ("service", "scheduled")},
        behind_schedule_ms=hists["behind"].summary(LOAD_PERCENTILES),
        started_at=_iso(started_wall), ended_at=_iso(started_wall + elapsed_s),
        elapsed_s=round(elapsed_s, 3), settings=settings,
        inputs=[shown_url(p) for p in inputs], run_id=run_id,
        dry_run=dry_run, stopped_by=stopped_by, stopped_because=stopped_because,
        thresholds=tuple(thresholds), resumed=resumed,
        resume_with=resume_with if code.resumable else None,
        layout=layout or Layout(),
        throttled=counts.throttled,
        throttled_share=round(counts.throttled / counts.requests, 4) if counts.requests
        else None,
        steady_rate_per_s=None if steady_rate_per_s is None else round(steady_rate_per_s, 1),
        estimate_max=estimate_max,
    )


def histograms_of(summary: RunSummary) -> dict[str, Histogram]:
    """The summary's latency views as histograms again (for a merge)."""
    out = {}
    for view in VIEWS:
        pairs = summary.latency_histogram_ms.get(view) or []
        top = summary.latency_max_ms.get(view, pairs[-1][0] if pairs else 0.0)
        out[view] = Histogram.from_buckets_ms(pairs, max_value=top)
    return out


# ---- merging -------------------------------------------------------------------------

_SUMMED = ("delivered", "unfinished", "requests", "user_lookups", "retries",
           "ambiguous_attempts", "possible_duplicates", "outages", "records_this_session",
           "throttled")


def merge(
    parts: Sequence[RunSummary], *, expected: int, started_wall: float, elapsed_s: float,
    settings: dict[str, Any], inputs: Sequence[str], run_id: str,
    extra_codes: Sequence[int] = (), stopped_because: str | None = None,
    resume_with: str | None = None, layout: Layout | None = None,
) -> RunSummary:
    """One summary from the summaries of a run's `expected` processes.

    A process without a summary (`len(parts) < expected`) died: the run is WORKER,
    whatever the others said. `extra_codes` are exit statuses seen from outside
    (a child's own return code), folded in by the same severity rule.
    """
    totals: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    hists = {view: Histogram() for view in VIEWS}
    for part in parts:
        for name in _SUMMED:
            totals[name] += getattr(part, name)
        kinds.update(part.failures_by_kind)
        for view, h in histograms_of(part).items():
            hists[view].merge(h)
    codes = [p.exit_code for p in parts] + list(extra_codes)
    if len(parts) < expected:
        codes.append(ExitCode.WORKER)
        stopped_because = stopped_because or "a worker process died before writing its summary"
    reasons = [p.stopped_because for p in parts if p.stopped_because]
    resumed = [p.resumed for p in parts if p.resumed]
    counts = Counts(
        delivered=totals["delivered"], failed_by_kind=kinds, unfinished=totals["unfinished"],
        requests=totals["requests"], user_lookups=totals["user_lookups"],
        retries=totals["retries"], ambiguous_attempts=totals["ambiguous_attempts"],
        possible_duplicates=totals["possible_duplicates"], outages=totals["outages"],
        # Every process reads every line (each keeps its own users'): the count is one reader's.
        lines_read=max((p.lines_read for p in parts), default=0),
        blank_lines=max((p.blank_lines for p in parts), default=0),
        records_this_session=totals["records_this_session"], throttled=totals["throttled"],
    )
    steady = [p.steady_rate_per_s for p in parts if p.steady_rate_per_s is not None]
    estimate_max = None
    if any(p.estimate_max is not None for p in parts):  # a part within its read-ahead: exact
        estimate_max = {name: sum((p.estimate_max or {}).get(name, getattr(p, name))
                                  for p in parts) for name in ESTIMATED}
    stopped_by = next((p.stopped_by for p in parts if p.stopped_by), None)
    return build(
        counts, hists, exit_code=worst(codes), started_wall=started_wall, elapsed_s=elapsed_s,
        settings=settings, inputs=inputs, run_id=run_id,
        dry_run=any(p.dry_run for p in parts), stopped_by=stopped_by,
        stopped_because=stopped_because or (reasons[0] if reasons else None),
        thresholds=_thresholds(parts),
        resumed={k: sum(r.get(k, 0) for r in resumed) for k in resumed[0]} if resumed else None,
        resume_with=resume_with, layout=layout,
        steady_rate_per_s=sum(steady) if steady else None, estimate_max=estimate_max,
    )


def _thresholds(parts: Sequence[RunSummary]) -> tuple[dict[str, Any], ...]:
    """Every part's threshold verdicts. Each shard judged its own share (a verdict of its
    made the merged exit code), so several parts' verdicts are kept, each naming its shard."""
    if len(parts) == 1:
        return parts[0].thresholds
    return tuple({**verdict, "shard": p.layout.shard,
                  "text": f"shard {p.layout.shard}: {verdict.get('text', '')}"}
                 if p.layout.shard else verdict
                 for p in parts for verdict in p.thresholds)


# ---- the codec -----------------------------------------------------------------------

_OPTIONAL_DEFAULTS = {"dry_run": False, "stopped_by": None, "stopped_because": None,
                      "thresholds": (), "resumed": None, "resume_with": None, "throttled": 0,
                      "throttled_share": None, "steady_rate_per_s": None, "estimate_max": None}


def encode(summary: RunSummary) -> bytes:
    """summary.json's bytes: optional fields only when set, the layout's fields at top level."""
    doc: dict[str, Any] = {}
    for f in dataclasses.fields(RunSummary):
        value = getattr(summary, f.name)
        if f.name == "layout":
            doc["workers"] = value.workers
            if value.shard is not None:
                doc["shard"] = value.shard
            if value.per_worker:
                doc["per_worker"] = list(value.per_worker)
        elif f.name in _OPTIONAL_DEFAULTS and value == _OPTIONAL_DEFAULTS[f.name]:
            continue
        else:
            doc[f.name] = list(value) if isinstance(value, tuple) else value
        if f.name == "exit_code":
            doc["target"] = summary.target  # derived, for people reading the file: not decoded
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


_TYPES: dict[str, type | tuple[type, ...]] = {
    "state": str, "exit_code": int, "lines_read": int, "blank_lines": int, "records": int,
    "delivered": int, "failed": int, "unfinished": int, "failures_by_kind": dict,
    "requests": int, "user_lookups": int, "retries": int, "ambiguous_attempts": int,
    "possible_duplicates": int, "outages": int, "records_this_session": int,
    "records_per_s": (int, float), "latency_ms": dict, "failed_latency_ms": dict,
    "latency_histogram_ms": dict, "latency_max_ms": dict, "request_latency_ms": dict,
    "behind_schedule_ms": dict, "started_at": str, "ended_at": str,
    "elapsed_s": (int, float), "settings": dict, "inputs": list, "run_id": str,
    "version": int, "dry_run": bool, "stopped_by": (str, type(None)),
    "stopped_because": (str, type(None)), "thresholds": list, "resumed": (dict, type(None)),
    "resume_with": (str, type(None)), "throttled": int,
    "throttled_share": (int, float, type(None)), "steady_rate_per_s": (int, float, type(None)),
    "estimate_max": (dict, type(None)),
}


def decode(data: bytes, *, source: str) -> RunSummary:
    """A summary.json read back; SummaryError naming `source` for anything else."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SummaryError(f"{source}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise SummaryError(f"{source}: not a summary (not an object)")
    if doc.get("version") != VERSION:
        raise SummaryError(f"{source}: summary version {doc.get('version')!r}, "
                           f"expected {VERSION}")
    values: dict[str, Any] = {}
    for name, types in _TYPES.items():
        if name not in doc:
            if name in _OPTIONAL_DEFAULTS:
                continue
            raise SummaryError(f"{source}: the field {name} is missing")
        value: Any = doc[name]
        if not isinstance(value, types) or (types is int and isinstance(value, bool)):
            raise SummaryError(f"{source}: the field {name} has the wrong type")
        values[name] = tuple(value) if isinstance(value, list) and name == "thresholds" else value
    workers, shard, per_worker = doc.get("workers", 1), doc.get("shard"), doc.get("per_worker", [])
    if (not isinstance(workers, int) or not isinstance(shard, str | None)
            or not isinstance(per_worker, list)):
        raise SummaryError(f"{source}: the layout fields have the wrong type")
    return RunSummary(**values, layout=Layout(workers, shard, tuple(per_worker)))


def as_dict(summary: RunSummary) -> dict[str, Any]:
    """The summary as the JSON object summary.json holds (for printing and reports)."""
    doc: dict[str, Any] = orjson.loads(encode(summary))
    return doc


def _iso(wall_s: float) -> str:
    return datetime.fromtimestamp(wall_s, UTC).isoformat(timespec="milliseconds")
