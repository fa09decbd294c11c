"""A fixed-response HTTP/1.1 server on raw asyncio.Protocol, so benchmarks measure the client.

`POST /api?action=start` gets one success element shaped like Leanplum's real `start`
answer; `POST /api?action=multi` gets one such element per action in the body (counted
with `body.count(b'"action":')`, so the client's per-element mapping is exercised).
Keep-alive and Content-Length bodies only: it parses just what a benchmark client sends
and costs far less per request than an aiohttp client.

    python bench/fixed_server.py [--port 0] [--log-arrivals FILE]

prints the port on its first stdout line; on SIGTERM/SIGINT it writes the arrival log
(monotonic seconds, one per line) and prints `requests=N cpu_s=S` before exiting 0.
Importable: `await start_server()` serves in the running loop (see `ServerStats`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from array import array
from dataclasses import dataclass, field

HOST = "127.0.0.1"
MAX_HEAD_BYTES = 64 * 1024

# One element of a real `start` answer (the shape of Leanplum's start-response example
# kept in the official JavaScript SDK's test data).
START_ELEMENT: dict[str, object] = {
    "vars": {},
    "token": "kGgLGj3ISSK2YgitAhZS688N6rbcR0WznSFKvEzSVrA",
    "interfaceRules": [],
    "variants": [],
    "regions": {},
    "success": True,
    "messages": {},
    "interfaceEvents": [],
}
_ELEMENT = json.dumps(START_ELEMENT, separators=(",", ":")).encode()
_ACTION_KEY = b'"action":'


@dataclass(slots=True)
class ServerStats:
    """What the server saw: requests answered and, if asked, each request's arrival time."""

    requests: int = 0
    arrivals: array[float] | None = None  # time.monotonic() per request, when logging
    multi_responses: dict[int, bytes] = field(default_factory=dict)


def response(status: int, reason: str, body: bytes, *, close: bool = False) -> bytes:
    """A whole HTTP/1.1 response with a JSON body."""
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    return head.encode() + body


def elements_body(count: int) -> bytes:
    """`{"response": [element * count]}`."""
    return b'{"response":[' + b",".join([_ELEMENT] * count) + b"]}"


START_RESPONSE = response(200, "OK", elements_body(1))
NOT_FOUND = response(
    404, "Not Found",
    b'{"response":[{"success":false,"error":{"message":"unknown path or action"}}]}',
)
BAD_REQUEST = response(
    400, "Bad Request",
    b'{"response":[{"success":false,"error":{"message":"unsupported request"}}]}', close=True,
)


def action_of(target: bytes) -> bytes | None:
    """The `action` query parameter of `/api?...`, or None for another path."""
    path, _, query = target.partition(b"?")
    if path != b"/api":
        return None
    for part in query.split(b"&"):
        if part.startswith(b"action="):
            return part[7:]
    return None


class FixedResponder(asyncio.Protocol):
    """One connection: parses pipelined requests from a buffer and answers each at once."""

    def __init__(self, stats: ServerStats) -> None:
        self._stats = stats
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    self._reply_and_close(BAD_REQUEST)
                return
            head = bytes(buffer[:end]).lower()
            length = _content_length(head)
            if length is None:
                self._reply_and_close(BAD_REQUEST)
                return
            total = end + 4 + length
            if len(buffer) < total:
                return
            body = bytes(buffer[end + 4:total])
            del buffer[:total]
            if not self._answer(head, body):
                return

    def _answer(self, head: bytes, body: bytes) -> bool:
        """Writes the answer; False when the connection is to close."""
        stats = self._stats
        stats.requests += 1
        if stats.arrivals is not None:
            stats.arrivals.append(time.monotonic())
        line_end = head.find(b"\r\n")
        parts = head[: line_end if line_end >= 0 else len(head)].split(b" ")
        action = action_of(parts[1]) if len(parts) == 3 else None
        if action == b"start":
            out = START_RESPONSE
        elif action == b"multi":
            count = body.count(_ACTION_KEY)
            out = stats.multi_responses.get(count) or self._multi(count)
        else:
            out = NOT_FOUND
        assert self._transport is not None
        if b"\r\nconnection: close" in head:
            self._reply_and_close(out)
            return False
        self._transport.write(out)
        return True

    def _multi(self, count: int) -> bytes:
        out = response(200, "OK", elements_body(count))
        self._stats.multi_responses[count] = out
        return out

    def _reply_and_close(self, out: bytes) -> None:
        assert self._transport is not None
        self._transport.write(out)
        self._transport.close()
        self._buffer.clear()


def _content_length(head: bytes) -> int | None:
    """The body length of a lower-cased request head; None for chunked or a bad value."""
    if b"\r\ntransfer-encoding:" in head:
        return None
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    start = at + 17
    stop = head.find(b"\r\n", start)
    try:
        value = int(head[start: stop if stop >= 0 else len(head)])
    except ValueError:
        return None
    return value if value >= 0 else None


async def start_server(
    host: str = HOST, port: int = 0, *, log_arrivals: bool = False
) -> tuple[asyncio.Server, ServerStats]:
    """Starts serving in the running loop; the bound port is `server.sockets[0].getsockname()[1]`."""
    stats = ServerStats(arrivals=array("d") if log_arrivals else None)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: FixedResponder(stats), host, port, reuse_address=True, backlog=1024
    )
    return server, stats


def write_arrivals(path: str, arrivals: array[float]) -> None:
    """One monotonic arrival time per line."""
    with open(path, "w", encoding="ascii") as out:
        out.write("".join(f"{t:.9f}\n" for t in arrivals))


async def _serve(port: int, log_path: str | None) -> ServerStats:
    server, stats = await start_server(HOST, port, log_arrivals=log_path is not None)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    return stats


def main(argv: list[str] | None = None) -> int:
    """Serves until SIGTERM/SIGINT; then writes the arrival log and reports CPU time."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: a free one)")
    parser.add_argument("--log-arrivals", metavar="FILE", default=None,
                        help="write each request's monotonic arrival time here at exit")
    args = parser.parse_args(argv)
    stats = asyncio.run(_serve(args.port, args.log_arrivals))
    if args.log_arrivals is not None and stats.arrivals is not None:
        write_arrivals(args.log_arrivals, stats.arrivals)
    times = os.times()
    print(f"requests={stats.requests} cpu_s={times.user + times.system:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
