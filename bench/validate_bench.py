"""Validation alone: the typed pass (`parse_lines`) against the Python validator
(`check_line`, the whole of validation before the typed pass), in process; and, with
`--old-replayer`, `replayer validate` of an older install against this tree's, by wall time.

    .venv/bin/python bench/validate_bench.py                      # 300k generated records
    .venv/bin/python bench/validate_bench.py --records 1000000 --reps 5 \\
        --old-replayer /tmp/replayer-bench/venv-fec10f1/bin/replayer

In process: CPU µs per line (time.process_time) of each way over the same lines, chunks of
2,000 as the intake hands them, the two interleaved rep by rep; the median of each and the
ratio typed/python of each rep. The command: /usr/bin/time's wall seconds and peak RSS of
`replayer validate FILE`, old and new interleaved. Input: bench/run.py's cached
`replayer generate` file. Stdlib only, plus replayer.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import run as bench

from replayer.records import RawLine, Session
from replayer.source.validate import check_line, parse_lines

CHUNK = 2_000
Way = Callable[[list[RawLine], float], int]


def python_way(chunk: list[RawLine], now_s: float) -> int:
    return sum(isinstance(check_line(raw, now_s=now_s), Session) for raw in chunk)


def typed_way(chunk: list[RawLine], now_s: float) -> int:
    return sum(isinstance(p, Session) for p in parse_lines(chunk, now_s=now_s))


def cpu_us_per_line(way: Way, chunks: list[list[RawLine]], lines: int) -> tuple[float, int]:
    now_s = time.time()
    start = time.process_time()
    valid = sum(way(chunk, now_s) for chunk in chunks)
    return (time.process_time() - start) / lines * 1e6, valid


def in_process(path: Path, limit: int, reps: int) -> list[str]:
    with open(path, "rb") as f:
        raws = [RawLine(path.name, n, data.rstrip(b"\n"))
                for n, data in enumerate(f, 1) if n <= limit]
    chunks = [raws[at:at + CHUNK] for at in range(0, len(raws), CHUNK)]
    times: dict[str, list[float]] = {"python": [], "typed": []}
    for rep in range(reps):
        for name, way in (("python", python_way), ("typed", typed_way)):
            us, valid = cpu_us_per_line(way, chunks, len(raws))
            times[name].append(us)
            bench.log(f"rep {rep + 1}/{reps} {name}: {us:.2f} µs/line, {valid:,} valid")
    ratios = [t / p for t, p in zip(times["typed"], times["python"], strict=True)]
    return [
        f"{len(raws):,} lines of {path.name}, {reps} interleaved reps, CPU µs per line",
        "| way | median | reps |", "| --- | ---: | --- |",
        *(f"| {name} | {statistics.median(v):.2f} | {', '.join(f'{x:.2f}' for x in v)} |"
          for name, v in (("check_line (Python)", times["python"]),
                          ("parse_lines (typed pass)", times["typed"]))),
        (f"| ratio typed / python | {statistics.median(ratios):.2f} | "
        f"{', '.join(f'{r:.2f}' for r in ratios)} |"),
    ]


def timed(cmd: list[str], out: Path) -> tuple[float, float]:
    """(wall s, peak RSS MB) of `cmd` by /usr/bin/time; its exit code 1 (invalid lines) is fine."""
    done = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", str(out), *cmd],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{cmd} exited {done.returncode}")
    wall, rss_kb = out.read_text().split()[-2:]
    return float(wall), int(rss_kb) / 1024


def command(path: Path, old: str, reps: int) -> list[str]:
    new = [*bench.replayer_cmd()]
    runs: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            for name, script in (("old", [old]), ("new", new)):
                wall, rss = timed([*script, "validate", str(path)], Path(tmp) / "time")
                runs[name].append((wall, rss))
                bench.log(f"rep {rep + 1}/{reps} replayer validate, {name}: {wall:.2f} s, "
                          f"{rss:.0f} MB")
    ratios = [n[0] / o[0] for n, o in zip(runs["new"], runs["old"], strict=True)]
    return [
        f"`replayer validate {path.name}`, {reps} interleaved reps (/usr/bin/time)",
        "| replayer | wall s (median) | peak RSS MB | reps (s) |", "| --- | ---: | ---: | --- |",
        *(f"| {name} | {statistics.median(w for w, _ in v):.2f} | "
          f"{statistics.median(r for _, r in v):.0f} | {', '.join(f'{w:.2f}' for w, _ in v)} |"
          for name, v in (("old: " + old, runs["old"]), ("new: this tree", runs["new"]))),
        (f"| ratio new / old | {statistics.median(ratios):.2f} | | "
        f"{', '.join(f'{r:.2f}' for r in ratios)} |"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=300_000, help="input size [300000]")
    p.add_argument("--in-process", type=int, default=100_000,
                   help="lines timed in process (held in memory) [100000]")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--old-replayer", help="an older `replayer` script to time `validate` of")
    p.add_argument("--cache-dir", type=Path,
                   default=Path(tempfile.gettempdir()) / "replayer-bench")
    args = p.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    path = bench.ensure_input(args.cache_dir, args.records)
    report = in_process(path, args.in_process, args.reps)
    if args.old_replayer:
        report += ["", *command(path, args.old_replayer, args.reps)]
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
