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
import time
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


def measure(argv: list[str], *, keep: str = "") -> tuple[float, float, str]:
    """Runs `argv` as a child: (wall seconds, peak RSS in MB, its output's last line, or
    its first line that starts with `keep`)."""
    started = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as child:
        assert child.stdout is not None
        output = child.stdout.read().decode()
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    elapsed_s = time.perf_counter() - started
    if child.returncode not in (0, 1):
        sys.exit(f"{' '.join(argv)} failed ({child.returncode}):\n{output}")
    lines = output.strip().splitlines()
    kept = [line for line in lines if keep and line.startswith(keep)] or lines[-1:] or [""]
    return elapsed_s, usage.ru_maxrss / 1024, kept[0]


def count_lines(path: str) -> int:
    """Events in a gzip JSON-lines export."""
    import gzip
    with gzip.open(path, "rb") as stream:
        return sum(1 for _ in stream)


def report(name: str, events: int, result: tuple[float, float, str]) -> None:
    elapsed_s, rss_mb, last = result
    print(f"| {name} | {events:,} | {elapsed_s:.1f} | {events / elapsed_s:,.0f} | "
          f"{rss_mb:,.0f} | {last} |")


def engines(export: str, events: int) -> None:
    """The data work alone, in DuckDB and in Polars."""
    with tempfile.TemporaryDirectory() as spill:
        for name, kernel in (("duckdb", DUCKDB_KERNEL), ("polars", POLARS_KERNEL)):
            report(name, events, measure([sys.executable, "-c", kernel, export, spill]))


def convert(export: str, events: int, *, source: str, old: Path | None,
            memory_limits: list[str]) -> None:
    """The whole command: the code at --old (if given), then this tree's (once per
    --memory-limit, if any)."""
    runs = [("old", old)] if old is not None else []
    runs += [(f"new --memory-limit {limit}", ROOT) for limit in memory_limits] or [("new", ROOT)]
    with tempfile.TemporaryDirectory() as out:
        for name, tree in runs:
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
    parser.add_argument("--memory-limit", action="append", default=[],
                        help="run the new converter with this --memory-limit (repeatable)")
    args = parser.parse_args()
    events = count_lines(args.export)
    print("| run | events | wall s | events/s | peak RSS MB | output |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    if args.what == "engines":
        engines(args.export, events)
    else:
        convert(args.export, events, source=args.source, old=args.old,
                memory_limits=args.memory_limit)


if __name__ == "__main__":
    main()
