"""The values settings are made of: `Settings` (frozen), `Secret` and `ConfigError`.

Pure: no I/O; `load_settings` (replayer.config.load) builds and checks a `Settings`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, NoReturn

from replayer.limits import MAX_MULTI_ACTIONS, MAX_MULTI_USERS

EMBEDDED = "embedded"
# Must match the emulator's defaults (replayer.emulator.config DEFAULT_APP_ID and
# DEFAULT_CLIENT_KEY); kept as literals so that loading settings does not import the
# emulator.
EMBEDDED_APP_ID = "emulator-app"
EMBEDDED_CLIENT_KEY = "emulator-prod-key"

OnAmbiguous = Literal["retry", "fail"]
LogFormat = Literal["text", "json"]
Pace = Literal["rate", "original"]
LogLevel = Literal["debug", "info", "warning", "error"]
EventLoop = Literal["auto", "uvloop", "asyncio"]


# The settings that say whether a run is a load test and whether it holds a schedule.
_PACING = ("rate_per_s", "rate_schedule", "pace", "loop", "duration_s", "fail_if")


def is_load_test(settings: Mapping[str, object]) -> bool:
    """Schedules, original pace, loops, durations and thresholds make a load test; from
    settings as `Settings` has them or as summary.json records them."""
    return bool(settings.get("rate_schedule") or settings.get("pace") == "original"
                or settings.get("loop") or settings.get("duration_s") or settings.get("fail_if"))


def holds_schedule(settings: Mapping[str, object]) -> bool:
    """A run whose requests each have a planned time it holds: a rate schedule, the
    recorded pace, or a load test's constant --rate. Only such a run can fall behind
    schedule; elsewhere --rate is a ceiling (and --rate auto a moving one) that plans
    nothing, and a request's latency is its service latency."""
    return bool(settings.get("rate_schedule") or settings.get("pace") == "original"
                or (settings.get("rate_per_s") and is_load_test(settings)))


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which source and never holds a secret."""


class Secret:
    """A string that only `reveal()` shows: repr, str, format and pickling never expose it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value itself; pass it only to what sends it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        # A pickle is bytes that end up in queues, caches and logs; a process that needs
        # the key reads it from its own environment or key file instead.
        raise TypeError("a Secret cannot be pickled")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: object) -> Secret:
        return self


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of `replayer run`, checked; built by `load_settings`."""

    endpoint: str = EMBEDDED
    allow_insecure_http: bool = False
    preflight: bool = True  # one call that creates nothing before the first record
    app_id: str | None = None
    client_key: Secret | None = None
    client_key_file: Path | None = None  # the key file actually read, if the key came from one
    concurrency: int = 64
    rate_per_s: float | None = None  # None: unpaced
    rate: str | None = None  # "auto" or "auto:MAX": the adaptive rate (--rate auto)
    rate_start_per_s: float = 20.0  # --rate auto: where the rate starts
    rate_max_per_s: float = 10_000.0  # --rate auto: the ceiling, unless auto:MAX gives one
    timeout_s: float = 30.0
    batch: bool = True
    batch_users: int = MAX_MULTI_USERS
    batch_actions: int = MAX_MULTI_ACTIONS
    batch_linger_ms: float = 20.0
    max_attempts: int = 5
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    backoff_jitter: float = 0.5
    on_ambiguous: OnAmbiguous = "retry"
    outage_window_s: float = 60.0
    outage_probe_max_s: float = 30.0
    outage_limit_s: float = 900.0  # an outage this long stops the run (resumable, exit 8)
    throttle_wait_max_s: float = 600.0  # a record's wait on throttling 429s, attempts unused
    drain_timeout_s: float = 30.0
    workers: int = 0  # 0: one per CPU
    event_loop: EventLoop = "auto"  # auto: uvloop where it is installed (engine.loop)
    shard: str | None = None  # "I/N": replay only shard I of N of the users (source.shard)
    resume: bool = False
    retry_failed: bool = False  # with resume: send again what failed for passing reasons
    dry_run: bool = False
    yes: bool = False
    confirm_over: int = 10_000
    out_dir: Path | None = None
    overwrite: bool = False
    save_responses: bool = False
    max_line_bytes: int = 1_048_576
    allow_unknown_fields: bool = False
    log_format: LogFormat = "text"
    log_level: LogLevel = "info"
    progress_interval_s: float = 10.0
    quiet: bool = False
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    rate_schedule: str | None = None
    pace: Pace = "rate"
    speed: float = 1.0
    duration_s: float | None = None
    loop: bool = False
    loop_suffix: str = "-pass{n}"
    fail_if: tuple[str, ...] = ()
    abort_on_fail: bool = False

    def is_load_test(self) -> bool:
        """Schedules, original pace, loops, durations and thresholds: a load test."""
        return is_load_test(self._pacing())

    def holds_schedule(self) -> bool:
        """Each request has a planned time that the run holds (see `holds_schedule`)."""
        return holds_schedule(self._pacing())

    def _pacing(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in _PACING}

    def redacted(self) -> dict[str, object]:
        """Every setting as JSON-ready values, with the client key hidden (for summary.json)."""
        out: dict[str, object] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Secret):
                value = "[redacted]"
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out
