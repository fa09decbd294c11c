"""Deadlines: one timer keeps every request's --timeout, and post() turns it into a timeout.

Against raw asyncio servers on 127.0.0.1 that answer at once, late or never, and a fake
session that swallows a cancellation: a request past its deadline is a `timeout` attempt;
the run stopping is still a cancellation; no task is left with a cancel request counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from replayer.engine.send import NO_LIMIT, Deadlines, HttpPoster, post

ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


@asynccontextmanager
async def server(delay_s: dict[str, float]) -> AsyncIterator[str]:
    """Answers `POST /<name>` after delay_s[name] seconds (never when it is negative)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                path = head.split(b" ", 2)[1].decode().lstrip("/")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                wait_s = delay_s.get(path, 0.0)
                if wait_s < 0:
                    await asyncio.sleep(3600)
                await asyncio.sleep(wait_s)
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.close()
        for task in asyncio.all_tasks():
            if task.get_coro().__qualname__.endswith("serve"):  # type: ignore[union-attr]
                task.cancel()


@asynccontextmanager
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=NO_LIMIT) as http:
        yield http


async def test_a_request_past_its_deadline_is_a_timeout() -> None:
    deadlines = Deadlines(0.2)
    async with server({"never": -1}) as url, session() as http:
        started = time.monotonic()
        attempt = await post(http, f"{url}/never", b"{}", deadlines)
        took = time.monotonic() - started
    assert attempt.status is None and attempt.error == "timeout"
    assert attempt.sent, "it may have reached the server: ambiguous, as aiohttp's timeout"
    assert 0.2 <= took < 0.2 + deadlines.tick_s + 0.5
    assert attempt.latency_ms >= 200.0
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0, "the deadline's cancel is taken back"
    await asyncio.sleep(deadlines.tick_s * 2)
    assert not deadlines.armed, "no check left armed once no request is under way"


async def test_requests_within_their_deadline_are_answered_and_the_check_stops() -> None:
    deadlines = Deadlines(1.0)
    async with server({"late": 0.05}) as url, session() as http:
        attempts = await asyncio.gather(*(post(http, f"{url}/late", b"{}", deadlines)
                                          for _ in range(20)))
        assert [a.status for a in attempts] == [200] * 20
        await asyncio.sleep(deadlines.tick_s * 2)
        assert not deadlines.armed


async def test_only_the_slow_requests_of_many_time_out() -> None:
    deadlines = Deadlines(0.3)
    async with server({"fast": 0.0, "slow": 0.6}) as url, session() as http:
        paths = ["fast", "slow"] * 10
        attempts = await asyncio.gather(*(post(http, f"{url}/{p}", b"{}", deadlines)
                                          for p in paths))
    got = [(p, a.status, a.error) for p, a in zip(paths, attempts, strict=True)]
    assert got == [("fast", 200, None), ("slow", None, "timeout")] * 10


async def test_the_same_task_sends_again_after_a_timeout() -> None:
    """A batched call refused as too large sends its halves from one task, one by one."""
    deadlines = Deadlines(0.2)
    async with server({"never": -1, "fast": 0.0}) as url, session() as http:
        first = await post(http, f"{url}/never", b"{}", deadlines)
        second = await post(http, f"{url}/fast", b"{}", deadlines)
        await asyncio.sleep(0.3)  # nothing cancels this task any more
    assert (first.error, second.status) == ("timeout", 200)


async def test_the_run_stopping_is_a_cancellation_not_a_timeout() -> None:
    deadlines = Deadlines(5.0)
    async with server({"never": -1}) as url, session() as http:
        task = asyncio.create_task(post(http, f"{url}/never", b"{}", deadlines))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(deadlines.tick_s * 2)
    assert not deadlines.armed


class StopAtTheDeadline(Deadlines):
    """Deadlines whose check is followed at once by the run's stop: each task it cancels
    for its deadline is cancelled by the run too, before it runs again."""

    def _check(self) -> None:
        due = [task for task, at in self._due.items()
               if at <= task.get_loop().time()]
        super()._check()
        for task in due:
            task.cancel()


async def test_a_stop_at_the_deadline_is_still_a_cancellation() -> None:
    deadlines = StopAtTheDeadline(0.1)
    async with server({"never": -1}) as url, session() as http:
        task = asyncio.create_task(post(http, f"{url}/never", b"{}", deadlines))
        with pytest.raises(asyncio.CancelledError):
            await task
    assert task.cancelled()


class SwallowingSession:
    """A session whose request takes a cancellation and fails otherwise, as a library
    that turns a cancellation into its own error would."""

    async def post(self, url: str, **_: Any) -> Any:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise aiohttp.ClientOSError("stopped") from None
        raise AssertionError("never answered")


async def test_a_cancellation_taken_below_is_taken_back_when_the_request_ends() -> None:
    deadlines = Deadlines(0.05)
    http: Any = SwallowingSession()
    attempt = await post(http, "http://127.0.0.1:9/x", b"{}", deadlines)
    assert attempt.error == "transport"
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.2)  # no cancellation left pending for this task


async def test_the_poster_times_each_request_with_the_runs_deadlines() -> None:
    deadlines = Deadlines(0.2)
    async with server({"never": -1}) as url, session() as http:
        attempt = await HttpPoster(http, deadlines)(f"{url}/never", b"{}", actions=1)
    assert attempt.error == "timeout"
    deadlines.close()
    assert not deadlines.armed


@pytest.mark.parametrize(("timeout_s", "tick_s"), [(30.0, 1.0), (1.0, 0.05), (0.01, 0.005)])
def test_the_check_runs_often_enough_for_the_limit(timeout_s: float, tick_s: float) -> None:
    assert Deadlines(timeout_s).tick_s == pytest.approx(tick_s)


async def test_each_request_has_its_own_deadline_from_its_start() -> None:
    """Started 0.15 s apart, two requests that get no answer time out 0.15 s apart: the
    check cancels the one due and stops at the first one that is not."""
    deadlines = Deadlines(0.2)
    async with server({"never": -1}) as url, session() as http:
        first = asyncio.create_task(post(http, f"{url}/never", b"{}", deadlines))
        await asyncio.sleep(0.15)
        second = asyncio.create_task(post(http, f"{url}/never", b"{}", deadlines))
        done, _ = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {first}, "the later request is not cut at the earlier one's deadline"
        assert (await second).error == "timeout"
    assert first.result().error == "timeout"
    assert (await second).latency_ms >= 200.0



def test_deadlines_belong_to_the_loop_of_their_first_request() -> None:
    """The loop is kept from the first request (finding the running loop costs a system
    call per request on Python 3.11). A request on another loop is refused at once: its
    timer would never run there, and the request would wait for ever."""
    deadlines = Deadlines(0.2)

    async def one() -> str | None:
        async with server({"never": -1}) as url, session() as http:
            return (await post(http, f"{url}/never", b"{}", deadlines)).error

    assert asyncio.run(one()) == "timeout"
    with pytest.raises(RuntimeError, match="one loop"):
        asyncio.run(one())
