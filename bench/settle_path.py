"""CPU per record of the answer path alone: lanes, attempt(), classify, settle(), rows, counters.

In process, no socket: a scripted poster answers every `multi` at once with the fixed
server's success element (bench/fixed_server.py), each user has two records (the shape
of the 300k-record takes of bench/hotpath.py: ~50 users, ~100 actions), rows go to
files in a temporary folder. Prints the minimum and the median over the reps of CPU µs
per record (time.process_time). Compare revisions by running it with each one's python
(or with PYTHONPATH pointing at an exported tree), interleaved:

    .venv/bin/python bench/settle_path.py --records 100000 --reps 5
    PYTHONPATH=/tmp/src-REV .venv/bin/python bench/settle_path.py

Options the engine's constructors do not take (older revisions) are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from fixed_server import START_ELEMENT

from replayer.engine.attempt import Attempter
from replayer.engine.decide import Rules
from replayer.engine.finish import Finisher
from replayer.engine.flow import Flow
from replayer.engine.lanes import Lanes, Work
from replayer.engine.outage import Outage
from replayer.engine.retry import RetryPolicy
from replayer.engine.settle import Settler
from replayer.engine.stats import RunStats
from replayer.output.sinks import NdjsonSink
from replayer.records import Attempt, Session

ANSWERS = {n: orjson.dumps({"response": [START_ELEMENT] * n}) for n in range(1, 501)}


class Clock:
    """Virtual time: nothing in this path waits."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1.8e9 + self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


async def poster(url: str, body: bytes, *, actions: int) -> Attempt:
    return Attempt(200, ANSWERS[actions], latency_ms=5.0)


def build(cls: Any, **options: Any) -> Any:
    """`cls(**options)` without the options its signature does not name."""
    names = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in options.items() if k in names})


async def one_rep(records: int, folder: Path) -> float:
    """CPU µs per record to push, take, attempt and settle `records` records."""
    clock, stats = Clock(), RunStats()
    lanes = Lanes(lane_cap=500)
    flow = Flow(lanes)
    outage = Outage(window_s=60.0, probe_max_s=30.0, limit_s=900.0, clock=clock, flow=flow)
    results, failures = NdjsonSink(folder / "results"), NdjsonSink(folder / "failures")
    finisher = Finisher(results=results, failures=failures, stats=stats,
                        save_responses=False, dry_run=False)
    attempter = build(Attempter, poster=poster, url="http://127.0.0.1:9/api",
                      auth=b'{"appId":"a"', batch=True, clock=clock, stats=stats,
                      outage=outage, before_send=lambda lines: None,
                      never_left=lambda lines: None)
    settler = build(Settler, flow=flow, finisher=finisher, rules=Rules(RetryPolicy()),
                    outage=outage, stats=stats, clock=clock, rng=random.Random(1))
    works = []
    for i in range(records):
        user = f"u{i // 2}"
        body = orjson.dumps({"userId": user, "time": 1.7e9 + i, "userAttributes": {"a": 1}})
        works.append(Work(Session("in", i + 1, user, None, body, body, 1.7e9 + i)))
    async with asyncio.TaskGroup() as tg:
        started = time.process_time()
        pushed = 0
        while pushed < records or lanes.pending:
            while pushed < records and lanes.in_memory < 2000:
                lanes.push(works[pushed])
                pushed += 1
            take = lanes.take(max_users=50, max_actions=500)
            assert take is not None
            answers = await attempter.attempt(take.parts, planned_s=clock.now())
            settler.settle(take.parts, answers, tg)
        spent_s = time.process_time() - started
    results.close()
    failures.close()
    assert stats.by_status["delivered"] == records, stats.by_status
    return spent_s / records * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="settle-path-") as tmp:
        reps = []
        for rep in range(args.reps):
            folder = Path(tmp) / str(rep)
            folder.mkdir()
            reps.append(asyncio.run(one_rep(args.records, folder)))
    print(f"min {min(reps):.2f} median {statistics.median(reps):.2f} µs/record "
          f"({', '.join(f'{r:.2f}' for r in reps)})")


if __name__ == "__main__":
    main()
