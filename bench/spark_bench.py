"""`replayer spark --master local[2]` against `replayer run` on one input and one fixed-answer
server (bench/fixed_server.py): records per second, their ratio, and where Spark's time goes.

    python bench/spark_bench.py [--records 1000000] [--users 100000] [--work DIR]

Both commands run as a user would run them (subprocesses, the default --workers and
batching); the server is restarted for each. Spark's wall time is split into start-up
(JVM, session: wall minus the job's own elapsed_s), the replay of the partitions (the
slowest part's elapsed_s) and the rest (reading the input, the shuffle, the merge).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ENV = {**os.environ, "LEANPLUM_APP_ID": "bench-app", "LEANPLUM_CLIENT_KEY": "bench-key"}


def _server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([PYTHON, str(ROOT / "bench" / "fixed_server.py"), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    return proc, f"http://127.0.0.1:{port}/api"


def _timed(args: list[str], out: Path) -> dict[str, Any]:
    server, url = _server()
    try:
        started = time.monotonic()
        done = subprocess.run([PYTHON, "-m", "replayer", *args, "--out", str(out),
                               "--endpoint", url, "--quiet"],
                              env=ENV, capture_output=True, text=True, timeout=3600, check=False)
        wall_s = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{args[0]} exited {done.returncode}: {done.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall_s, "summary": summary}


def main() -> None:
    """Runs both, prints a Markdown table and the split of Spark's time."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="spark-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "in.ndjson"
    if not data.exists():
        subprocess.run([PYTHON, "-m", "replayer", "generate", "--records", str(args.records),
                        "--users", str(args.users), "-o", str(data)], check=True)
    for name in ("run", "spark"):
        shutil.rmtree(work / name, ignore_errors=True)
    run = _timed(["run", str(data), "--yes"], work / "run")
    spark = _timed(["spark", str(data), "--master", "local[2]"], work / "spark")
    records = run["summary"]["records"]
    assert spark["summary"]["records"] == records, "both replay every line"
    rows = []
    for name, result in (("replayer run", run), ("replayer spark --master local[2]", spark)):
        rows.append(f"| {name} | {result['wall_s']:.1f} | {records / result['wall_s']:,.0f} |")
    ratio = (records / spark["wall_s"]) / (records / run["wall_s"])
    parts = [json.loads((p / "summary.json").read_text())
             for p in sorted((work / "spark" / "parts").iterdir())]
    job_s = spark["summary"]["elapsed_s"]
    replay_s = max(p["elapsed_s"] for p in parts)
    print(f"{records:,} records, {args.users:,} users, {os.cpu_count()} CPUs\n")
    print("| command | wall s | records/s |\n| --- | ---: | ---: |")
    print("\n".join(rows))
    print(f"\nspark / run records/s: {ratio:.2f}")
    print(f"spark time: start-up {spark['wall_s'] - job_s:.1f} s, replaying the partitions "
          f"{replay_s:.1f} s (parts: {', '.join(format(p['elapsed_s'], '.1f') for p in parts)}), "
          f"reading + shuffle + merge {job_s - replay_s:.1f} s")


if __name__ == "__main__":
    main()
