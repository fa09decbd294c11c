"""The minimal client a user would write in an afternoon: the yardstick for `replayer run`.

Reads NDJSON line by line, adds appId/clientKey/apiVersion, and POSTs one `start` per
record from a fixed number of workers over one aiohttp session. No validation, no
per-user ordering, no retries, no outputs: only a count on stdout.

    LEANPLUM_APP_ID=... LEANPLUM_CLIENT_KEY=... \\
        python bench/baseline_client.py FILE --endpoint http://127.0.0.1:PORT/api

Exit code 0 when every request got HTTP 200, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from collections.abc import Iterator
from typing import BinaryIO

import aiohttp
import orjson


async def worker(
    http: aiohttp.ClientSession, url: str, lines: Iterator[bytes], auth: dict[str, str],
    statuses: Counter[int | str],
) -> None:
    """Sends the next line until the shared iterator runs dry."""
    for line in lines:
        if not line.strip():
            continue
        body = orjson.dumps({**auth, **orjson.loads(line)})
        try:
            async with http.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()
                statuses[response.status] += 1
        except aiohttp.ClientError as exc:
            statuses[type(exc).__name__] += 1


async def send_all(lines: BinaryIO, url: str, *, concurrency: int) -> Counter[int | str]:
    """POSTs every line to `url`; returns the count per HTTP status or error."""
    auth = {
        "appId": os.environ["LEANPLUM_APP_ID"],
        "clientKey": os.environ["LEANPLUM_CLIENT_KEY"],
        "apiVersion": "1.0.6",
    }
    statuses: Counter[int | str] = Counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(
            *(worker(http, url, lines, auth, statuses) for _ in range(concurrency))
        )
    return statuses


def main(argv: list[str] | None = None) -> int:
    """Parses flags, sends, prints `sent=N ok=N statuses={...}`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--endpoint", required=True, help="the API URL, e.g. http://h:p/api")
    parser.add_argument("--concurrency", type=int, default=64, help="workers [64]")
    args = parser.parse_args(argv)
    with open(args.path, "rb") as lines:
        statuses = asyncio.run(
            send_all(lines, f"{args.endpoint}?action=start", concurrency=args.concurrency)
        )
    sent = sum(statuses.values())
    print(f"sent={sent} ok={statuses[200]} statuses={dict(statuses)}", flush=True)
    return 0 if statuses[200] == sent else 1


if __name__ == "__main__":
    sys.exit(main())
