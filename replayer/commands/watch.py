"""Watching a run: once a second, read its metrics rows, redraw progress, serve /metrics.

One task polls the metrics files (one per process) into live `Totals`; the progress
display and the Prometheus endpoint both show those, so neither touches the hot path.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from replayer.config import Settings
from replayer.observe.live import Follower
from replayer.observe.logs import flush_held, log, setup_logging
from replayer.output.layout import METRICS, WORKERS_DIR
from replayer.output.sinks import OutputError

if TYPE_CHECKING:  # imported when used: a quiet run without /metrics needs neither
    from aiohttp import web

    from replayer.observe.progress import Progress

POLL_INTERVAL_S = 1.0


def metrics_files(out_dir: Path, workers: int) -> Callable[[], Iterable[Path]]:
    """The metrics.ndjson files a run of `workers` processes writes while it goes on."""
    if workers <= 1:
        return lambda: [out_dir / METRICS]
    return lambda: [out_dir / WORKERS_DIR / str(i) / METRICS for i in range(workers)]


@asynccontextmanager
async def watching(settings: Settings, out_dir: Path, workers: int) -> AsyncIterator[None]:
    """Shows progress (unless quiet) and serves /metrics (if a port is set) while inside."""
    follower = Follower(metrics_files(out_dir, workers))
    runner: web.AppRunner | None = None
    if settings.metrics_port is not None:
        from replayer.observe.prom import metrics_app, serve_metrics

        try:
            runner = await serve_metrics(metrics_app(lambda: follower.totals),
                                         settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            raise OutputError(f"cannot serve metrics on {settings.metrics_host} port "
                              f"{settings.metrics_port}: {exc.strerror or exc}") from None
        host, port = runner.addresses[0][:2]
        log.warning("metrics on http://%s:%s/metrics", host, port)
    progress = None
    if not settings.quiet:
        from replayer.observe.progress import Progress

        progress = Progress(stream=sys.stderr, tty=sys.stderr.isatty(),
                            interval_s=settings.progress_interval_s,
                            json_lines=settings.log_format == "json")
        if progress.console is not None:  # log lines above the live display, not through it
            setup_logging(fmt=settings.log_format, level=settings.log_level,
                          console=progress.console)
    poller = asyncio.create_task(_poll(follower, progress))
    try:
        yield
    finally:
        poller.cancel()
        with suppress(asyncio.CancelledError):
            await poller
        totals = follower.poll()
        flush_held(every=True)  # above the final display: every count of lines held back
        if progress is not None:
            progress.close(totals)
        if runner is not None:
            await runner.cleanup()


async def _poll(follower: Follower, progress: Progress | None) -> None:
    while True:
        totals = follower.poll()
        flush_held()
        if progress is not None:
            progress.update(totals)
        await asyncio.sleep(POLL_INTERVAL_S)
