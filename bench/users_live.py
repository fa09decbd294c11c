"""The CPU that users.ndjson costs a run, alone: one result row per line of an input is
handed to `LiveUsers` as the Finisher does, then the end writes users.ndjson as
`replayer run` does (from the live tally, or by deriving it from the rows when the
tally gave up). Run it with the python of each tree to compare them on the same rows.

    .venv/bin/python bench/users_live.py /tmp/replayer-bench/sessions-1000000-u100000-seed0.ndjson

Prints the CPU seconds of the rows and of the end, and a digest of users.ndjson (the
same rows must give the same bytes). Stdlib and replayer only.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

from replayer.output.layout import RESULTS, USERS
from replayer.output.live_users import LiveUsers
from replayer.output.users import write_users


def main(path: str) -> None:
    out = Path(tempfile.mkdtemp(prefix="users-live-"))
    ids = []
    with open(path, "rb") as f, open(out / RESULTS, "wb") as results:
        for n, line in enumerate(f, 1):
            r = orjson.loads(line)
            ids.append((r.get("userId"), r.get("deviceId")))
            results.write(orjson.dumps({
                "file": path, "line": n, "userId": r.get("userId"),
                "deviceId": r.get("deviceId"), "status": "delivered", "http_status": 200,
                "attempts": 1, "latency_ms": 1.0, "vars": 0, "variants": []}) + b"\n")
    try:
        live = LiveUsers([path], spill_dir=out)  # type: ignore[call-arg,unused-ignore]
    except TypeError:  # a tree whose tally has no folder to spill to
        live = LiveUsers([path])
    started = time.process_time()
    row = live.row
    for n, (user_id, device_id) in enumerate(ids, 1):
        row(user_id, device_id, path, n, 1, result=True, what="delivered", vars=0, variants=[])
    rows_s = time.process_time() - started
    write_users(out, inputs=[path], live=live.write)
    end_s = time.process_time() - started - rows_s
    digest = hashlib.sha1((out / USERS).read_bytes()).hexdigest()[:12]
    print(f"rows {rows_s:.2f} s, end {end_s:.2f} s, total {rows_s + end_s:.2f} s, "
          f"tally gave up: {live.gave_up}, users.ndjson sha1 {digest}")
    shutil.rmtree(out)


if __name__ == "__main__":
    main(sys.argv[1])
