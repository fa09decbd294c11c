"""What a resumed run costs when it ends: `replayer run --resume` of a folder cut as a kill
leaves it, by this tree and by an earlier revision, timed side by side.

    .venv/bin/python bench/resume_users.py --records 1000000 --keep 0.95 --reps 3 --old REV

A dry run of the input (`replayer generate`'s, cached as bench/run.py makes them) fills a
folder once; it is cut to its first `--keep` of results.ndjson and a torn line, as a kill
mid-run leaves it. Each rep copies the cut folder twice and resumes one copy with each
tree (interleaved: old, new, new, old, ...), so both do the same work: send the lines
left (a dry run writes them), then write users.ndjson, which REV derived from every row
at the end and this tree tallies from the rows the resume reads at its start. The old
revision is installed as bench/hotpath.py installs it (a cached virtualenv). Prints each
variant's median wall and CPU seconds (user + system, its workers included) and the
per-rep CPU ratio new / old, and checks that both wrote the same users.ndjson. Stdlib
only, plus what bench/run.py uses.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run as bench
from hotpath import old_install

ENV = {**os.environ, "LEANPLUM_APP_ID": "bench-app", "LEANPLUM_CLIENT_KEY": "bench-key"}


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cut(folder: Path, keep: float) -> int:
    """Keeps the first `keep` of results.ndjson's rows and adds a torn line; returns the rows."""
    results = folder / "results.ndjson"
    with open(results, "rb") as f:
        rows = f.readlines()
    kept = int(len(rows) * keep)
    with open(results, "wb") as f:
        f.writelines(rows[:kept])
        f.write(b'{"file":')
    (folder / "requests.ndjson").unlink(missing_ok=True)  # the dry run's bodies: not needed
    return kept


def resume(script: list[str], data: Path, folder: Path, workers: int) -> tuple[float, float]:
    """Wall and CPU seconds of `replayer run --resume` of `folder`."""
    cpu, wall = children_cpu_s(), time.perf_counter()
    done = subprocess.run([*script, "run", str(data), "--dry-run", "--resume", "--out",
                           str(folder), "--workers", str(workers), "--quiet"],
                          check=False, env=ENV, capture_output=True)
    wall, cpu = time.perf_counter() - wall, children_cpu_s() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(script)} exited {done.returncode}: "
                         f"{done.stderr.decode(errors='replace')[-2000:]}")
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--keep", type=float, default=0.95, help="share of the rows left (0-1)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--old", default="85450ae", help="the revision to compare with")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "replayer-bench")
    args = p.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    data = bench.ensure_input(args.cache, args.records)
    old = [str(old_install(args.old, args.cache))]
    new = bench.replayer_cmd()
    with tempfile.TemporaryDirectory(prefix="resume-users-") as tmp:
        base = Path(tmp) / "cut"
        bench.log(f"dry run of {data.name} into the folder to cut")
        subprocess.run([*new, "run", str(data), "--dry-run", "--out", str(base), "--workers",
                        str(args.workers), "--quiet"], env=ENV, check=True)
        folders = [base] if args.workers == 1 else sorted((base / "workers").iterdir())
        kept = sum(cut(f, args.keep) for f in folders)
        bench.log(f"cut to {kept:,} of {args.records:,} rows; {args.reps} reps")
        times: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
        digests: set[str] = set()
        for rep in range(args.reps):
            order = [("old", old), ("new", new)]
            for name, script in order if rep % 2 == 0 else order[::-1]:
                folder = Path(tmp) / name
                shutil.rmtree(folder, ignore_errors=True)
                shutil.copytree(base, folder)
                times[name].append(resume(script, data, folder, args.workers))
                digests.add(hashlib.sha256((folder / "users.ndjson").read_bytes()).hexdigest())
                bench.log(f"rep {rep + 1} {name}: wall {times[name][-1][0]:.2f} s, "
                          f"CPU {times[name][-1][1]:.2f} s")
    print(f"`replayer run --resume`, {args.records:,} records, {kept:,} rows kept, "
          f"--workers {args.workers}, {args.reps} reps")
    print("| variant | wall s (median) | CPU s (median) |")
    print("| --- | ---: | ---: |")
    for name, label in (("old", f"{args.old}"), ("new", "this tree")):
        walls, cpus = zip(*times[name], strict=True)
        print(f"| {label} | {statistics.median(walls):.2f} | {statistics.median(cpus):.2f} |")
    ratios = [n[1] / o[1] for o, n in zip(times["old"], times["new"], strict=True)]
    print(f"CPU new / old per rep: {' '.join(f'{r:.3f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.3f}")
    print("users.ndjson: " + ("the same bytes" if len(digests) == 1 else "DIFFERENT"))
    return 0 if len(digests) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
