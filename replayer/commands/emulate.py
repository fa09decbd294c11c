"""The `replayer emulate` click command: flags to an `EmulatorConfig`, then `serve.run`.

The client key comes from the environment or a file, never a flag, so it stays out of `ps`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from replayer.commands.base import OutputFailure
from replayer.emulator.config import (
    DEFAULT_APP_ID,
    DEFAULT_CLIENT_KEY,
    EmulatorConfig,
    LatencyModel,
)
from replayer.emulator.faults import FaultConfig
from replayer.emulator.limit import RateLimit
from replayer.emulator.serve import ListenError, run

CLIENT_KEY_ENV = "REPLAYER_EMULATOR_CLIENT_KEY"

_T = TypeVar("_T")

_EPILOG = f"""\b
Example: a local API with 5 ms median latency (50 ms p99) and some failures:
  replayer emulate --port 8787 --latency-ms lognormal:5:50 \\
      --faults 500=0.02,503=0.02,html_share=0.5,429=0.03,drop_after=0.01 --seed 7
Then point the replay at http://127.0.0.1:8787/api; inspect what arrived with
  curl http://127.0.0.1:8787/_emulator/state

\b
The expected client key is read from ${CLIENT_KEY_ENV} or --client-key-file
(the file wins); without either it is {DEFAULT_CLIENT_KEY!r}.

\b
Fault SPEC: comma-separated NAME=VALUE. Shares (0..1, summing to at most 1):
  500, 502, 503, 429 (concurrent-profile message), 429_retry_after,
  drop_before, drop_after, slow_after, truncated_body.
Knobs: html_share (share of 5xx with an HTML body), retry_after_s,
  slow_delay_s (default 30), stall_after_s + stall_for_s (a window, in seconds
  from start, during which every request waits until the window ends).

\b
An app-wide limit, as users of the real API meet it (Leanplum publishes none):
  --limit-rps 400          at most 400 requests a second (a token bucket holding
                           --limit-burst seconds' worth); above it a 429 in
                           Leanplum's error shape, without Retry-After
  --limit-rps 400,150@14s  400 a second, then 150 from 14 s after start

\b
Exit codes:
  0    stopped by SIGINT (Ctrl-C) or SIGTERM: its normal end
  2    usage error
  7    the address cannot be listened on (a port in use, say)
"""


@click.command("emulate", epilog=_EPILOG)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--app-id", default=DEFAULT_APP_ID, show_default=True, help="Expected appId.")
@click.option(
    "--client-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the expected clientKey.",
)
@click.option(
    "--latency-ms",
    default="0",
    show_default=True,
    metavar="MS|lognormal:MEDIAN:P99",
    help="Time each request holds its users' locks.",
)
@click.option("--faults", "faults_spec", default="", metavar="SPEC", help="Faults to inject.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seeds faults and latency.")
@click.option("--blocked-user", multiple=True, help="A user answered 451. Repeatable.")
@click.option("--known-user", multiple=True, help="A user that already exists. Repeatable.")
@click.option("--record-requests", is_flag=True, help="Keep request bodies (key redacted).")
@click.option("--limit-rps", default=None, metavar="RATE[,RATE@Ts...]",
              help="App-wide requests per second; above it, 429 (see below).")
@click.option("--limit-burst", "limit_burst_s", default=1.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Seconds' worth of --limit-rps the bucket holds.")
def emulate(
    host: str,
    port: int,
    app_id: str,
    client_key_file: Path | None,
    latency_ms: str,
    faults_spec: str,
    seed: int,
    blocked_user: tuple[str, ...],
    known_user: tuple[str, ...],
    record_requests: bool,
    limit_rps: str | None,
    limit_burst_s: float,
) -> None:
    """Serve a local Leanplum API emulator (`start`, `multi`) until interrupted."""
    config = EmulatorConfig(
        app_id=app_id,
        client_key=_client_key(client_key_file),
        latency_ms=_parsed(LatencyModel.parse, latency_ms, "--latency-ms"),
        blocked_users=frozenset(blocked_user),
        known_users=frozenset(known_user),
        record_requests=record_requests,
        faults=_parsed(FaultConfig.parse, faults_spec, "--faults"),
        seed=seed,
        limit=None if limit_rps is None else _parsed(
            lambda spec: RateLimit.parse(spec, burst_s=limit_burst_s), limit_rps, "--limit-rps"),
    )
    try:
        run(config, host, port)
    except ListenError as exc:
        raise OutputFailure(str(exc)) from None


def _client_key(path: Path | None) -> str:
    if path is None:
        return os.environ.get(CLIENT_KEY_ENV) or DEFAULT_CLIENT_KEY
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise click.BadParameter(f"{path}: {exc.strerror or exc}",
                                 param_hint="--client-key-file") from None
    if not key:
        raise click.BadParameter(f"{path} is empty", param_hint="--client-key-file")
    return key


def _parsed(parse: Callable[[str], _T], spec: str, flag: str) -> _T:
    try:
        return parse(spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None
