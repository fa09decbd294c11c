"""Request bodies and the POST itself: the only place that catches aiohttp's errors.

Every transport error and timeout becomes an `Attempt` value; nothing else escapes
except cancellation. The clientKey is put into the body here and nowhere else, and it
is never part of a URL, so aiohttp's own error messages cannot carry it. Redirects are
never followed: aiohttp would re-send the body, key included, to wherever they point.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.payload import BytesPayload

from replayer.engine.lanes import Work
from replayer.records import API_VERSION, Attempt, KeyText


def auth_prefix(app_id: str, client_key: str) -> bytes:
    """The opening of every request body: `{"appId":…,"clientKey":…,"apiVersion":…` (no brace)."""
    return orjson.dumps({"appId": app_id, "clientKey": client_key, "apiVersion": API_VERSION})[:-1]


def start_body(auth: bytes, work: Work) -> bytes:
    """The JSON body of one `start` call: the auth fields, then the record's parameters."""
    return _merge(auth, work.session.body)


def start_body_of(auth: bytes, params: bytes) -> bytes:
    """The JSON body of one `start` call carrying `params` (a JSON object's bytes)."""
    return _merge(auth, params)


def multi_body(auth: bytes, works: Sequence[Work], *, now_s: float) -> bytes:
    """The JSON body of one `multi` call: each action with its own time (the record's, or now)."""
    now = orjson.dumps(now_s)
    untimed = b'{"action":"start","time":' + now
    actions = [
        _merge(_START_ACTION if w.session.time_s is not None else untimed, w.session.body)
        for w in works
    ]
    return b"".join((auth, b',"time":', now, b',"data":[', b",".join(actions), b"]}"))


_START_ACTION = b'{"action":"start"'


def _merge(opening: bytes, obj: bytes) -> bytes:
    """`opening` (an object without its closing brace) followed by the members of `obj`."""
    return opening + b"}" if obj == b"{}" else opening + b"," + obj[1:]


_JSON = "application/json"


def client_timeout(timeout_s: float) -> aiohttp.ClientTimeout:
    """The per-request limit kept by aiohttp itself, set once on the session: for a session
    that sends a few calls (the preflight). A run's session has none (`NO_LIMIT`): its
    requests are timed by `Deadlines`."""
    return aiohttp.ClientTimeout(total=timeout_s)


NO_LIMIT = aiohttp.ClientTimeout(total=None)  # a session whose posts bring `Deadlines`


class Deadlines:
    """The time limit of every request under way, kept by one timer for them all.

    aiohttp's own limit (`ClientTimeout.total`) arms a loop timer and a timer context for
    each request: about 20,000 instructions, 3.5 µs timed alone on uvloop, for each
    request (with --no-batch, each record). Here a request notes its deadline in a dict as it
    starts; a check every `tick_s`, armed only while requests are under way, cancels the
    task of each request past its deadline, and `post()` turns that cancellation into a
    timeout, as aiohttp's timer does. A request thus times out between `timeout_s` and
    `timeout_s + tick_s` after it started (aiohttp's own rounds a limit of 5 s or more up
    to a whole second of the loop's clock: the same precision at the default 30 s).
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.tick_s = min(1.0, max(0.005, timeout_s / 20))
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of the first request

    def enter(self) -> asyncio.Task[Any]:
        """The running task starts a request: its deadline is from now."""
        # The loop of the first request, kept: on Python 3.11, finding the running loop
        # costs a getpid() system call, and a run has one loop.
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a request with a deadline runs in a task of one loop")
        self._due[task] = loop.time() + self.timeout_s
        if self._timer is None:
            self._timer = loop.call_at(loop.time() + self.tick_s, self._check)
        return task

    def leave(self, task: asyncio.Task[Any]) -> None:
        """The request of `task` ended (whatever its end)."""
        del self._due[task]
        if task in self._expired:
            # Cancelled for its deadline, yet it ended without seeing the cancellation
            # (something under it took it): the cancel request is taken back.
            self._expired.discard(task)
            task.uncancel()

    def timed_out(self, task: asyncio.Task[Any]) -> bool:
        """True when the cancellation `task` sees is (also) this deadline's: taken back
        here. A cancellation from elsewhere (the run stopping) is still counted by
        `task.cancelling()` then: the caller re-raises it."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    def _check(self) -> None:
        self._timer = None
        if not self._due:
            return
        loop = next(iter(self._due)).get_loop()
        now = loop.time()
        # Every deadline is its start plus the same limit, and the dict keeps the order
        # of the starts: the first one not yet due ends the scan (those cancelled before
        # stay until their task has seen it, a turn of the loop).
        for task, due in self._due.items():
            if due > now:
                break
            if task not in self._expired:
                self._expired.add(task)
                task.cancel()  # schedules the CancelledError: the dict is not changed here
        self._timer = loop.call_at(now + self.tick_s, self._check)

    @property
    def armed(self) -> bool:
        """The check is due to run (while requests are under way, and one tick after)."""
        return self._timer is not None

    def close(self) -> None:
        """Stops the check (the run's requests are over)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def post(http: aiohttp.ClientSession, url: str, body: bytes,
               deadlines: Deadlines | None = None) -> Attempt:
    """POSTs `body` to `url` once and reports what came back: within `deadlines`' limit,
    or without them within the session's own timeout.

    Never raises for the network: every transport error is an `Attempt` with `error` set.
    A redirect (3xx) is not followed; its `detail` is the host it points to, if any.
    """
    started = time.perf_counter()
    # One coroutine, not one awaiting another: each level is passed through on every resume.
    task = None if deadlines is None else deadlines.enter()
    cancelling = 0 if task is None else task.cancelling()
    try:
        # The body as a payload that carries its own Content-Type: no header mapping to
        # merge per request. `await` and release(), not `async with`: the same public
        # API with one wrapper less per request.
        response = await http.post(url, data=BytesPayload(body, content_type=_JSON),
                                   allow_redirects=False)
        try:
            payload = await response.read()
        finally:
            response.release()
        status = response.status
        headers = response.headers
        return Attempt(  # every field, in order: the quickest way to make one
            status, payload, None,
            redirect_host(status, headers.get("Location")) if 300 <= status < 400 else "",
            True, (time.perf_counter() - started) * 1000.0, headers.get("Retry-After"),
        )
    except asyncio.CancelledError:
        if (deadlines is None or task is None or not deadlines.timed_out(task)
                or task.cancelling() > cancelling):
            raise  # the run stops (also, or only): not this request's timeout
        return Attempt(None, None, "timeout", latency_ms=_since_ms(started))
    except aiohttp.ConnectionTimeoutError as exc:
        # Timed out while connecting: the request never left this machine.
        return Attempt(None, None, "timeout", _describe(exc), sent=False,
                       latency_ms=_since_ms(started))
    except TimeoutError:
        return Attempt(None, None, "timeout", latency_ms=_since_ms(started))
    except aiohttp.ClientConnectorError as exc:
        # Could not connect at all: the request never left this machine.
        return Attempt(None, None, "connect", _describe(exc), sent=False,
                       latency_ms=_since_ms(started))
    except aiohttp.ServerDisconnectedError as exc:
        return Attempt(None, None, "disconnected", _describe(exc), latency_ms=_since_ms(started))
    except aiohttp.ClientPayloadError as exc:
        return Attempt(None, None, "payload", _describe(exc), latency_ms=_since_ms(started))
    except (aiohttp.ClientError, OSError) as exc:
        return Attempt(None, None, "transport", _describe(exc), latency_ms=_since_ms(started))
    finally:
        if deadlines is not None and task is not None:
            deadlines.leave(task)


def _since_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


_HOST = re.compile(r"[A-Za-z0-9.\-\[\]:]{1,260}")


def redirect_host(status: int, location: str | None) -> str:
    """The host[:port] a 3xx answer points to ("" if none, relative or not a plain host).

    Only the host: the rest of a Location (path, query, user info) may carry anything.
    """
    if not 300 <= status < 400 or not location:
        return ""
    try:
        parts = urlsplit(location.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return ""
    if not host:
        return ""
    shown = f"{host}:{port}" if port is not None else host
    return shown if _HOST.fullmatch(shown) else ""


def _describe(exc: BaseException) -> str:
    """The exception's class and text; bodies are never part of aiohttp's messages."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Poster(Protocol):
    """Sends one request body and reports the attempt (the seam that --dry-run replaces)."""

    async def __call__(self, url: str, body: bytes, *, actions: int) -> Attempt: ...


class HttpPoster:
    """The real thing: POSTs through the run's one aiohttp session."""

    def __init__(self, http: aiohttp.ClientSession, deadlines: Deadlines) -> None:
        self._http = http
        self._deadlines = deadlines

    def __call__(self, url: str, body: bytes, *, actions: int) -> Coroutine[Any, Any, Attempt]:
        """POSTs `body` to `url` within the run's time limit. (post() itself, not a coroutine
        awaiting it: each level of coroutines is passed through on every resume.)"""
        return post(self._http, url, body, self._deadlines)


DRY_TURNS = 3  # turns of the event loop a slow dry server lets the rest of the run take


class DryPoster:
    """--dry-run: writes each body (built with the key redacted, and the key's text masked
    wherever a record holds it) and answers success.

    At once, as the fastest server would; with `slow`, one answer at a time, each after
    the rest of the run has had a few turns, as a server slower than the reading does
    (the other end of the range of calls an input larger than the read-ahead may take).
    """

    def __init__(self, path: Path | str, *, key: KeyText | None = None,
                 slow: bool = False) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._key = key or KeyText(None)
        self._slow = asyncio.Lock() if slow else None

    async def __call__(self, url: str, body: bytes, *, actions: int) -> Attempt:
        """Appends `{"url":…,"body":…}` and answers one success element per action."""
        if self._slow is not None:
            async with self._slow:
                for _ in range(DRY_TURNS):
                    await asyncio.sleep(0)
        action = url.rsplit("action=", 1)[-1]
        row = b'{"action":"' + action.encode() + b'","body":' + body + b"}\n"
        os.write(self._fd, self._key.mask_json(row))
        answer = b'{"response":[' + b",".join([_DRY_ELEMENT] * actions) + b"]}"
        return Attempt(200, answer)

    def close(self) -> None:
        """Closes the requests file."""
        os.close(self._fd)


_DRY_ELEMENT = b'{"success":true,"vars":{},"variants":[]}'
