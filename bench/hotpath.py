"""The hot path against an earlier revision and a lean yardstick: `replayer run` of a git
revision, of this tree, and bench/lean.py.

    .venv/bin/python bench/hotpath.py                       # against d2b2076, 1M records, 3 reps
    .venv/bin/python bench/hotpath.py --old REV --records 300000 --reps 5
    .venv/bin/python bench/hotpath.py --only old-batch,new-batch,lean   # batched, and the yardstick
    .venv/bin/python bench/hotpath.py --records 100000 --only new-single,lean-single,baseline
    .venv/bin/python bench/hotpath.py --records 300000,1000000 --reps 5 --only new-batch,lean

The old revision is exported with `git archive` (read-only: the checkout is not touched)
and installed into its own virtualenv under the cache folder. Every variant runs against
the same fixed-answer server (bench/fixed_server.py) on the same input, the client
pinned to one CPU and the server to the other, interleaved rep by rep (old, new, old,
new, ...) so drift of this shared machine hits both alike. Per variant: the median
records/s, CPU µs per record and peak RSS, and the ratio new/old of each rep's pair.
With several sizes (`--records 300000,1000000`) each rep runs every variant at each
size, and the last table gives each variant's CPU per record at the largest over the
smallest, rep by rep.
The bare aiohttp client (bench/baseline_client.py), wrk (when on PATH; one start body) and
bench/lean.py (our own lean replayer doing the same work as `replayer run`, batched and,
as lean-single, with --no-batch; needs the bench extra) are measured in the same reps.
Stdlib only, plus what bench/run.py uses.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import run as bench

ISSUE_START = "d2b2076"  # the revision the hot-path issue was measured against
LEAN = bench.BENCH / "lean.py"


def check_lean(expected: int) -> Callable[[Path], tuple[int, str | None, dict[str, Any]]]:
    """Parses bench/lean.py's `lines=N delivered=N failed=N requests=N`: all delivered."""

    def check(stdout: Path) -> tuple[int, str | None, dict[str, Any]]:
        words = dict(w.split("=", 1) for w in stdout.read_text().split() if "=" in w)
        delivered = int(words.get("delivered", 0))
        extra = {"requests": int(words.get("requests", 0))}
        if delivered != expected:
            return delivered, f"delivered {delivered} of {expected}", extra
        return delivered, None, extra

    return check


@dataclass(slots=True)
class Variant:
    """One command line measured once per rep."""

    key: str
    label: str
    cmd: Callable[[Path], tuple[list[str], Callable[[Path], tuple[int, str | None, dict[str, Any]]]]]
    runs: list[bench.Measure] = field(default_factory=list)


def old_install(rev: str, cache: Path) -> Path:
    """The `replayer` script of revision `rev`, installed into a virtualenv of its own."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=bench.ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    venv = cache / f"venv-{sha}"
    script = venv / "bin" / "replayer"
    if script.exists():
        return script
    src = cache / f"src-{sha}"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", sha], cwd=bench.ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    bench.log(f"installing {sha} into {venv} (once; cached)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(src)], check=True)
    return script


def variants(args: argparse.Namespace, tmp: Path, server: bench.Server, client: list[str],
             path: Path, old: Path, records: int) -> list[Variant]:
    new = bench.replayer_cmd()
    conc = ["--concurrency", str(args.concurrency)]

    def replayer(script: list[str], *flags: str) -> Variant.cmd:  # type: ignore[name-defined]
        def build(work: Path) -> tuple[list[str], Any]:
            out = work / "out"
            return ([*client, *script, "run", str(path), "--endpoint", server.url, *flags,
                     *conc, "--workers", str(args.workers), "--out", str(out), "--overwrite",
                     "--quiet"],
                    bench.check_replayer(out, records))
        return build

    def baseline(work: Path) -> tuple[list[str], Any]:
        return ([*client, sys.executable, str(bench.BASELINE), str(path), "--endpoint",
                 server.url, *conc], bench.check_baseline(records))

    def lean(*flags: str) -> Variant.cmd:  # type: ignore[name-defined]
        def build(work: Path) -> tuple[list[str], Any]:
            return ([*client, sys.executable, str(LEAN), str(path), "--endpoint", server.url,
                     "--out", str(work / "out"), *conc, *flags], check_lean(records))
        return build

    found = [
        Variant("old-batch", f"replayer run (batched), {args.old}", replayer([str(old)])),
        Variant("new-batch", "replayer run (batched), this tree", replayer(new)),
        Variant("old-single", f"replayer run --no-batch, {args.old}",
                replayer([str(old)], "--no-batch")),
        Variant("new-single", "replayer run --no-batch, this tree", replayer(new, "--no-batch")),
        Variant("baseline", "bare aiohttp client (one start per record)", baseline),
        Variant("lean", "bench/lean.py (lean batched yardstick)", lean()),
        Variant("lean-single", "bench/lean.py --no-batch (lean one-start yardstick)",
                lean("--no-batch")),
    ]
    wrk = shutil.which("wrk")
    if wrk:
        with open(path, "rb") as lines:
            first = orjson.loads(lines.readline())
        body, lua = tmp / "wrk-body.json", tmp / "post.lua"
        body.write_bytes(orjson.dumps({"appId": "bench-app", "clientKey": "bench-key",
                                       "apiVersion": "1.0.6", **first}))
        lua.write_text(bench.WRK_LUA)
        os.environ["BENCH_WRK_BODY"] = str(body)
        found.append(Variant("wrk", f"wrk -t1 -c{args.concurrency}, {args.wrk_seconds} s",
                             lambda work: ([*client, wrk, "-t1", f"-c{args.concurrency}",
                                            f"-d{args.wrk_seconds}s", "-s", str(lua),
                                            f"{server.url}?action=start"], bench.check_wrk)))
    return found


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rate(m: bench.Measure) -> float:
    """Records (or wrk requests) per second of wall time."""
    duration = m.extra.get("duration_s") or m.wall_s
    return m.records / duration


def table(found: list[Variant]) -> list[str]:
    by = {v.key: v for v in found}
    lines = ["| variant | records/s (median) | CPU µs/record | peak RSS MB | runs |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for v in found:
        ok = [m for m in v.runs if m.ok]
        cpu = "-" if v.key == "wrk" else f"{median([m.cpu_us_per_record for m in ok]):.1f}"
        lines.append(f"| {v.label} | {median([rate(m) for m in ok]):,.0f} | {cpu} | "
                     f"{median([m.maxrss_mb for m in ok]):.0f} | {len(ok)}/{len(v.runs)} |")
    lines += ["", "| ratio | median of the reps' ratios |", "| --- | ---: |"]

    def pairs(a: str, b: str, fn: Callable[[bench.Measure], float]) -> str:
        if a not in by or b not in by:
            return "n/a"
        ratios = [fn(x) / fn(y) for x, y in zip(by[a].runs, by[b].runs, strict=False)
                  if x.ok and y.ok]
        return f"{median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)})"

    lines.append(f"| batched records/s, new / old | {pairs('new-batch', 'old-batch', rate)} |")
    lines.append(f"| batched CPU per record, old / new | "
                 f"{pairs('old-batch', 'new-batch', lambda m: m.cpu_us_per_record)} |")
    lines.append(f"| --no-batch records/s, new / old | "
                 f"{pairs('new-single', 'old-single', rate)} |")
    lines.append(f"| --no-batch records/s, new / bare aiohttp client | "
                 f"{pairs('new-single', 'baseline', rate)} |")
    lines.append(f"| --no-batch records/s, new / lean --no-batch | "
                 f"{pairs('new-single', 'lean-single', rate)} |")
    lines.append(f"| --no-batch records/s, lean / bare aiohttp client | "
                 f"{pairs('lean-single', 'baseline', rate)} |")
    lines.append(f"| batched records/s, new / wrk requests/s | {pairs('new-batch', 'wrk', rate)} |")
    lines.append(f"| batched records/s, new / lean | {pairs('new-batch', 'lean', rate)} |")
    lines.append(f"| batched CPU per record, lean / new | "
                 f"{pairs('lean', 'new-batch', lambda m: m.cpu_us_per_record)} |")
    lines.append(f"| batched records/s, old / lean | {pairs('old-batch', 'lean', rate)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", default=ISSUE_START, help=f"git revision to compare [{ISSUE_START}]")
    p.add_argument("--records", default="1000000",
                   help="input size, or sizes comma-separated: each variant runs at each "
                        "size in the same reps [1000000]")
    p.add_argument("--reps", type=int, default=3, help="interleaved reps [3]")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--workers", type=int, default=1,
                   help="replayer's --workers [1]; the client CPU holds them all")
    p.add_argument("--wrk-seconds", type=int, default=10)
    p.add_argument("--only", default="", help="comma-separated variant keys to run")
    p.add_argument("--cache-dir", type=Path,
                   default=Path(tempfile.gettempdir()) / "replayer-bench")
    p.add_argument("--run-timeout", type=float, default=1800.0)
    args = p.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    sizes = [int(n) for n in args.records.split(",")]
    old = old_install(args.old, args.cache_dir)
    server_prefix, client, pin = bench.pinning(True)
    server = bench.Server(server_prefix)
    keep = set(args.only.split(",")) if args.only else None
    with tempfile.TemporaryDirectory(prefix="hotpath-") as tmp_name:
        tmp = Path(tmp_name)
        found = {n: [v for v in variants(args, tmp, server, client,
                                         bench.ensure_input(args.cache_dir, n), old, n)
                     if keep is None or v.key in keep] for n in sizes}
        try:
            for rep in range(args.reps):
                for n in sizes:
                    for v in found[n]:
                        work = tmp / f"{v.key}-{n}"
                        work.mkdir(exist_ok=True)
                        cmd, check = v.cmd(work)
                        m = bench.measure(cmd, server=server, work_dir=work,
                                          timeout_s=args.run_timeout, check=check)
                        v.runs.append(m)
                        shutil.rmtree(work / "out", ignore_errors=True)
                        bench.log(f"rep {rep + 1}/{args.reps} {v.label}, {n:,} records: "
                                  f"{bench.describe(m)}")
        finally:
            server.stop()
    for n in sizes:
        print(f"{n:,} records, {args.reps} interleaved reps, {pin}; "
              f"machine load {bench.load_average()}")
        print("\n".join(table(found[n])))
        print()
    if len(sizes) > 1:
        print("\n".join(across(found, sizes[0], sizes[-1])))
    failed = [m.error for n in sizes for v in found[n] for m in v.runs if not m.ok]
    for error in failed:
        print(f"\nfailed run: {error}", file=sys.stderr)
    return 1 if failed else 0


def across(found: dict[int, list[Variant]], small: int, large: int) -> list[str]:
    """Each variant's CPU per record at `large` records over that at `small`, rep by rep
    (the runs of one rep follow each other: the load of the moment hits both)."""
    lines = [f"| CPU per record, {large:,} / {small:,} records | median of the reps' ratios |",
             "| --- | ---: |"]
    at_small = {v.key: v for v in found[small]}
    for v in found[large]:
        other = at_small.get(v.key)
        if other is None or v.key == "wrk":
            continue
        ratios = [b.cpu_us_per_record / a.cpu_us_per_record
                  for a, b in zip(other.runs, v.runs, strict=False) if a.ok and b.ok]
        lines.append(f"| {v.label} | {median(ratios):.2f} "
                     f"({', '.join(f'{r:.2f}' for r in ratios)}) |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
