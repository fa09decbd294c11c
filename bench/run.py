"""Client benchmark of `replayer run` against a fixed-response server; writes docs/benchmarks.md.

    .venv/bin/python bench/run.py            # full: 200k-record throughput, RSS at 1M and 10M
    .venv/bin/python bench/run.py --quick    # ~7 minutes: 50k records, RSS at 100k and 1M, 20 s ramps

Sections: throughput (baseline aiohttp client, `replayer run --no-batch`, `--batch`,
`--batch --workers 2`, wrk), interleaved run by run so machine drift hits every variant
alike; peak RSS of `replayer run --batch` by input size; the accuracy of `--rate`
measured from the server's arrival log; and how closely `--rate SCHEDULE` (ramps such as
`100..1000/60s`, with `--duration`) follows its plan second by second (bench/schedule_report.py).
Inputs come from `replayer generate` and are cached by size in a temp folder. Stdlib only
(plus the project's own CLI and `replayer.engine.schedule`).
"""

from __future__ import annotations

import argparse
import compileall
import functools
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import schedule_report

from replayer.engine.schedule import parse_rate

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVER = BENCH / "fixed_server.py"
BASELINE = BENCH / "baseline_client.py"
DUMMY_ENV = {"LEANPLUM_APP_ID": "bench-app", "LEANPLUM_CLIENT_KEY": "bench-key"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
STDERR_TAIL_LINES = 6

# The targets of the issue this benchmark answers.
TARGET_BASELINE_RATIO = 0.85  # (b) records/s >= 0.85 x (a)
TARGET_BATCH_RATIO = 10.0  # (c) records/s >= 10 x (b)
TARGET_RSS_MB = 150.0  # peak RSS of `replayer run --batch`, at 1M and at 10M records
TARGET_RATE_ERROR = 0.02  # achieved rate within 2% of --rate
TARGET_WINDOW_FACTOR = 1.5  # no 100 ms window above 1.5 x its share
WINDOW_S = 0.1

WRK_LUA = """\
local f = assert(io.open(os.getenv("BENCH_WRK_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


# ---- measuring one process -------------------------------------------------------------


@dataclass(slots=True)
class Measure:
    """One run of one command: what it cost and whether it did its job."""

    wall_s: float
    cpu_s: float
    maxrss_mb: float
    server_cpu_s: float
    exit_code: int
    records: int  # records (or requests, for wrk) the command reported done
    error: str | None = None  # why the run does not count, with the stderr tail
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def records_per_s(self) -> float:
        return self.records / self.wall_s

    @property
    def cpu_us_per_record(self) -> float:
        return self.cpu_s / self.records * 1e6 if self.records else float("nan")

    @property
    def client_share(self) -> float:
        return self.cpu_s / self.wall_s

    @property
    def server_share(self) -> float:
        return self.server_cpu_s / self.wall_s


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    """The last lines of a text file, for a failure row."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Server:
    """bench/fixed_server.py in a subprocess, pinned when asked."""

    def __init__(self, prefix: list[str], *, log_arrivals: Path | None = None) -> None:
        cmd = [*prefix, sys.executable, str(SERVER)]
        if log_arrivals is not None:
            cmd += ["--log-arrivals", str(log_arrivals)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.proc.kill()
            raise RuntimeError(f"fixed_server did not print its port (got {line!r})")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.report = ""

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def stop(self) -> str:
        """SIGTERM; returns the server's own `requests=N cpu_s=S` line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        self.report = out.strip().splitlines()[-1] if out.strip() else ""
        return self.report


def measure(
    cmd: list[str], *, server: Server, work_dir: Path, timeout_s: float,
    check: Callable[[Path], tuple[int, str | None, dict[str, Any]]],
) -> Measure:
    """Runs `cmd` to the end and measures it; `check(stdout_path)` says how much got done."""
    out_path, err_path = work_dir / "stdout.txt", work_dir / "stderr.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAYER_")}
    env.update(DUMMY_ENV)
    server_before = server.cpu_s()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall_s = time.perf_counter() - started
    proc.returncode = exit_code = os.waitstatus_to_exitcode(status)
    server_cpu_s = server.cpu_s() - server_before
    records, problem, extra = check(out_path)
    error = None
    if exit_code != 0 or problem:
        reasons = [f"exit code {exit_code}"]
        if exit_code == -signal.SIGKILL:
            reasons.append(f"killed after the {timeout_s:.0f} s timeout")
        if problem:
            reasons.append(problem)
        stderr_tail = tail(err_path) or "(empty)"
        error = "; ".join(reasons) + f"; last lines of stderr:\n{stderr_tail}"
    return Measure(
        wall_s=wall_s, cpu_s=usage.ru_utime + usage.ru_stime,
        maxrss_mb=usage.ru_maxrss * 1024 / 1e6, server_cpu_s=server_cpu_s,
        exit_code=exit_code, records=records, error=error, extra=extra,
    )


# ---- what each command reports ---------------------------------------------------------


def check_replayer(out_dir: Path, expected: int) -> Callable[[Path], tuple[int, str | None, dict[str, Any]]]:
    """Reads summary.json: every record must be delivered."""

    def check(_: Path) -> tuple[int, str | None, dict[str, Any]]:
        try:
            summary = orjson.loads((out_dir / "summary.json").read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            return 0, f"no summary.json ({exc})", {}
        delivered = int(summary.get("delivered", 0))
        extra = {"requests": summary.get("requests")}
        if delivered != expected:
            kinds = summary.get("failures_by_kind")
            return delivered, f"delivered {delivered} of {expected} (failures: {kinds})", extra
        return delivered, None, extra

    return check


def check_baseline(expected: int) -> Callable[[Path], tuple[int, str | None, dict[str, Any]]]:
    """Parses `sent=N ok=N ...`: every request must have got HTTP 200."""

    def check(stdout: Path) -> tuple[int, str | None, dict[str, Any]]:
        words = dict(w.split("=", 1) for w in stdout.read_text().split() if "=" in w)
        ok = int(words.get("ok", 0))
        if ok != expected:
            return ok, f"{ok} of {expected} requests answered 200", {}
        return ok, None, {}

    return check


def check_wrk(stdout: Path) -> tuple[int, str | None, dict[str, Any]]:
    """Parses the line our Lua `done()` prints: requests count, wrk's errors must be zero."""
    for line in stdout.read_text().splitlines():
        if line.startswith("WRK "):
            words = dict(w.split("=", 1) for w in line.split()[1:])
            counts = {k: int(v) for k, v in words.items()}
            errors = {k: v for k, v in counts.items()
                      if k not in ("requests", "duration_us") and v}
            extra = {"duration_s": counts["duration_us"] / 1e6}
            return counts["requests"], (f"wrk errors: {errors}" if errors else None), extra
    return 0, "no summary line from wrk", {}


# ---- inputs, pinning, the machine ------------------------------------------------------


def replayer_cmd() -> list[str]:
    """The command that runs this tree's replayer (its modules byte-compiled first)."""
    compile_tree()
    script = Path(sys.executable).parent / "replayer"
    return [str(script)] if script.exists() else [sys.executable, "-m", "replayer"]


@functools.cache
def compile_tree() -> None:
    """Byte-compiles this tree's `replayer` package into its __pycache__ folders, once.

    An installed replayer has its bytecode (pip writes it, as for a revision installed to
    compare with); a source tree gets it on its first import, unless the environment says
    PYTHONDONTWRITEBYTECODE: then every run would compile its ~80 modules again, about
    70 ms that the tree measured, and nothing compared with it, would pay.
    """
    compileall.compile_dir(ROOT / "replayer", quiet=1)


def ensure_input(cache_dir: Path, records: int) -> Path:
    """A `replayer generate` file of `records` records (users = records / 10), cached."""
    users = max(1, records // 10)
    path = cache_dir / f"sessions-{records}-u{users}-seed0.ndjson"
    if path.exists():
        return path
    log(f"generating {records:,} records into {path} (cached for later runs)")
    partial = path.with_suffix(".part")
    subprocess.run(
        [*replayer_cmd(), "generate", "--records", str(records), "--users", str(users),
         "--seed", "0", "-o", str(partial)],
        check=True,
    )
    partial.rename(path)
    return path


def pinning(enabled: bool) -> tuple[list[str], list[str], str]:
    """(server prefix, client prefix, description): taskset on two CPUs when present."""
    cpus = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if not enabled:
        return [], [], "none (--no-pin)"
    if taskset is None or len(cpus) < 2:
        why = "taskset not found" if taskset is None else f"only CPU {cpus} available"
        return [], [], f"none ({why}): server and client share the CPUs"
    server, client = cpus[0], cpus[1]
    return ([taskset, "-c", str(server)], [taskset, "-c", str(client)],
            f"taskset: server on CPU {server}, client on CPU {client}")


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # Read-only git: the tree is shared, so nothing here may touch the index.
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=False,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    version = subprocess.run([*replayer_cmd(), "--version"], check=False, capture_output=True,
                             text=True).stdout.strip()
    return {
        "nproc": str(os.cpu_count()), "cpu": model,
        "python": platform.python_version(), "kernel": platform.release(),
        "replayer": version, "commit": commit,
        "load": load_average(),
    }


def describe(m: Measure) -> str:
    """One line on a run, for progress on stderr."""
    if not m.ok:
        return f"FAILED ({(m.error or '').splitlines()[0]})"
    return (f"{m.records_per_s:,.0f} records/s, {m.wall_s:.2f} s wall, {m.cpu_s:.2f} s CPU, "
            f"{m.maxrss_mb:.0f} MB peak, server {m.server_share:.0%}")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- the sections ----------------------------------------------------------------------


@dataclass(slots=True)
class Variant:
    key: str
    label: str
    build: Callable[[Path], tuple[list[str], Callable[..., Any]]] | None  # None: skipped
    unavailable: str = ""
    runs: list[Measure] = field(default_factory=list)


def throughput(args: argparse.Namespace, tmp: Path, server: Server, client: list[str],
               help_text: str, records: int, path: Path) -> list[Variant]:
    """Interleaves every available variant run by run: a b c d e, a b c d e, ..."""
    rep = replayer_cmd()
    quiet = ["--quiet"] if "--quiet" in help_text else []
    conc = ["--concurrency", str(args.concurrency)]

    def replayer_variant(*flags: str) -> Callable[[Path], tuple[list[str], Callable[..., Any]]]:
        def build(work: Path) -> tuple[list[str], Callable[..., Any]]:
            out = work / "out"
            cmd = [*client, *rep, "run", str(path), "--endpoint", server.url, *flags, *conc,
                   "--out", str(out), "--overwrite", *quiet]
            return cmd, check_replayer(out, records)
        return build

    def baseline(work: Path) -> tuple[list[str], Callable[..., Any]]:
        cmd = [*client, sys.executable, str(BASELINE), str(path), "--endpoint", server.url,
               "--concurrency", str(args.concurrency)]
        return cmd, check_baseline(records)

    wrk = shutil.which("wrk")
    body = tmp / "wrk-body.json"
    lua = tmp / "post.lua"
    if wrk:
        with open(path, "rb") as lines:
            first = orjson.loads(lines.readline())
        auth = {"appId": DUMMY_ENV["LEANPLUM_APP_ID"],
                "clientKey": DUMMY_ENV["LEANPLUM_CLIENT_KEY"], "apiVersion": "1.0.6"}
        body.write_bytes(orjson.dumps({**auth, **first}))
        lua.write_text(WRK_LUA)
        os.environ["BENCH_WRK_BODY"] = str(body)

    def wrk_variant(work: Path) -> tuple[list[str], Callable[..., Any]]:
        assert wrk is not None
        cmd = [*client, wrk, "-t1", f"-c{args.concurrency}", f"-d{args.wrk_seconds}s",
               "-s", str(lua), f"{server.url}?action=start"]
        return cmd, check_wrk

    has_workers = "--workers" in help_text
    one = ["--workers", "1"] if has_workers else []  # the default is one worker per CPU
    variants = [
        Variant("a", "(a) baseline aiohttp client", baseline),
        Variant("b", "(b) replayer run --no-batch", replayer_variant("--no-batch", *one)),
        Variant("c", "(c) replayer run --batch", replayer_variant("--batch", *one)),
        Variant("d", "(d) replayer run --batch --workers 2",
                replayer_variant("--batch", "--workers", "2") if has_workers else None,
                "" if has_workers else "not available: `replayer run --help` lists no --workers"),
        Variant("e", f"(e) wrk -t1 -c{args.concurrency}, one start body, {args.wrk_seconds} s",
                wrk_variant if wrk else None, "" if wrk else "not available: wrk is not on PATH"),
    ]
    for i in range(args.runs):
        for v in variants:
            if v.build is None:
                continue
            work = tmp / f"run-{v.key}"
            work.mkdir(exist_ok=True)
            cmd, check = v.build(work)
            m = measure(cmd, server=server, work_dir=work, timeout_s=args.run_timeout,
                        check=check)
            m.extra["cmd"] = cmd
            v.runs.append(m)
            shutil.rmtree(work / "out", ignore_errors=True)
            log(f"run {i + 1}/{args.runs} {v.label}: {describe(m)}")
    return variants


def rss_section(args: argparse.Namespace, tmp: Path, server: Server, client: list[str],
                help_text: str) -> list[tuple[int, Measure]]:
    quiet = ["--quiet"] if "--quiet" in help_text else []
    rows = []
    for size in args.rss_sizes:
        path = ensure_input(args.cache_dir, size)
        work = tmp / f"rss-{size}"
        work.mkdir(exist_ok=True)
        out = work / "out"
        one = ["--workers", "1"] if "--workers" in help_text else []
        cmd = [*client, *replayer_cmd(), "run", str(path), "--endpoint", server.url, "--batch",
               "--concurrency", str(args.concurrency), "--out", str(out), "--overwrite", *quiet,
               *one]
        m = measure(cmd, server=server, work_dir=work, timeout_s=args.run_timeout,
                    check=check_replayer(out, size))
        m.extra["cmd"] = cmd
        shutil.rmtree(out, ignore_errors=True)
        log(f"rss {size:,} records: {describe(m)}")
        rows.append((size, m))
    return rows


@dataclass(slots=True)
class RateResult:
    measure: Measure
    arrivals: int
    achieved_per_s: float
    max_window: int
    share: float


def max_in_window(times: Sequence[float], window_s: float) -> int:
    """The largest number of sorted times in any half-open window [t, t + window_s)."""
    best = 0
    for i, t in enumerate(times):
        best = max(best, bisect_left(times, t + window_s, i) - i)
    return best


def rate_section(args: argparse.Namespace, tmp: Path, server_prefix: list[str],
                 client: list[str], help_text: str) -> RateResult:
    records = round(args.rate_per_s * args.rate_seconds)
    path = ensure_input(args.cache_dir, records)
    arrivals_path = tmp / "arrivals.txt"
    server = Server(server_prefix, log_arrivals=arrivals_path)
    work = tmp / "rate"
    work.mkdir(exist_ok=True)
    out = work / "out"
    quiet = ["--quiet"] if "--quiet" in help_text else []
    cmd = [*client, *replayer_cmd(), "run", str(path), "--endpoint", server.url, "--no-batch",
           "--rate", f"{args.rate_per_s:g}", "--concurrency", str(args.concurrency),
           "--out", str(out), "--overwrite", *quiet,
           *(["--workers", "1"] if "--workers" in help_text else [])]
    try:
        m = measure(cmd, server=server, work_dir=work, timeout_s=args.run_timeout,
                    check=check_replayer(out, records))
    finally:
        server.stop()
    m.extra["cmd"] = cmd
    times = sorted(float(x) for x in arrivals_path.read_text().split())
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    result = RateResult(
        measure=m, arrivals=len(times), achieved_per_s=len(times) / span,
        max_window=max_in_window(times, WINDOW_S), share=args.rate_per_s * WINDOW_S,
    )
    log(f"rate {args.rate_per_s:g}/s: achieved {result.achieved_per_s:.1f}/s, "
        f"max {result.max_window} in a 100 ms window (share {result.share:g})")
    return result


def check_schedule(out_dir: Path) -> Callable[[Path], tuple[int, str | None, dict[str, Any]]]:
    """Reads summary.json: --duration must have ended the run, with no failed record."""

    def check(_: Path) -> tuple[int, str | None, dict[str, Any]]:
        try:
            summary = orjson.loads((out_dir / "summary.json").read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            return 0, f"no summary.json ({exc})", {}
        delivered = int(summary.get("delivered", 0))
        extra = {"stopped_by": summary.get("stopped_by"), "failed": summary.get("failed"),
                 "behind_ms": summary.get("behind_schedule_ms") or {}}
        if summary.get("stopped_by") != "duration":
            return delivered, ("not stopped by --duration (the input ran out?): "
                               f"stopped_by={summary.get('stopped_by')!r}"), extra
        if summary.get("failed"):
            kinds = summary.get("failures_by_kind")
            return delivered, f"{summary['failed']} records failed ({kinds})", extra
        return delivered, None, extra

    return check


@dataclass(slots=True)
class ScheduleResult:
    spec: str
    duration_s: float
    measure: Measure
    stats: schedule_report.ScheduleStats | None  # None: no arrivals to analyze


def schedule_input_size(specs: Sequence[str], hold_s: float) -> int:
    """Records enough for every schedule with 20 % to spare, rounded up to 10,000."""
    need = max(parse_rate(spec).count_by(
        schedule_report.ramp_seconds(spec) + hold_s) for spec in specs)
    return int(-(-need * 1.2 // 10_000) * 10_000)


def schedule_section(args: argparse.Namespace, tmp: Path, server_prefix: list[str],
                     client: list[str]) -> tuple[int, list[ScheduleResult]]:
    """One `--rate SPEC --duration (ramp + hold)` run per schedule, each with its own server."""
    records = schedule_input_size(args.schedules, args.schedule_hold)
    path = ensure_input(args.cache_dir, records)
    results = []
    for n, spec in enumerate(args.schedules):
        duration_s = schedule_report.ramp_seconds(spec) + args.schedule_hold
        arrivals_path = tmp / f"schedule-{n}-arrivals.txt"
        server = Server(server_prefix, log_arrivals=arrivals_path)
        work = tmp / f"schedule-{n}"
        work.mkdir(exist_ok=True)
        out = work / "out"
        cmd = [*client, *replayer_cmd(), "run", str(path), "--endpoint", server.url,
               "--no-batch", "--workers", "1", "--rate", spec,
               "--duration", schedule_report.duration_text(duration_s),
               "--concurrency", str(args.concurrency), "--quiet", "--out", str(out),
               "--overwrite"]
        try:
            m = measure(cmd, server=server, work_dir=work,
                        timeout_s=min(args.run_timeout, duration_s + 300),
                        check=check_schedule(out))
        finally:
            server.stop()
        m.extra["cmd"] = cmd
        shutil.rmtree(out, ignore_errors=True)
        text = arrivals_path.read_text() if arrivals_path.exists() else ""
        times = sorted(float(x) for x in text.split())
        stats = schedule_report.analyze(spec, duration_s, times) if times else None
        results.append(ScheduleResult(spec, duration_s, m, stats))
        log(f"schedule {spec} for {duration_s:g} s: {describe(m) if not m.ok else 'ok'}; "
            + (schedule_report.summary_line(stats) if stats else "no arrivals"))
    return records, results


# ---- the report ------------------------------------------------------------------------


def spread(values: Sequence[float], fmt: str) -> str:
    """`median (min–max)`, or one value."""
    if not values:
        return "–"
    med = format(statistics.median(values), fmt)
    if len(values) == 1:
        return med
    return f"{med} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def per_run_ratio(top: Variant, bottom: Variant, *, cpu: bool = False) -> list[float]:
    """top/bottom records/s (or records per CPU second) within each run where both succeeded."""
    return [
        b.cpu_us_per_record / t.cpu_us_per_record if cpu else t.records_per_s / b.records_per_s
        for t, b in zip(top.runs, bottom.runs, strict=False) if t.ok and b.ok
    ]


def report(args: argparse.Namespace, info: dict[str, str], pin: str, command: str,
           records: int, variants: list[Variant] | None, rss: list[tuple[int, Measure]] | None,
           rate: RateResult | None, schedules: tuple[int, list[ScheduleResult]] | None,
           started: datetime, elapsed_s: float) -> str:
    failures: list[str] = []
    head = [
        "# Benchmarks: the `replayer run` client",
        "",
        "Down to the line that marks its end, this page is generated by `bench/run.py`: do not",
        "edit that part by hand, rerun it. The sections after that line were measured by the",
        "other scripts in bench/, each with its command; a rerun keeps them as they are.",
        "",
        f"- command: `{command}`",
        f"- date: {started.isoformat(timespec='seconds')} (took {elapsed_s / 60:.1f} min)",
        (f"- machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, "
         f"Python {info['python']}; load average {info['load']} at start, "
         f"{load_average()} at the end"),
        f"- code: {info['replayer']}, commit {info['commit']} (plus any uncommitted changes)",
        f"- pinning: {pin}",
        (f"- server: `bench/fixed_server.py` (raw asyncio.Protocol, fixed answers); "
         f"concurrency {args.concurrency} for every client"),
        "",
    ]
    lines: list[str] = []
    targets: list[tuple[str, str, str, str]] = []

    if variants is not None:
        by = {v.key: v for v in variants}
        lines += [
            f"## Throughput: {records:,} records, {args.runs} runs per variant, interleaved",
            "",
            "Each cell: median (min–max) over the runs. Wall time includes interpreter start-up.",
            "",
            ("| variant | runs ok | records/s | wall s | client CPU s | client CPU share "
             "| CPU µs/record | peak RSS MB | server CPU share |"),
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for v in variants:
            if v.build is None:
                lines.append(f"| {v.label} | {v.unavailable} | | | | | | | |")
                continue
            ok = [m for m in v.runs if m.ok]
            bad = [m for m in v.runs if not m.ok]
            ok_cell = f"{len(ok)}/{len(v.runs)}"
            if bad:
                codes = sorted({m.exit_code for m in bad})
                ok_cell += f" FAILED (exit {', '.join(map(str, codes))})"
                failures += [f"{v.label}, run {v.runs.index(m) + 1}: `{shlex.join(m.extra['cmd'])}`"
                             f"\n\n```\n{m.error}\n```" for m in bad]
            lines.append(
                f"| {v.label} | {ok_cell} | {spread([m.records_per_s for m in ok], ',.0f')} "
                f"| {spread([m.wall_s for m in ok], '.2f')} "
                f"| {spread([m.cpu_s for m in ok], '.2f')} "
                f"| {spread([m.client_share * 100 for m in ok], '.0f')} % "
                f"| {spread([m.cpu_us_per_record for m in ok], ',.0f')} "
                f"| {spread([m.maxrss_mb for m in ok], '.1f')} "
                f"| {spread([m.server_share * 100 for m in ok], '.0f')} % |"
            )
        ratio_rows: list[tuple[str, list[float], float | None, str]] = [
            ("(b)/(a) records/s", per_run_ratio(by["b"], by["a"]), TARGET_BASELINE_RATIO,
             f">= {TARGET_BASELINE_RATIO}"),
            ("(c)/(b) records/s", per_run_ratio(by["c"], by["b"]), TARGET_BATCH_RATIO,
             f">= {TARGET_BATCH_RATIO:g}"),
        ]
        if by["d"].build is not None:
            ratio_rows.append(("(d)/(c) records/s", per_run_ratio(by["d"], by["c"]), None, "–"))
        # Records per client CPU second: what the ratio would be with the client's core to
        # itself; other load on a shared machine moves it far less than records/s.
        ratio_rows += [
            ("(b)/(a) records per client CPU second", per_run_ratio(by["b"], by["a"], cpu=True),
             None, "– (for reading)"),
            ("(c)/(b) records per client CPU second", per_run_ratio(by["c"], by["b"], cpu=True),
             None, "– (for reading)"),
        ]
        lines += [
            "",
            "Ratios are taken within each run, then medianed:",
            "",
            "| ratio | per run | median (min–max) | target | met |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, values, goal, goal_text in ratio_rows:
            verdict = None if goal is None or not values else statistics.median(values) >= goal
            lines.append(f"| {name} | {', '.join(f'{x:.2f}' for x in values) or '–'} "
                         f"| {spread(values, '.2f')} | {goal_text} | {met(verdict)} |")
            if goal is not None:
                targets.append((name, goal_text, spread(values, ".2f"), met(verdict)))
        lines.append("")

    if rss is not None:
        lines += [
            "## Peak RSS of `replayer run --batch` by input size (one run each)",
            "",
            "| records | peak RSS MB | wall s | records/s | client CPU s | result | target | met |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for size, m in rss:
            verdict = m.maxrss_mb <= TARGET_RSS_MB if m.ok else None
            result = "ok" if m.ok else f"FAILED (exit {m.exit_code})"
            if not m.ok:
                failures.append(f"RSS at {size:,}: `{shlex.join(m.extra['cmd'])}`"
                                f"\n\n```\n{m.error}\n```")
            lines.append(f"| {size:,} | {m.maxrss_mb:.1f} | {m.wall_s:.1f} "
                         f"| {m.records_per_s:,.0f} | {m.cpu_s:.1f} | {result} "
                         f"| <= {TARGET_RSS_MB:g} MB | {met(verdict)} |")
            targets.append((f"peak RSS, --batch, {size:,} records", f"<= {TARGET_RSS_MB:g} MB",
                            f"{m.maxrss_mb:.1f} MB", met(verdict)))
        lines.append("")

    if rate is not None:
        m = rate.measure
        pct = rate.achieved_per_s / args.rate_per_s * 100
        rate_ok = abs(pct - 100) <= TARGET_RATE_ERROR * 100 if m.ok else None
        window_ok = rate.max_window <= TARGET_WINDOW_FACTOR * rate.share if m.ok else None
        run_state = "ok" if m.ok else f"FAILED (exit {m.exit_code})"
        if not m.ok:
            failures.append(f"rate: `{shlex.join(m.extra['cmd'])}`\n\n```\n{m.error}\n```")
        lines += [
            (f"## Rate accuracy: `replayer run --no-batch --rate {args.rate_per_s:g}`, "
             f"{round(args.rate_per_s * args.rate_seconds):,} records (one run)"),
            "",
            "Measured from the server's arrival log (monotonic time of each request).",
            "",
            "| figure | measured | target | met |",
            "| --- | --- | --- | --- |",
            (f"| run | {run_state}, {m.wall_s:.1f} s wall, "
             f"{m.cpu_s:.1f} s client CPU | | |"),
            f"| requests arrived | {rate.arrivals:,} | | |",
            (f"| achieved rate (requests / (last − first arrival)) "
             f"| {rate.achieved_per_s:.1f}/s = {pct:.2f} % of --rate "
             f"| within ±{TARGET_RATE_ERROR:.0%} | {met(rate_ok)} |"),
            (f"| most requests in any 100 ms sliding window | {rate.max_window} "
             f"({rate.max_window / rate.share:.2f}x its share of {rate.share:g}) "
             f"| <= {TARGET_WINDOW_FACTOR * rate.share:g} ({TARGET_WINDOW_FACTOR:g}x) "
             f"| {met(window_ok)} |"),
            "",
        ]
        targets.append((f"achieved rate at --rate {args.rate_per_s:g}", f"within ±{TARGET_RATE_ERROR:.0%}",
                        f"{pct:.2f} %", met(rate_ok)))
        targets.append(("most requests in a 100 ms window",
                        f"<= {TARGET_WINDOW_FACTOR * rate.share:g}", str(rate.max_window),
                        met(window_ok)))

    if schedules is not None:
        lines += schedule_lines(args, *schedules, failures, targets)

    summary = ["## Targets", "", "| target | wanted | measured | met |", "| --- | --- | --- | --- |"]
    summary += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets]
    lines = [*head, *summary, "", *lines]
    if failures:
        lines += ["## Failed runs", "", *[f"- {f}\n" for f in failures]]
    lines += [
        "## How to read this",
        "",
        "- The server answers from memory, on its own CPU when pinned, so the figures are the",
        "  client's cost. *server CPU share* is the server's CPU seconds (from /proc) over the",
        "  run's wall seconds; a low share means the server waited on the client. The wrk row",
        "  shows what the server answers when the client costs almost nothing: the ceiling of",
        "  this set-up (the kernel's loopback work is not counted in either process's CPU).",
        "- *client CPU s* and *peak RSS* come from `os.wait4` on the client process (its CPU",
        "  includes any child processes it waited for; RSS is the largest single process).",
        "  *client CPU share* near 100 % means the client was CPU-bound; well below it, on this",
        "  shared machine, usually means other processes took the client's CPU during that run.",
        "  *CPU µs/record* (client CPU over records) is then the steadier figure, and the",
        "  'records per client CPU second' ratios compare variants by it.",
        "- (a) does far less than (b): no validation, no per-user ordering, no retries, no output",
        "  rows; (b)/(a) is the price of those guarantees. (c) packs many records into each",
        "  `multi` call, so its records/s is not bounded by requests/s.",
        "- Variants run interleaved (a b c d e, a b c d e, ...) so drift on this shared machine hits",
        "  them alike; look at min–max before trusting a difference smaller than that spread.",
        "- With pinning, every client process (and (d)'s workers) shares the one client CPU.",
        "- Peak RSS, rate accuracy and each schedule are single runs: rerun before reading much",
        "  into a small miss.",
        "- Schedules: seconds count from the first arrival, which is request 0 of the plan (due",
        "  at t = 0); *planned* is `count_by(t + 1) - count_by(t)` of `replayer.engine.schedule`, cut at",
        "  the --duration. The first second holds start-up and the last is cut short by",
        "  --duration, so the worst and mean deviations leave both out.",
        "- `--quick` uses smaller inputs than the full run; rerun without it for the real figures.",
        "",
    ]
    return "\n".join(lines)


# The line after the generated part of the page; what follows it is kept by a rerun.
GENERATED_END = ("<!-- end of what bench/run.py generates; the sections below were measured by "
                 "other scripts in bench/ and are kept when it runs again -->")


def with_measured(generated: str, previous: str) -> str:
    """The page: the `generated` part, the end line, then whatever followed that line in the
    `previous` page (the sections measured by the other scripts), unchanged."""
    _, found, measured = previous.partition(GENERATED_END)
    return generated.rstrip("\n") + "\n\n" + GENERATED_END + "\n" + (
        measured.lstrip("\n") and "\n" + measured.lstrip("\n") if found else "")


def behind_text(behind: dict[str, Any]) -> str:
    shown = [f"{k} {behind[k]:,.1f}" for k in ("p50", "p99", "max") if behind.get(k) is not None]
    return ", ".join(shown) or "not reported"


def schedule_lines(args: argparse.Namespace, records: int, results: list[ScheduleResult],
                   failures: list[str], targets: list[tuple[str, str, str, str]]) -> list[str]:
    """One sub-section per schedule: the command, the run, the table; target rows appended."""
    lines = [
        ("## Rate schedules: `replayer run --no-batch --rate SCHEDULE --duration D` "
         "(one run per schedule)"),
        "",
        (f"Each run lasts its ramp plus {args.schedule_hold:g} s of holding the end rate, so"
         " one run per schedule; measured from the server's arrival log (monotonic time of"
         f" each request). Input: {records:,} generated records, more than any schedule plans,"
         " so --duration ends every run. The table shows every"
         f" {schedule_report.TABLE_STEP_S}th second; the summary covers all of them."),
        "",
    ]
    for r in results:
        m, st = r.measure, r.stats
        state = "ok" if m.ok else f"FAILED (exit {m.exit_code})"
        if not m.ok:
            failures.append(f"schedule {r.spec}: `{shlex.join(m.extra['cmd'])}`"
                            f"\n\n```\n{m.error}\n```")
        lines += [
            f"### `--rate {r.spec} --duration {schedule_report.duration_text(r.duration_s)}`",
            "",
            f"- command: `{shlex.join(m.extra['cmd'])}`",
            (f"- run: {state}, {m.wall_s:.1f} s wall, {m.cpu_s:.1f} s client CPU "
             f"({m.client_share:.0%}), server CPU {m.server_share:.0%}; delivered "
             f"{m.records:,}, failed {m.extra.get('failed')}, stopped by "
             f"{m.extra.get('stopped_by')}"),
            ("- the client's own `behind_schedule_ms` (summary.json: how late each request went "
             "against its planned time): " + behind_text(m.extra.get("behind_ms") or {})),
            "",
        ]
        if st is None:
            lines += ["No request arrived.", ""]
            continue
        lines += [*schedule_report.table(st), ""]
        sent_ok = abs(st.sent_pct - 100) <= TARGET_RATE_ERROR * 100 if m.ok else None
        window_ok = st.highest.ratio <= TARGET_WINDOW_FACTOR if m.ok else None
        targets.append((f"sent vs planned, --rate {r.spec} (the --rate target)",
                        f"within ±{TARGET_RATE_ERROR:.0%}", f"{st.sent_pct:.2f} %", met(sent_ok)))
        targets.append((f"highest 100 ms window over its planned share, --rate {r.spec}",
                        f"<= {TARGET_WINDOW_FACTOR:g}x", f"{st.highest.ratio:.2f}x",
                        met(window_ok)))
    return lines


# ---- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smaller inputs (throughput 50k, RSS at 100k and 1M, 20 s ramps): ~7 minutes")
    p.add_argument("--runs", type=int, default=3, help="runs per throughput variant [3]")
    p.add_argument("--records", type=int, default=None,
                   help="records per throughput run [200000; 50000 with --quick]")
    p.add_argument("--rss-sizes", default=None,
                   help="comma-separated input sizes for peak RSS [1000000,10000000; "
                        "100000,1000000 with --quick]")
    p.add_argument("--concurrency", type=int, default=64,
                   help="requests in flight for every client (replayer's default) [64]")
    p.add_argument("--wrk-seconds", type=int, default=None, help="wrk duration [10; 5 quick]")
    p.add_argument("--rate-per-s", type=float, default=1000.0, help="--rate to check [1000]")
    p.add_argument("--rate-seconds", type=float, default=30.0,
                   help="seconds worth of records for the rate check [30]")
    p.add_argument("--schedules", default=None,
                   help="';'-separated --rate schedules to check [50..500/60s;100..1000/60s;"
                        "200..2000/60s; the same over 20s with --quick]")
    p.add_argument("--schedule-hold", type=float, default=5.0,
                   help="seconds of the end rate after each schedule's ramps (--duration is "
                        "ramps + hold) [5]")
    p.add_argument("--sections", default="throughput,rss,rate,schedule",
                   help="which sections to run [throughput,rss,rate,schedule]")
    p.add_argument("--cache-dir", type=Path,
                   default=Path(tempfile.gettempdir()) / "replayer-bench-inputs",
                   help="where generated inputs are kept between runs")
    p.add_argument("--run-timeout", type=float, default=3600.0,
                   help="seconds before a client run is killed [3600]")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md",
                   help="the Markdown file to write [docs/benchmarks.md]")
    args = p.parse_args(argv)
    args.records = args.records or (50_000 if args.quick else 200_000)
    sizes = args.rss_sizes or ("100000,1000000" if args.quick else "1000000,10000000")
    args.rss_sizes = [int(s) for s in sizes.split(",") if s.strip()]
    args.wrk_seconds = args.wrk_seconds or (5 if args.quick else 10)
    args.sections = {s.strip() for s in args.sections.split(",")}
    unknown = args.sections - {"throughput", "rss", "rate", "schedule"}
    if unknown:
        p.error(f"unknown --sections: {', '.join(sorted(unknown))}")
    ramp = "20s" if args.quick else "60s"
    specs = args.schedules or f"50..500/{ramp};100..1000/{ramp};200..2000/{ramp}"
    args.schedules = [s.strip() for s in specs.split(";") if s.strip()]
    for spec in args.schedules:
        try:
            parse_rate(spec)
        except ValueError as e:
            p.error(str(e))
    if args.schedule_hold < 0:
        p.error("--schedule-hold must be >= 0")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def display_command() -> str:
    exe = Path(sys.executable)
    shown = str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else str(exe)
    script = Path(sys.argv[0]).resolve()
    script_shown = str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else str(script)
    return shlex.join([shown, script_shown, *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    info = machine()
    server_prefix, client_prefix, pin = pinning(not args.no_pin)
    help_text = subprocess.run([*replayer_cmd(), "run", "--help"], capture_output=True,
                               text=True, check=True).stdout
    log(f"pinning: {pin}")
    variants = rss = rate = schedules = None
    with tempfile.TemporaryDirectory(prefix="replayer-bench-") as tmp_name:
        tmp = Path(tmp_name)
        path = ensure_input(args.cache_dir, args.records) if "throughput" in args.sections else None
        server = Server(server_prefix)
        try:
            if path is not None:
                variants = throughput(args, tmp, server, client_prefix, help_text,
                                      args.records, path)
            if "rss" in args.sections:
                rss = rss_section(args, tmp, server, client_prefix, help_text)
        finally:
            log(f"throughput server: {server.stop()}")
        if "rate" in args.sections:
            rate = rate_section(args, tmp, server_prefix, client_prefix, help_text)
        if "schedule" in args.sections:
            schedules = schedule_section(args, tmp, server_prefix, client_prefix)
    text = report(args, info, pin, display_command(), args.records, variants, rss, rate,
                  schedules, started, time.monotonic() - t0)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    text = with_measured(text, args.doc.read_text() if args.doc.exists() else "")
    args.doc.write_text(text)
    print(text)
    log(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
