"""What one `start` request costs in this process before any of replayer's pipeline: the floor
under `replayer run --no-batch`, and what a task per request adds to it.

    .venv/bin/python bench/request_floor.py                  # 50,000 records, 3 reps
    .venv/bin/python bench/request_floor.py --records 100000 --reps 5

Each mode sends the first N lines of the bench input (`replayer generate`, cached like
bench/run.py's) to bench/fixed_server.py, one `start` per line, 64 at a time, on uvloop,
in a child process pinned to one CPU (the server on the other), and reports its CPU µs
per record, interleaved rep by rep:

- `workers`: 64 coroutines, each sending its next line when its answer came
  (replayer's own `post()`),
- `tasks`: a loop starting one task per line in a TaskGroup, behind a semaphore of 64
  (the shape of replayer's dispatcher),
- `bare`: `workers`, but each request made as bench/baseline_client.py makes it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run as bench

MODES = ("workers", "tasks", "bare")
CONCURRENCY = 64


async def _send_all(url: str, lines: list[bytes], mode: str) -> None:
    import aiohttp
    import orjson

    from replayer.engine import send

    auth = send.auth_prefix("bench-app", "bench-key")
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    # replayer's post() keeps its limit with the run's one timer (send.Deadlines); the
    # bare way keeps it as the bare client does, with aiohttp's timer per request.
    deadlines = send.Deadlines(30)
    async with aiohttp.ClientSession(connector=connector, timeout=send.NO_LIMIT) as http:
        post = functools.partial(send.post, http, deadlines=deadlines)

        async def bare(line: bytes) -> None:
            body = orjson.dumps({"appId": "bench-app", "clientKey": "bench-key",
                                 "apiVersion": "1.0.6", **orjson.loads(line)})
            async with http.post(url, data=body, timeout=send.client_timeout(30),
                                 headers={"Content-Type": "application/json"}) as response:
                await response.read()

        if mode in ("workers", "bare"):
            queue = iter(lines)

            async def worker() -> None:
                for line in queue:
                    if mode == "bare":
                        await bare(line)
                    else:
                        await post(url, send.start_body_of(auth, line))

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(line: bytes) -> None:
            try:
                await post(url, send.start_body_of(auth, line))
            finally:
                slots.release()

        async with asyncio.TaskGroup() as tg:
            for line in lines:
                await slots.acquire()
                tg.create_task(one(line))


def child(url: str, path: str, records: int, mode: str) -> None:
    """One measured mode in this process: prints its CPU µs per record."""
    import uvloop

    with open(path, "rb") as f:
        lines = [line for _, line in zip(range(records), f, strict=False)]
    started = time.process_time()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_send_all(url + "?action=start", lines, mode))
    print(f"{(time.process_time() - started) / len(lines) * 1e6:.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=50_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--child", nargs=4, metavar=("URL", "PATH", "N", "MODE"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        url, path, n, mode = args.child
        child(url, path, int(n), mode)
        return 0
    cache = Path(tempfile.gettempdir()) / "replayer-bench"
    cache.mkdir(parents=True, exist_ok=True)
    path = bench.ensure_input(cache, args.records)
    server_prefix, client, pin = bench.pinning(True)
    server = bench.Server(server_prefix)
    results: dict[str, list[float]] = {m: [] for m in MODES}
    try:
        for rep in range(args.reps):
            for mode in MODES:
                out = subprocess.run([*client, sys.executable, __file__, "--child", server.url,
                                      str(path), str(args.records), mode],
                                     check=True, capture_output=True, text=True).stdout
                results[mode].append(float(out.strip()))
                bench.log(f"rep {rep + 1}/{args.reps} {mode}: {results[mode][-1]:.1f} µs/record")
    finally:
        report = server.stop()
    expected = args.records * args.reps * len(MODES)
    if f"requests={expected} " not in f"{report} ":
        print(f"the server did not answer every request: {report!r}, expected {expected}",
              file=sys.stderr)
        return 1
    print(f"{args.records:,} records, {args.reps} interleaved reps, {pin}")
    print("| mode | CPU µs/record, each rep | median |\n| --- | --- | ---: |")
    for mode, values in results.items():
        print(f"| {mode} | {', '.join(f'{v:.1f}' for v in values)} | "
              f"{statistics.median(values):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
