"""Measures `replayer convert`: events/s and peak RSS, each run in a child process of its own.

    .venv/bin/python bench/gen_exports.py --events 1000000 --out /tmp/exports --source mixpanel
    nice .venv/bin/python bench/convert_bench.py engines /tmp/exports/mixpanel.json.gz
    git archive REV | tar -x -C /tmp/old-convert   # the converter to compare with
    nice .venv/bin/python bench/convert_bench.py convert /tmp/exports/mixpanel.json.gz \\
        --old /tmp/old-convert

`engines` times the data work alone in DuckDB and in Polars (read the gzipped JSON lines,
sort by user and time, cut sessions by the 30-minute gap, count them); `convert` times the
whole command, this tree's code against the code at --old (run with this interpreter, each
package imported from its tree). Wall time is Python's perf_counter around the child; peak RSS
is the child's own ru_maxrss (os.wait4).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `replayer` from the tree in argv[1], not the editable install's (a meta path finder that
# would win over sys.path).
RUN_FROM_TREE = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in str(getattr(
    f, "__module__", None) or getattr(f, "__name__", ""))]
sys.path.insert(0, sys.argv.pop(1))
import replayer
assert replayer.__file__.startswith(sys.path[0]), replayer.__file__
from replayer.cli import main
sys.argv[0] = "replayer"
main()
"""

DUCKDB_KERNEL = """
import sys, duckdb
db = duckdb.connect(config={"memory_limit": "1GB", "temp_directory": sys.argv[2]})
print(db.execute('''
    WITH e AS (SELECT properties.distinct_id AS u, properties.time::DOUBLE AS t
               FROM read_json(?, format='newline_delimited',
                              columns={properties: 'STRUCT(distinct_id VARCHAR, "time" DOUBLE)'})),
    f AS (SELECT u, t, CASE WHEN t - lag(t) OVER (PARTITION BY u ORDER BY t) < 1800
                            THEN 0 ELSE 1 END AS opens FROM e)
    SELECT count(*), sum(opens) FROM f''', [sys.argv[1]]).fetchone())
"""

POLARS_KERNEL = """
import sys, polars as pl
e = pl.scan_ndjson(sys.argv[1], schema={"properties": pl.Struct(
    {"distinct_id": pl.String, "time": pl.Float64})})
e = e.select(u=pl.col("properties").struct.field("distinct_id"),
             t=pl.col("properties").struct.field("time")).sort("u", "t")
f = e.with_columns(opens=((pl.col("t") - pl.col("t").shift(1).over("u")) < 1800).not_()
                   .fill_null(True))
print(f.select(pl.len(), pl.col("opens").sum()).collect(engine="streaming").row(0))
"""


@dataclass(frozen=True, slots=True)
class Measured:
    """One child's run: wall and CPU seconds (its own and its worker processes'), the peak
    of the RSS summed over it and its descendants (sampled every 50 ms), its output's line."""

    wall_s: float
    cpu_s: float
    rss_mb: float
    line: str


def tree_rss_kb(pid: int) -> int:
    """The RSS of `pid` and of every process below it, in KB (0 for one that has ended)."""
    total = 0
    todo = [pid]
    while todo:
        proc = todo.pop()
        try:
            with open(f"/proc/{proc}/status") as status:
                total += next((int(line.split()[1]) for line in status
                               if line.startswith("VmRSS:")), 0)
            with open(f"/proc/{proc}/task/{proc}/children") as children:
                todo.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def measure(argv: list[str], *, keep: str = "") -> Measured:
    """Runs `argv` as a child and measures it (`keep`: the first line of its output that
    starts with it, else its last line)."""
    started = time.perf_counter()
    peak_kb = 0
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as child:
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_kb
            while not done.wait(0.05):
                peak_kb = max(peak_kb, tree_rss_kb(child.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        assert child.stdout is not None
        output = child.stdout.read().decode()
        done.set()
        sampler.join()
        _pid, status, usage = os.wait4(child.pid, 0)  # CPU: the child's and its children's
        child.returncode = os.waitstatus_to_exitcode(status)
    elapsed_s = time.perf_counter() - started
    if child.returncode not in (0, 1):
        sys.exit(f"{' '.join(argv)} failed ({child.returncode}):\n{output}")
    lines = output.strip().splitlines()
    kept = [line for line in lines if keep and line.startswith(keep)] or lines[-1:] or [""]
    return Measured(elapsed_s, usage.ru_utime + usage.ru_stime,
                    max(peak_kb, usage.ru_maxrss) / 1024, kept[0])


def count_lines(path: str) -> int:
    """Events in a gzip JSON-lines export."""
    import gzip
    with gzip.open(path, "rb") as stream:
        return sum(1 for _ in stream)


def report(name: str, events: int, result: Measured) -> None:
    print(f"| {name} | {events:,} | {result.wall_s:.1f} | {events / result.wall_s:,.0f} | "
          f"{result.cpu_s:.1f} | {result.rss_mb:,.0f} | {result.line} |", flush=True)


def engines(export: str, events: int) -> None:
    """The data work alone, in DuckDB and in Polars."""
    with tempfile.TemporaryDirectory() as spill:
        for name, kernel in (("duckdb", DUCKDB_KERNEL), ("polars", POLARS_KERNEL)):
            report(name, events, measure([sys.executable, "-c", kernel, export, spill]))


def convert(export: str, events: int, *, source: str, old: Path | None, new: Path,
            memory_limits: list[str], reps: int) -> None:
    """The whole command: the code at --old (if given), then the code at --new (once per
    --memory-limit, if any); `reps` times, interleaved."""
    runs = [("old", old)] if old is not None else []
    runs += [(f"new --memory-limit {limit}", new) for limit in memory_limits] or [("new", new)]
    with tempfile.TemporaryDirectory() as out:
        for name, tree in runs * reps:
            assert tree is not None
            argv = [sys.executable, "-c", RUN_FROM_TREE, str(tree), "convert",
                    "--from", source, export, "-o", os.path.join(out, "records.ndjson"),
                    *name.split()[1:]]
            report(name, events, measure(argv, keep=f"{source}:"))


def main() -> None:
    """Parses flags and prints one markdown table row per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("engines", "convert"))
    parser.add_argument("export", help="a gzip JSON-lines export (bench/gen_exports.py)")
    parser.add_argument("--source", default="mixpanel")
    parser.add_argument("--old", type=Path, default=None,
                        help="a source tree of the converter to compare with")
    parser.add_argument("--new", type=Path, default=ROOT,
                        help="the source tree to measure (default: this one; give a copy, "
                             "git archive REV, to edit this one meanwhile: worker processes "
                             "import from it when they start)")
    parser.add_argument("--reps", type=int, default=1, help="runs of each, interleaved")
    parser.add_argument("--memory-limit", action="append", default=[],
                        help="run the new converter with this --memory-limit (repeatable)")
    args = parser.parse_args()
    events = count_lines(args.export)
    print("| run | events | wall s | events/s | CPU s | peak RSS MB | output |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |", flush=True)
    if args.what == "engines":
        engines(args.export, events)
    else:
        convert(args.export, events, source=args.source, old=args.old,
                new=args.new, memory_limits=args.memory_limit, reps=args.reps)


if __name__ == "__main__":
    main()
