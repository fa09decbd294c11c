"""`--workers N`: N processes, each replaying the users whose stable hash falls in its share.

The parent starts the endpoint (the embedded emulator, if asked), spawns the workers in
their own sessions (so a Ctrl-C reaches the parent once and is forwarded once), waits,
and merges their folders (`workers/I/` under --out) into one results.ndjson, one
failures.ndjson, one metrics.ndjson and one summary.json. A worker dies with its parent
(PR_SET_PDEATHSIG), so `kill -9` of the parent leaves no orphan sending requests.
Resume continues each worker's folder; it needs the same number of workers.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import math
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import orjson

from replayer.config import Secret, Settings
from replayer.engine.replay import (
    EXIT_FAILURES,
    EXIT_INPUT,
    EXIT_INVALID_KEY,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_WORKER,
    LOAD_PERCENTILES,
    RunControl,
    RunReport,
    fingerprint_or_none,
    open_endpoint,
    replay,
    tune_gc,
)
from replayer.observe.logs import setup_logging
from replayer.observe.stats import Histogram
from replayer.output.journal import RUN, ResumeError, load_resume, previous_run
from replayer.output.sinks import (
    FAILURES,
    METRICS,
    REQUESTS,
    RESULTS,
    SUMMARY,
    WORKERS_DIR,
    write_json_atomic,
)
from replayer.source.read import is_stream
from replayer.source.shard import Shard

_SETTINGS_ENV = "REPLAYER_WORKER_SETTINGS"
_KEY_ENV = "REPLAYER_WORKER_CLIENT_KEY"
_PATH_FIELDS = ("out_dir", "client_key_file")
# Worst first: the merged exit code is the most serious one any worker gave.
_SEVERITY = (EXIT_WORKER, EXIT_INVALID_KEY, EXIT_INPUT, EXIT_SIGTERM, EXIT_SIGINT,
             EXIT_FAILURES, EXIT_OK)


def worker_count(settings: Settings, paths: Sequence[str]) -> int:
    """How many workers to run: the setting (0 = one per CPU); 1 for stdin or a pipe (read once)."""
    # A load test runs in one process: one schedule, one clock, one set of latency views.
    if any(is_stream(p) for p in paths) or settings.is_load_test():
        return 1
    return settings.workers or os.cpu_count() or 1


async def run_workers(
    settings: Settings, paths: Sequence[str], out_dir: Path, count: int, *,
    control: RunControl, resume_command: str | None,
) -> RunReport:
    """Runs `count` worker processes and merges what they wrote into `out_dir`."""
    started_wall, started = time.time(), time.monotonic()
    async with AsyncExitStack() as stack:
        endpoint = await open_endpoint(settings, stack)
        share = dataclasses.replace(
            settings, endpoint=endpoint.url, app_id=endpoint.app_id, workers=1,
            concurrency=math.ceil(settings.concurrency / count),
            rate_per_s=settings.rate_per_s / count if settings.rate_per_s else None,
        )
        env = {**os.environ, _SETTINGS_ENV: _settings_json(share), _KEY_ENV: endpoint.client_key}
        write_json_atomic(out_dir / RUN, _run_doc(paths, count, resume_command, "running",
                                                  settings.endpoint))
        procs = [await _spawn(i, count, out_dir, paths, env, resume=settings.resume)
                 for i in range(count)]
        forward = asyncio.create_task(_forward_signals(control, procs))
        codes = [await proc.wait() for proc in procs]
        forward.cancel()
    summary = merge_outputs(out_dir, count, settings=settings, started_wall=started_wall,
                            elapsed_s=time.monotonic() - started)
    if summary["state"] == "aborted" and not summary.get("stopped_because"):
        codes.append(EXIT_WORKER)  # a worker died without writing its summary
        summary["stopped_because"] = "a worker process died; see its messages above"
    exit_code = next(c for c in _SEVERITY if c in codes or c == EXIT_OK)
    summary["exit_code"] = exit_code
    if resume_command is not None and exit_code not in (EXIT_OK, EXIT_FAILURES):
        summary["resume_with"] = resume_command
    write_json_atomic(out_dir / SUMMARY, summary)
    write_json_atomic(out_dir / RUN, _run_doc(paths, count, resume_command, summary["state"],
                                                  settings.endpoint))
    return RunReport(exit_code, summary, out_dir)


def check_resume(out_dir: Path, paths: Sequence[str], count: int, *, endpoint: str) -> None:
    """Refuses a resume with other inputs, another endpoint or another worker count."""
    previous = previous_run(out_dir, paths)
    if previous.get("endpoint", endpoint) != endpoint:
        raise ResumeError(
            f"the run in {out_dir} was sending to {previous['endpoint']}, not {endpoint}; "
            f"resume it with --endpoint {previous['endpoint']} (and the same credentials)"
        )
    if previous.get("workers", 1) != count:
        raise ResumeError(
            f"the run in {out_dir} used {previous.get('workers', 1)} worker(s); resume it with "
            f"--workers {previous.get('workers', 1)} (users are shared out by worker count)"
        )


def _run_doc(paths: Sequence[str], count: int, resume_command: str | None, state: str,
             endpoint: str) -> dict[str, Any]:
    return {"version": 1, "state": state, "workers": count, "endpoint": endpoint,
            "inputs": fingerprint_or_none(paths), "resume_with": resume_command}


async def _spawn(index: int, count: int, out_dir: Path, paths: Sequence[str],
                 env: dict[str, str], *, resume: bool) -> asyncio.subprocess.Process:
    folder = out_dir / WORKERS_DIR / str(index)
    folder.mkdir(parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "replayer.workers.main", str(index), str(count), str(folder),
        "resume" if resume else "new", *paths,
        env=env, start_new_session=True, stdin=asyncio.subprocess.DEVNULL,
    )


async def _forward_signals(control: RunControl,
                           procs: list[asyncio.subprocess.Process]) -> None:
    """Passes the parent's stop on to every worker, and a second stop as SIGUSR1.

    A distinct signal for "at once": two SIGINTs sent back to back can merge into one
    pending signal, and the worker would only drain.
    """
    await control.stopping.wait()
    signum = signal.SIGTERM if control.stop_reason == "SIGTERM" else signal.SIGINT
    _signal_all(procs, signum)
    await control.hard_stop.wait()
    _signal_all(procs, signal.SIGUSR1)


def _signal_all(procs: list[asyncio.subprocess.Process], signum: int) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signum)


def _settings_json(settings: Settings) -> str:
    doc = {f.name: getattr(settings, f.name) for f in dataclasses.fields(Settings)
           if f.name != "client_key"}
    for name in _PATH_FIELDS:
        doc[name] = str(doc[name]) if doc[name] is not None else None
    return orjson.dumps(doc).decode()


def _settings_from_env() -> Settings:
    doc = orjson.loads(os.environ.pop(_SETTINGS_ENV))
    for name in _PATH_FIELDS:
        doc[name] = Path(doc[name]) if doc[name] is not None else None
    return Settings(**doc, client_key=Secret(os.environ.pop(_KEY_ENV)))


# ---- merging ---------------------------------------------------------------------------


def merge_outputs(out_dir: Path, count: int, *, settings: Settings, started_wall: float,
                  elapsed_s: float) -> dict[str, Any]:
    """Writes one set of output files from the workers' folders; returns the merged summary."""
    folders = [out_dir / WORKERS_DIR / str(i) for i in range(count)]
    for name in (RESULTS, FAILURES, REQUESTS):
        if any((f / name).exists() for f in folders):
            _concatenate([f / name for f in folders], out_dir / name)
    _merge_metrics([f / METRICS for f in folders], out_dir / METRICS)
    parts = [orjson.loads((f / SUMMARY).read_bytes()) for f in folders if (f / SUMMARY).exists()]
    return _merge_summaries(parts, count, settings=settings, started_wall=started_wall,
                            elapsed_s=elapsed_s)


def _concatenate(sources: list[Path], target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as out:
        for source in sources:
            if source.exists():
                with open(source, "rb") as f:
                    while chunk := f.read(1 << 20):
                        out.write(chunk)
    os.replace(tmp, target)


def _merge_metrics(sources: list[Path], target: Path) -> None:
    """One row per second: counts summed, latency percentiles the worst of the workers'."""
    by_second: dict[int, dict[str, Any]] = {}
    for source in sources:
        if not source.exists():
            continue
        for raw in source.read_bytes().splitlines():
            row = orjson.loads(raw)
            second = int(row["t"])
            merged = by_second.setdefault(second, {"t": float(second), "failed_by_kind": {},
                                                   "latency_ms": {}, "outage": False})
            for key, value in row.items():
                if key in ("t", "elapsed_s"):
                    merged[key] = max(merged.get(key, 0.0), value)
                elif key == "failed_by_kind":
                    merged[key] = dict(Counter(merged[key]) + Counter(value))
                elif key in ("latency_ms", "scheduled_latency_ms"):
                    seen = merged.get(key, {})
                    merged[key] = {p: _max_or_none(seen.get(p), v) for p, v in value.items()}
                elif key == "latency_buckets_ms":
                    merged[key] = _add_buckets(merged.get(key, []), value)
                elif key == "bytes_total":
                    merged[key] = value
                elif key == "outage":
                    merged[key] = merged[key] or value
                elif key in ("lines_read", "bytes_read"):
                    merged[key] = max(merged.get(key, 0), value)  # every worker reads all lines
                elif value is not None:
                    merged[key] = (merged.get(key) or 0) + value
    target.write_bytes(b"".join(orjson.dumps(by_second[s]) + b"\n" for s in sorted(by_second)))


def _add_buckets(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    counts: Counter[float] = Counter()
    for upper, n in (*a, *b):
        counts[upper] += int(n)
    return [[upper, counts[upper]] for upper in sorted(counts)]


def _max_or_none(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _merge_summaries(parts: list[dict[str, Any]], count: int, *, settings: Settings,
                     started_wall: float, elapsed_s: float) -> dict[str, Any]:
    totals: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    hists: dict[str, Histogram] = defaultdict(Histogram)
    for part in parts:
        for key in ("records", "delivered", "failed", "unfinished", "requests", "user_lookups",
                    "retries",
                    "ambiguous_attempts", "possible_duplicates", "outages"):
            totals[key] += part.get(key, 0)
        kinds.update(part.get("failures_by_kind", {}))
        for outcome, pairs in part.get("latency_histogram_ms", {}).items():
            # The top bucket's edge stands in for the max (within 1% of it).
            top = pairs[-1][0] if pairs else 0.0
            hists[outcome].merge(Histogram.from_buckets_ms(pairs, max_value=top))
    states = {p.get("state") for p in parts}
    state = next((s for s in ("aborted", "interrupted") if s in states), "finished")
    first = parts[0] if parts else {}
    this_run = sum(p.get("records_per_s", 0) * p.get("elapsed_s", 0) for p in parts)
    summary: dict[str, Any] = {
        "state": state if len(parts) == count else "aborted",
        "lines_read": first.get("lines_read", 0),
        "blank_lines": first.get("blank_lines", 0),
        **{k: totals[k] for k in ("records", "delivered", "failed", "unfinished")},
        "failures_by_kind": dict(sorted(kinds.items())),
        **{k: totals[k] for k in ("requests", "user_lookups", "retries", "ambiguous_attempts",
                                  "possible_duplicates", "outages")},
        "records_per_s": round(this_run / max(elapsed_s, 1e-9), 1),
        "latency_ms": hists["delivered"].summary(),
        "failed_latency_ms": hists["failed"].summary(),
        "latency_histogram_ms": {k: h.buckets_ms() for k, h in hists.items()},
        "request_latency_ms": {view: hists[view].summary(LOAD_PERCENTILES)
                               for view in ("service", "scheduled")},
        "started_at": _iso(started_wall),
        "ended_at": _iso(started_wall + elapsed_s),
        "elapsed_s": round(elapsed_s, 3),
        "settings": settings.redacted(),
        "workers": count,
        **({"dry_run": True} if settings.dry_run else {}),
        "per_worker": [{k: p.get(k) for k in ("state", "exit_code", "records", "delivered",
                                              "failed", "unfinished")} for p in parts],
    }
    reasons = [p["stopped_because"] for p in parts if p.get("stopped_because")]
    if reasons:
        summary["stopped_because"] = reasons[0]
    resumed = [p["resumed"] for p in parts if p.get("resumed")]
    if resumed:
        summary["resumed"] = {k: sum(r[k] for r in resumed) for k in resumed[0]}
    return summary


def _iso(wall_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(wall_s, UTC).isoformat(timespec="milliseconds")


# ---- the worker process ----------------------------------------------------------------


def die_with_parent() -> None:
    """Asks Linux to SIGKILL this process when its parent dies (no orphans after kill -9)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: a kill -9 of the parent may leave workers finishing their share
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def _on_worker_signal(control: RunControl, signum: int) -> None:
    if signum == signal.SIGUSR1:
        control.request_stop(control.stop_reason or "SIGINT")
        control.hard_stop.set()
    else:
        control.request_stop(signal.Signals(signum).name)


async def _work(index: int, count: int, folder: Path, resume: bool,
                paths: list[str], early_signals: list[int]) -> int:
    control = RunControl()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        loop.add_signal_handler(signum, _on_worker_signal, control, signum)
    for early in early_signals:
        _on_worker_signal(control, early)
    settings = dataclasses.replace(_settings_from_env(), out_dir=folder)
    setup_logging(fmt=settings.log_format, level=settings.log_level, quiet=settings.quiet)
    state = load_resume(folder, paths) if resume and (folder / RUN).exists() else None
    report = await replay(settings, paths, folder, control=control, resume=state,
                          shard=Shard(index, count))
    return report.exit_code


def main(argv: list[str], *, early_signals: list[int]) -> int:
    """One worker (see main.py): INDEX COUNT FOLDER new|resume PATH..."""
    index, count, folder, mode, *paths = argv
    tune_gc()
    return asyncio.run(_work(int(index), int(count), Path(folder), mode == "resume", paths,
                             early_signals))
