"""--rate auto against limits it is not told: `replayer emulate --limit-rps` in a process of
its own on 127.0.0.1, and `replayer run --rate auto` against it.

Per case: goodput (requests answered 200 per second, from the client's metrics.ndjson:
requests minus 429s) as a share of the limit in steady state (from 5 s after the start or
the change), the time until a second first reaches 90% of the limit after the start and
after the change, the share of requests answered 429, and whether every line has its row
with none failed. Then "no limit": --rate auto against an unpaced run of the same input.

    .venv/bin/python bench/rate_auto.py [--quick] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson

REPLAYER = [sys.executable, "-m", "replayer.cli"]
KEY = "emulator-prod-key"
STEADY_AFTER_S = 5.0  # steady state: from this long after the start (or the change)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    limit: str  # --limit-rps
    seconds: float  # the input holds about this many seconds at the limit
    batch: bool = False
    workers: int = 1
    extra: tuple[str, ...] = ()

    def steps(self) -> list[tuple[float, float]]:
        out = []
        for item in self.limit.split(","):
            rate, _, at = item.partition("@")
            out.append((float(at.rstrip("s")) if at else 0.0, float(rate)))
        return out


BATCH = ("--batch", "--batch-users", "4", "--batch-actions", "4")
CASES = (
    Case("50/s, no batch", "50", 20),
    Case("400/s, no batch", "400", 20),
    Case("2,000/s, no batch", "2000", 20),
    Case("50/s, batched (4 users a call)", "50", 20, batch=True, extra=BATCH),
    Case("400/s, batched (4 users a call)", "400", 20, batch=True, extra=BATCH),
    Case("400/s halving to 200/s at 15 s, no batch", "400,200@15s", 30),
    Case("400/s halving to 200/s at 15 s, batched", "400,200@15s", 30, batch=True,
         extra=BATCH),
    Case("400/s, --workers 2, no batch", "400", 20, workers=2),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator(limit: str | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [*REPLAYER, "emulate", "--port", str(port)]
    if limit:
        cmd += ["--limit-rps", limit]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    if "listening" not in line:
        proc.kill()
        raise RuntimeError(f"the emulator did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"


def generate(path: Path, records: int, users: int) -> None:
    subprocess.run([*REPLAYER, "generate", "--records", str(records), "--users", str(users),
                    "-o", str(path)], check=True, timeout=300)


def replay(data: Path, out: Path, base: str, args: list[str]) -> tuple[float, dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAYER_")}
    env["LEANPLUM_CLIENT_KEY"] = KEY
    cmd = [*REPLAYER, "run", str(data), "--out", str(out), "--quiet",
           "--endpoint", f"{base}/api", "--app-id", "emulator-app", *args]
    started = time.time()
    proc = subprocess.run(cmd, env=env, timeout=900, capture_output=True, check=False)
    summary = orjson.loads((out / "summary.json").read_bytes())
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"replayer run exited {proc.returncode}: {proc.stderr[-2000:]!r}")
    return started, summary


def metrics(out: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in (out / "metrics.ndjson").read_bytes().splitlines()
            if line.strip()]


def goodput(row: dict[str, object]) -> int:
    limited = row.get("limited_by_cause") or {}
    assert isinstance(limited, dict)
    requests = row["requests"]
    assert isinstance(requests, int)
    return requests - sum(limited.values())


def time_to_90(rows: list[dict[str, object]], since_wall: float, limit: float) -> float | None:
    for row in rows:
        t = float(row["t"])  # type: ignore[arg-type]
        if t > since_wall + 0.5 and goodput(row) >= 0.9 * limit:
            return t - since_wall
    return None


def steady_share(rows: list[dict[str, object]], start_wall: float, end_wall: float,
                 limit: float) -> float | None:
    # A row covers the second before its t; the run's last row is cut short: left out.
    inside = [goodput(r) for r in rows[:-1]
              if start_wall + STEADY_AFTER_S + 1 <= float(r["t"]) <= end_wall]  # type: ignore[arg-type]
    return sum(inside) / len(inside) / limit if inside else None


def run_case(case: Case, work: Path, scale: float) -> dict[str, object]:
    steps = case.steps()
    per_call = 4 if case.batch else 1
    seconds = case.seconds * scale
    records = int(sum(rate * seconds / len(steps) for _, rate in steps) * per_call * 1.02)
    data = work / f"in-{abs(hash(case.name))}.ndjson"
    generate(data, records, max(records // 4, 10))
    emulator, base = start_emulator(case.limit)
    try:
        out = work / f"out-{abs(hash(case.name))}"
        args = ["--rate", "auto", "--workers", str(case.workers), *case.extra]
        if not case.batch:
            args.append("--no-batch")
        urllib.request.urlopen(urllib.request.Request(f"{base}/_emulator/reset", method="POST"),
                               timeout=10).read()
        reset_wall = time.time()
        _, summary = replay(data, out, base, args)
        state = orjson.loads(urllib.request.urlopen(f"{base}/_emulator/state",
                                                    timeout=30).read())
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    rows = metrics(out)
    end_wall = float(rows[-1]["t"])  # type: ignore[arg-type]
    # The run's own start (its clock, not the process's): the first row's time less its age.
    started = float(rows[0]["t"]) - float(rows[0]["elapsed_s"])  # type: ignore[arg-type]
    first_rate = steps[0][1]
    result: dict[str, object] = {
        "case": case.name, "records": records, "lines": summary["lines_read"],
        "delivered": summary["delivered"], "failed": summary["failed"],
        "unfinished": summary["unfinished"],
        "throttled_share": summary.get("throttled_share"),
        "steady_rate": summary.get("steady_rate_per_s"),
        "requests_429": state["counters"]["requests_by_status"].get("429", 0),
        "requests": state["counters"]["requests"],
        "start_90_s": time_to_90(rows, started, first_rate),
    }
    if len(steps) == 1:
        result["steady"] = steady_share(rows, started, end_wall, first_rate)
    else:
        change_wall = reset_wall + steps[1][0]
        result["steady"] = steady_share(rows, started, change_wall, first_rate)
        result["steady_after"] = steady_share(rows, change_wall, end_wall, steps[1][1])
        result["change_90_s"] = time_to_90(rows, change_wall, steps[1][1])
    if case.workers > 1:
        shares = []
        for i in range(case.workers):
            part = metrics(out / "workers" / str(i))
            inside = [goodput(r) for r in part[:-1]
                      if started + STEADY_AFTER_S + 1 <= float(r["t"])]  # type: ignore[arg-type]
            shares.append(sum(inside) / len(inside) if inside else 0.0)
        result["per_worker"] = shares
    return result


def no_limit(work: Path, scale: float) -> dict[str, object]:
    records = int(20_000 * scale)
    data = work / "in-nolimit.ndjson"
    generate(data, records, records // 4)
    out: dict[str, object] = {"records": records}
    for label, args in (("unpaced", []), ("auto", ["--rate", "auto"]),
                        ("unpaced2", []), ("auto2", ["--rate", "auto"])):
        emulator, base = start_emulator(None)
        try:
            _, summary = replay(data, work / f"out-nolimit-{label}", base,
                                ["--no-batch", "--workers", "1", *args])
        finally:
            emulator.terminate()
            emulator.wait(timeout=30)
        out[label] = summary["records_per_s"]
    return out


def pct(value: object) -> str:
    return "–" if value is None else f"{float(value) * 100:.1f} %"  # type: ignore[arg-type]


def secs(value: object) -> str:
    return "not reached" if value is None else f"{float(value):.1f} s"  # type: ignore[arg-type]


def markdown(results: list[dict[str, object]], free: dict[str, object] | None) -> str:
    lines = [("| case | steady goodput / limit | after the change | to 90 % from start "
              "| to 90 % after the change | answered 429 | lines / delivered / failed |"),
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        share = r["requests_429"] / max(1, r["requests"])  # type: ignore[operator]
        extra = ""
        if "per_worker" in r:
            extra = " (per worker: " + ", ".join(
                f"{v:.0f}/s" for v in r["per_worker"]) + ")"  # type: ignore[attr-defined]
        lines.append(
            f"| {r['case']}{extra} | {pct(r['steady'])} | {pct(r.get('steady_after'))} "
            f"| {secs(r['start_90_s'])} | {secs(r.get('change_90_s')) if 'change_90_s' in r else '–'} "
            f"| {share * 100:.2f} % | {r['lines']:,} / {r['delivered']:,} / {r['failed']} |")
    if free is None:  # --only: the no-limit comparison was not run
        return "\n".join(lines)
    best_unpaced = max(free["unpaced"], free["unpaced2"])  # type: ignore[type-var]
    best_auto = max(free["auto"], free["auto2"])  # type: ignore[type-var]
    lines += ["", (f"No limit ({free['records']:,} records, --no-batch, one worker, "
                   f"records/s, two runs each, interleaved): unpaced {free['unpaced']} and "
                   f"{free['unpaced2']}, --rate auto {free['auto']} and {free['auto2']}: best "
                   f"auto / best unpaced = {best_auto / best_unpaced * 100:.1f} %.")]  # type: ignore[operator]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="half-length cases")
    parser.add_argument("--only", default="", help="run the cases whose name matches")
    args = parser.parse_args()
    scale = 0.5 if args.quick else 1.0
    results = []
    with tempfile.TemporaryDirectory(prefix="rate-auto-") as tmp:
        work = Path(tmp)
        for case in CASES:
            if args.only and not re.search(args.only, case.name):
                continue
            result = run_case(case, work, scale)
            print(orjson.dumps(result).decode(), file=sys.stderr, flush=True)
            results.append(result)
        free = no_limit(work, scale) if not args.only else None
    print(markdown(results, free))


if __name__ == "__main__":
    main()
