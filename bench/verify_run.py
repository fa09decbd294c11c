"""Checks a finished run against what `replayer emulate` received: the acceptance checks.

    python bench/verify_run.py INPUT.ndjson OUT_DIR http://127.0.0.1:8787

Every non-blank input line must have exactly one row (results or failures); every user's
records must have reached the emulator in input order (first arrivals); every record the
emulator accepted more than once must be marked possible_duplicate or ambiguous_attempts;
and no request may have met a profile lock. Records are told apart by their `time`, which
`replayer generate` makes unique per user. Exit code 0 when every check holds, 1 otherwise.
"""

from __future__ import annotations

import sys
import urllib.request
from collections import defaultdict
from pathlib import Path

import orjson


def main(input_path: str, out_dir: str, emulator: str) -> int:
    """Prints each check and its figures; returns the exit code."""
    expected: dict[str, list[float]] = defaultdict(list)
    line_time: dict[int, float] = {}
    lines = 0
    with open(input_path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            lines += 1
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict) and "time" in record:
                user = record.get("userId") or record.get("deviceId")
                expected[user].append(record["time"])
                line_time[n] = record["time"]
    rows = []
    for name in ("results.ndjson", "failures.ndjson"):
        path = Path(out_dir) / name
        if path.exists():
            rows += [orjson.loads(x) for x in path.read_bytes().splitlines() if x]
    delivered_users = {r.get("userId") or r.get("deviceId") for r in rows if "status" in r}
    url = emulator.rstrip("/") + "/_emulator/state"
    with urllib.request.urlopen(url) as response:  # a loopback emulator
        state = orjson.loads(response.read())
    received = {u: [e["time"] for e in es] for u, es in state["users"].items()}
    counters = state["counters"]
    faults = sum(counters["faults"].values())
    in_order = sum(1 for u, times in expected.items()
                   if u not in delivered_users or list(dict.fromkeys(received.get(u, []))) == times)
    twice = {t for times in received.values() for t in times if times.count(t) > 1}
    marked = {line_time[r["line"]] for r in rows
              if (r.get("possible_duplicate") or r.get("ambiguous_attempts"))
              and r["line"] in line_time}
    checks = [
        ("every line has exactly one row",
         len(rows) == lines and len({(r["file"], r["line"]) for r in rows}) == lines,
         f"{lines} lines, {len(rows)} rows"),
        ("each user's records arrived in input order", in_order == len(expected),
         f"{in_order} of {len(expected)} users"),
        ("every record accepted twice is marked", twice <= marked,
         f"{len(twice)} accepted more than once, {len(twice & marked)} of them marked"),
        ("no request met a profile lock", counters["lock_conflicts"] == 0,
         f"{counters['lock_conflicts']} lock conflicts"),
    ]
    print(f"emulator: {counters['requests']} requests, {faults} faulted "
          f"({100 * faults / max(1, counters['requests']):.1f}%), "
          f"{counters['actions_accepted']} actions accepted")
    for name, ok, figures in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {figures}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
