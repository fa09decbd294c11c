"""The one table of settings: each one's type, CLI flag, config section, env vars and range.

Pure: loading, checking, the reference docs and the tests that keep config.toml and the
CLI's flags in step all derive from `FIELDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from replayer.config.settings import EventLoop, LogFormat, LogLevel, OnAmbiguous, Pace
from replayer.limits import MAX_MULTI_ACTIONS, MAX_MULTI_USERS

Kind = Literal["str", "int", "float", "bool", "path", "secret", "strs"]

_NOUNS: dict[str, str] = {
    "str": "a non-empty string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean (true/false, 1/0, yes/no)",
    "path": "a path",
    "secret": "a non-empty key",
    "strs": "a list of non-empty strings (in an environment variable: separated by ;)",
}


@dataclass(frozen=True, slots=True)
class Bounds:
    """The range a number must lie in; `low_open` excludes `low` itself."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def accepts(self, value: float) -> bool:
        """Whether `value` lies in the range."""
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        """The range in words, to follow a noun ("an integer from 1 to 50")."""
        if self.low is not None and self.high is not None:
            return f" from {self.low} to {self.high}"
        if self.low is not None:
            return f" greater than {self.low}" if self.low_open else f" of at least {self.low}"
        return f" of at most {self.high}" if self.high is not None else ""


def _between(low: float, high: float) -> Bounds:
    return Bounds(low, high)


def _at_least(low: float) -> Bounds:
    return Bounds(low)


def _above(low: float) -> Bounds:
    return Bounds(low, low_open=True)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One setting: its type, CLI flag, config file section, env vars and allowed values.

    A "secret" setting is read from the environment only: command lines end up in shell
    history and config files in repositories.
    """

    name: str
    kind: Kind
    flag: str  # as the CLI spells it; "" if the CLI has none (still accepted in `flags`)
    section: str
    env: tuple[str, ...]  # when several are set they must agree
    bounds: Bounds | None = None
    choices: tuple[str, ...] = ()

    @property
    def expect(self) -> str:
        """What a valid value looks like, in words."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        return _NOUNS[self.kind] + (self.bounds.describe() if self.bounds else "")

    def accepts(self, value: object) -> bool:
        """Whether an already typed value is allowed."""
        if self.choices:
            return value in self.choices
        if self.bounds is not None and isinstance(value, int | float):
            return self.bounds.accepts(value)
        return True


# The one table of settings: loading, checking and the tests that keep config.toml and
# the CLI's flags in step derive from it. A setting's key in the config file is its name,
# under `section`. Defaults live in `Settings`.
FIELDS: tuple[FieldSpec, ...] = (
    # name, kind, flag, section, env vars, allowed values
    FieldSpec("endpoint", "str", "--endpoint", "leanplum", ("REPLAYER_ENDPOINT",)),
    FieldSpec(
        "allow_insecure_http", "bool", "--allow-insecure-http", "leanplum",
        ("REPLAYER_ALLOW_INSECURE_HTTP",),
    ),
    FieldSpec("preflight", "bool", "--preflight", "leanplum", ("REPLAYER_PREFLIGHT",)),
    FieldSpec("app_id", "str", "--app-id", "leanplum", ("LEANPLUM_APP_ID", "REPLAYER_APP_ID")),
    FieldSpec(
        "client_key", "secret", "", "leanplum", ("LEANPLUM_CLIENT_KEY", "REPLAYER_CLIENT_KEY")
    ),
    FieldSpec(
        "client_key_file", "path", "--client-key-file", "leanplum", ("REPLAYER_CLIENT_KEY_FILE",)
    ),
    FieldSpec(
        "concurrency", "int", "--concurrency", "send",
        ("REPLAYER_CONCURRENCY",), _between(1, 10_000),
    ),
    FieldSpec("rate_per_s", "float", "--rate", "send", ("REPLAYER_RATE_PER_S",), _above(0)),
    FieldSpec("rate", "str", "", "send", ("REPLAYER_RATE",)),
    FieldSpec(
        "rate_start_per_s", "float", "", "send", ("REPLAYER_RATE_START_PER_S",), _above(0)
    ),
    FieldSpec("rate_max_per_s", "float", "", "send", ("REPLAYER_RATE_MAX_PER_S",), _above(0)),
    FieldSpec("timeout_s", "float", "--timeout", "send", ("REPLAYER_TIMEOUT_S",), _above(0)),
    FieldSpec("batch", "bool", "--batch", "batch", ("REPLAYER_BATCH",)),
    FieldSpec(
        "batch_users", "int", "--batch-users", "batch", ("REPLAYER_BATCH_USERS",), _between(1, MAX_MULTI_USERS)
    ),
    FieldSpec(
        "batch_actions", "int", "--batch-actions", "batch",
        ("REPLAYER_BATCH_ACTIONS",), _between(1, MAX_MULTI_ACTIONS),
    ),
    FieldSpec(
        "batch_linger_ms", "float", "--batch-linger-ms", "batch",
        ("REPLAYER_BATCH_LINGER_MS",), _at_least(0),
    ),
    FieldSpec(
        "max_attempts", "int", "--max-attempts", "retry", ("REPLAYER_MAX_ATTEMPTS",), _at_least(1)
    ),
    FieldSpec("backoff_base_s", "float", "", "retry", ("REPLAYER_BACKOFF_BASE_S",), _at_least(0)),
    FieldSpec("backoff_max_s", "float", "", "retry", ("REPLAYER_BACKOFF_MAX_S",), _at_least(0)),
    FieldSpec("backoff_jitter", "float", "", "retry", ("REPLAYER_BACKOFF_JITTER",), _between(0, 1)),
    FieldSpec(
        "on_ambiguous", "str", "--on-ambiguous", "retry",
        ("REPLAYER_ON_AMBIGUOUS",), choices=get_args(OnAmbiguous),
    ),
    FieldSpec(
        "outage_window_s", "float", "--outage-window", "retry",
        ("REPLAYER_OUTAGE_WINDOW_S",), _above(0),
    ),
    FieldSpec(
        "outage_probe_max_s", "float", "", "retry", ("REPLAYER_OUTAGE_PROBE_MAX_S",), _above(0)
    ),
    FieldSpec(
        "outage_limit_s", "float", "--outage-limit", "retry",
        ("REPLAYER_OUTAGE_LIMIT_S",), _above(0),
    ),
    FieldSpec(
        "throttle_wait_max_s", "float", "", "retry", ("REPLAYER_THROTTLE_WAIT_MAX_S",),
        _at_least(0),
    ),
    FieldSpec(
        "drain_timeout_s", "float", "--drain-timeout", "run",
        ("REPLAYER_DRAIN_TIMEOUT_S",), _at_least(0),
    ),
    FieldSpec("workers", "int", "--workers", "run", ("REPLAYER_WORKERS",), _at_least(0)),
    FieldSpec("event_loop", "str", "--event-loop", "run", ("REPLAYER_EVENT_LOOP",),
              choices=get_args(EventLoop)),
    FieldSpec("shard", "str", "--shard", "run", ("REPLAYER_SHARD",)),
    FieldSpec("resume", "bool", "--resume", "run", ("REPLAYER_RESUME",)),
    FieldSpec("retry_failed", "bool", "--retry-failed", "run", ("REPLAYER_RETRY_FAILED",)),
    FieldSpec("dry_run", "bool", "--dry-run", "run", ("REPLAYER_DRY_RUN",)),
    FieldSpec("yes", "bool", "--yes", "run", ("REPLAYER_YES",)),
    FieldSpec("confirm_over", "int", "--confirm-over", "run", ("REPLAYER_CONFIRM_OVER",),
              _at_least(0)),
    FieldSpec("out_dir", "path", "--out", "output", ("REPLAYER_OUT_DIR",)),
    FieldSpec("overwrite", "bool", "--overwrite", "output", ("REPLAYER_OVERWRITE",)),
    FieldSpec("save_responses", "bool", "--save-responses", "output", ("REPLAYER_SAVE_RESPONSES",)),
    FieldSpec(
        "max_line_bytes", "int", "--max-line-bytes", "input",
        ("REPLAYER_MAX_LINE_BYTES",), _at_least(1024),
    ),
    FieldSpec(
        "allow_unknown_fields", "bool", "--allow-unknown-fields", "input",
        ("REPLAYER_ALLOW_UNKNOWN_FIELDS",),
    ),
    FieldSpec(
        "log_format", "str", "--log-format", "log", ("REPLAYER_LOG_FORMAT",), choices=get_args(LogFormat)
    ),
    FieldSpec("log_level", "str", "--log-level", "log", ("REPLAYER_LOG_LEVEL",), choices=get_args(LogLevel)),
    FieldSpec(
        "progress_interval_s", "float", "--progress-interval", "log", ("REPLAYER_PROGRESS_INTERVAL_S",), _above(0)
    ),
    FieldSpec("quiet", "bool", "--quiet", "log", ("REPLAYER_QUIET",)),
    FieldSpec(
        "metrics_port", "int", "--metrics-port", "log", ("REPLAYER_METRICS_PORT",),
        _between(0, 65535),
    ),
    FieldSpec("metrics_host", "str", "--metrics-host", "log", ("REPLAYER_METRICS_HOST",)),
    FieldSpec("rate_schedule", "str", "", "load", ("REPLAYER_RATE_SCHEDULE",)),
    FieldSpec("pace", "str", "--pace", "load", ("REPLAYER_PACE",), choices=get_args(Pace)),
    FieldSpec("speed", "float", "--speed", "load", ("REPLAYER_SPEED",), _above(0)),
    FieldSpec("duration_s", "float", "--duration", "load", ("REPLAYER_DURATION_S",), _above(0)),
    FieldSpec("loop", "bool", "--loop", "load", ("REPLAYER_LOOP",)),
    FieldSpec("loop_suffix", "str", "--loop-suffix", "load", ("REPLAYER_LOOP_SUFFIX",)),
    FieldSpec("fail_if", "strs", "--fail-if", "load", ("REPLAYER_FAIL_IF",)),
    FieldSpec("abort_on_fail", "bool", "--abort-on-fail", "load", ("REPLAYER_ABORT_ON_FAIL",)),
)
SPECS: dict[str, FieldSpec] = {spec.name: spec for spec in FIELDS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(spec.section for spec in FIELDS))
