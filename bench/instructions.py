"""Instructions per record, counted by valgrind: a measure the machine's load cannot move.

    .venv/bin/python bench/instructions.py                      # 5,000 and 10,000 records
    .venv/bin/python bench/instructions.py --only single,floor,bare

Each variant runs under `valgrind --tool=callgrind` twice, on the first N and the first M
lines of the bench input (`replayer generate`, cached like bench/run.py's), against
bench/fixed_server.py; its instructions per record are the difference of the two totals
over M - N records, so start-up and imports cancel out. Both inputs are over 2 MiB, so
the run's input fingerprint (a hash of the first and last MiB) costs the same in both.

Variants: `single` (`replayer run --no-batch`), `batch` (`replayer run`), `lean`
(bench/lean.py), `lean-single` (bench/lean.py --no-batch), `floor` (bench/request_floor.py's `workers` mode: replayer's own post()
from 64 coroutines, nothing else) and `bare` (bench/baseline_client.py).

Counts are not times: CPU time also pays for cache misses, which valgrind does not show;
a change that removes instructions may still cost time (see docs/benchmarks.md). Quote
them beside interleaved timings (bench/hotpath.py), not instead of them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import run as bench

VARIANTS = ("single", "batch", "lean", "lean-single", "floor", "bare")
_COLLECTED = re.compile(r"Collected : (\d+)")


def collected(stderr: str) -> int:
    """The total of instructions callgrind reports on its standard error."""
    found = _COLLECTED.findall(stderr)
    if not found:
        raise ValueError(f"no instruction count in callgrind's output: {stderr[-300:]!r}")
    return int(found[-1])


def per_record(small: int, large: int, n_small: int, n_large: int) -> float:
    """Instructions per record from two runs' totals (start-up cancels out)."""
    if n_large <= n_small:
        raise ValueError("the larger input must have more records")
    return (large - small) / (n_large - n_small)


def command(variant: str, url: str, path: Path, records: int, out: Path) -> list[str]:
    """The command line of one variant on `path` (its first `records` lines)."""
    py = sys.executable
    if variant in ("single", "batch"):
        flags = ["--no-batch"] if variant == "single" else []
        return [*bench.replayer_cmd(), "run", str(path), "--endpoint", url, *flags,
                "--concurrency", "64", "--workers", "1", "--out", str(out), "--overwrite",
                "--quiet"]
    if variant in ("lean", "lean-single"):
        flags = ["--no-batch"] if variant == "lean-single" else []
        return [py, str(bench.BENCH / "lean.py"), str(path), "--endpoint", url, "--out",
                str(out), "--concurrency", "64", *flags]
    if variant == "floor":
        return [py, str(bench.BENCH / "request_floor.py"), "--child", url, str(path),
                str(records), "workers"]
    if variant == "bare":
        return [py, str(bench.BASELINE), str(path), "--endpoint", url]
    raise ValueError(f"unknown variant {variant!r}")


def count(valgrind: str, cmd: list[str], work: Path) -> int:
    """Instructions of one run of `cmd` under callgrind (which must exit 0)."""
    done = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           *cmd], capture_output=True, text=True, check=False, cwd=work,
                          env={**os.environ, **bench.DUMMY_ENV})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {done.returncode}: "
                           f"{done.stderr[-500:]}")
    return collected(done.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, nargs=2, default=[5000, 10000],
                   metavar=("N", "M"), help="the two input sizes [5000 10000]")
    p.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants")
    args = p.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    chosen = [v for v in args.only.split(",") if v]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        print(f"unknown variants: {', '.join(unknown)}", file=sys.stderr)
        return 2
    n_small, n_large = args.records
    cache = Path(tempfile.gettempdir()) / "replayer-bench"
    cache.mkdir(parents=True, exist_ok=True)
    source = bench.ensure_input(cache, max(100_000, n_large))
    server = bench.Server([])
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="instructions-") as tmp_name:
            tmp = Path(tmp_name)
            inputs = {}
            with open(source, "rb") as f:
                lines = [line for _, line in zip(range(n_large), f, strict=False)]
            for n in (n_small, n_large):
                inputs[n] = tmp / f"sessions-{n}.ndjson"
                inputs[n].write_bytes(b"".join(lines[:n]))
            for variant in chosen:
                totals = []
                for n in (n_small, n_large):
                    out = tmp / f"out-{variant}-{n}"
                    totals.append(count(valgrind, command(variant, server.url, inputs[n], n,
                                                          out), tmp))
                    shutil.rmtree(out, ignore_errors=True)
                rows.append((variant, per_record(*totals, n_small, n_large)))
                bench.log(f"{variant}: {rows[-1][1]:,.0f} instructions/record")
    except RuntimeError as exc:
        print(f"failed run: {exc}", file=sys.stderr)
        return 1
    finally:
        server.stop()
    print(f"instructions per record, from {n_small:,} and {n_large:,} records (callgrind)")
    print("| variant | instructions/record |\n| --- | ---: |")
    for variant, value in rows:
        print(f"| {variant} | {value:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
