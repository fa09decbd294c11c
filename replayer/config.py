"""Settings of `replayer run`: defaults < config.toml < environment < flags, checked once.

Pure apart from reading the config file and the client key file.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args
from urllib.parse import urlsplit

EMBEDDED = "embedded"
# Must match the emulator's defaults (replayer.emulator.config DEFAULT_APP_ID and
# DEFAULT_CLIENT_KEY); kept as literals so that loading settings does not import the
# emulator.
EMBEDDED_APP_ID = "emulator-app"
EMBEDDED_CLIENT_KEY = "emulator-prod-key"
CONFIG_ENV = "REPLAYER_CONFIG"  # path of a config file, used when no path is passed

OnAmbiguous = Literal["retry", "fail"]
LogFormat = Literal["text", "json"]
Pace = Literal["rate", "original"]
LogLevel = Literal["debug", "info", "warning", "error"]
Kind = Literal["str", "int", "float", "bool", "path", "secret", "strs"]

_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})
_NOUNS: dict[str, str] = {
    "str": "a non-empty string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean (true/false, 1/0, yes/no)",
    "path": "a path",
    "secret": "a non-empty key",
    "strs": "a list of non-empty strings (in an environment variable: separated by ;)",
}


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
    app_id: str | None = None
    client_key: Secret | None = None
    client_key_file: Path | None = None  # the key file actually read, if the key came from one
    concurrency: int = 64
    rate_per_s: float | None = None  # None: unpaced
    timeout_s: float = 30.0
    batch: bool = True
    batch_users: int = 50
    batch_actions: int = 500
    batch_linger_ms: float = 20.0
    max_attempts: int = 5
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    backoff_jitter: float = 0.5
    on_ambiguous: OnAmbiguous = "retry"
    outage_window_s: float = 60.0
    outage_probe_max_s: float = 30.0
    drain_timeout_s: float = 30.0
    workers: int = 0  # 0: one per CPU
    resume: bool = False
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
        return bool(self.rate_schedule or self.pace == "original" or self.loop
                    or self.duration_s or self.fail_if)

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
    FieldSpec("timeout_s", "float", "--timeout", "send", ("REPLAYER_TIMEOUT_S",), _above(0)),
    FieldSpec("batch", "bool", "--batch", "batch", ("REPLAYER_BATCH",)),
    FieldSpec(
        "batch_users", "int", "--batch-users", "batch", ("REPLAYER_BATCH_USERS",), _between(1, 50)
    ),
    FieldSpec(
        "batch_actions", "int", "--batch-actions", "batch",
        ("REPLAYER_BATCH_ACTIONS",), _between(1, 500),
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
        "drain_timeout_s", "float", "--drain-timeout", "run",
        ("REPLAYER_DRAIN_TIMEOUT_S",), _at_least(0),
    ),
    FieldSpec("workers", "int", "--workers", "run", ("REPLAYER_WORKERS",), _at_least(0)),
    FieldSpec("resume", "bool", "--resume", "run", ("REPLAYER_RESUME",)),
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

# One source's values: setting name -> (typed value, where it came from).
_Layer = dict[str, tuple[Any, str]]


def load_settings(
    *, flags: Mapping[str, object], env: Mapping[str, str], config_path: Path | None
) -> Settings:
    """Settings from flags > env > config file > defaults; ConfigError if any given value is bad."""
    if config_path is None and env.get(CONFIG_ENV, "").strip():
        config_path = Path(env[CONFIG_ENV].strip())
    # Every source is checked in full, even where a higher one wins: a bad value is a
    # mistake wherever it sits, and the outcome should not depend on what overrides it.
    layers = [_flag_layer(flags), _env_layer(env)]
    if config_path is not None:
        layers.append(_file_layer(config_path))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in FIELDS:
        for layer in layers:
            if spec.name in layer:
                values[spec.name], sources[spec.name] = layer[spec.name]
                break
    values["client_key"], values["client_key_file"] = _resolve_key(layers)
    settings = Settings(**values)
    _check_endpoint(settings, sources.get("endpoint", "default endpoint"))
    return _with_credentials(settings)


def _flag_layer(flags: Mapping[str, object]) -> _Layer:
    layer: _Layer = {}
    for name, value in flags.items():
        spec = SPECS.get(name)
        if spec is None or spec.kind == "secret":
            raise ValueError(f"no such setting flag: {name}")  # a bug in the CLI, not user input
        if value is not None:
            source = "flag " + (spec.flag or "--" + name.replace("_", "-"))
            layer[name] = (_convert(spec, value, source, text=isinstance(value, str)), source)
    return layer


def _env_layer(env: Mapping[str, str]) -> _Layer:
    layer: _Layer = {}
    for spec in FIELDS:
        # An empty variable counts as unset, as templates and CI often leave them empty.
        given = [(name, env[name].strip()) for name in spec.env if env.get(name, "").strip()]
        if not given:
            continue
        if len({text for _, text in given}) > 1:
            names = " and ".join(name for name, _ in given)
            raise ConfigError(f"environment variables {names} differ; set only one of them")
        source = "environment variable " + given[0][0]
        layer[spec.name] = (_convert(spec, given[0][1], source, text=True), source)
    return layer


def _file_layer(path: Path) -> _Layer:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    layer: _Layer = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            _refuse_key(path, None, section)
        for key, value in table.items():
            spec = SPECS.get(key)
            if spec is None or spec.section != section or spec.kind == "secret":
                _refuse_key(path, section, key)
            source = f"config file {path}: [{section}] {key}"
            typed = _convert(spec, value, source, text=False)
            if isinstance(typed, Path) and not typed.is_absolute():
                typed = path.parent / typed  # relative to the file, wherever it is run from
            layer[key] = (typed, source)
    return layer


def _refuse_key(path: Path, section: str | None, key: str) -> NoReturn:
    where = f"[{section}] {key}" if section else f"{key} (outside any section)"
    spec = SPECS.get(key)
    if spec is not None and spec.kind == "secret":
        raise ConfigError(
            f"config file {path}: {where} is not allowed: keys in config files end up in "
            f"repositories; set {spec.env[0]} or point client_key_file at a file holding the key"
        )
    hint = f" (it belongs under [{spec.section}])" if spec is not None else ""
    if section is not None and section not in SECTIONS:
        where, hint = f"[{section}]", f" (sections: {', '.join(SECTIONS)})"
    raise ConfigError(f"config file {path}: unknown setting {where}{hint}")


def _convert(spec: FieldSpec, value: object, source: str, *, text: bool) -> Any:
    """`value` as the field's type, checked; text (env, string flags) is parsed first."""
    try:
        typed = _typed(spec.kind, _parse_text(spec.kind, value) if text else value)
    except (ValueError, OverflowError):
        typed = None
    if isinstance(typed, str) and spec.choices:
        typed = typed.lower()
    if typed is None or not spec.accepts(typed):
        shown = "" if spec.kind == "secret" else f", got {_show(value)}"
        raise ConfigError(f"{source}: expected {spec.expect}{shown}")
    return typed


def _parse_text(kind: Kind, value: object) -> object:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if kind == "bool":
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError(text)
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "strs":
        return tuple(part.strip() for part in text.split(";") if part.strip())
    return text


def _typed(kind: Kind, value: object) -> object:
    """`value` if it already has the kind's type (ints count as floats), else None."""
    if isinstance(value, bool):
        return value if kind == "bool" else None
    if kind == "int" and isinstance(value, int):
        return value
    if kind == "float" and isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    if kind in ("str", "secret") and isinstance(value, str) and value.strip():
        return Secret(value.strip()) if kind == "secret" else value.strip()
    if kind == "path" and isinstance(value, str | os.PathLike) and str(value).strip():
        return Path(value)
    if kind == "strs" and isinstance(value, list | tuple):
        items = tuple(str(v).strip() for v in value if isinstance(v, str))
        return items if len(items) == len(value) and all(items) else None
    return None


def _show(value: object) -> str:
    shown = repr(str(value) if isinstance(value, Path) else value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _resolve_key(layers: list[_Layer]) -> tuple[Secret | None, Path | None]:
    """The client key from the highest source giving it (a key in env, or a key file)."""
    for layer in layers:
        key, key_file = layer.get("client_key"), layer.get("client_key_file")
        if key and key_file:
            raise ConfigError(
                f"both {key[1]} and {key_file[1]} are set; give the client key only one way"
            )
        if key:
            return key[0], None
        if key_file:
            return _read_key_file(*key_file), key_file[0]
    return None, None


def _read_key_file(path: Path, source: str) -> Secret:
    # The path is not repeated in messages: a key pasted where its path belongs would leak.
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the client key file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: the client key file is not UTF-8 text") from None
    if not text:
        raise ConfigError(f"{source}: the client key file is empty")
    if len(text.split()) != 1:
        raise ConfigError(f"{source}: the client key file must hold the key alone, on one line")
    return Secret(text)


def _check_endpoint(settings: Settings, source: str) -> None:
    """Refuse what is neither "embedded" nor an http(s) URL, and http to a non-loopback host."""
    if settings.endpoint == EMBEDDED:
        return
    # The URL itself is not echoed: whatever is wrong with it may be a credential in it.
    try:
        parts = urlsplit(settings.endpoint)
        _ = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        raise ConfigError(
            f'{source}: expected "embedded" or an http(s) URL, but its host or port is not valid'
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        problem = "it is not an http(s) URL with a host"
    elif "@" in parts.netloc:
        problem = "it must not carry credentials (user:password@)"
    elif parts.query or parts.fragment:
        problem = "it must not carry a query or fragment (the action is added as ?action=...)"
    elif scheme == "http" and not settings.allow_insecure_http and not _is_loopback(
        parts.hostname
    ):
        raise ConfigError(
            f"{source}: plain http:// to {parts.hostname} would send the client key "
            "unencrypted; use https://, a loopback host, or allow it with "
            "--allow-insecure-http, REPLAYER_ALLOW_INSECURE_HTTP or [leanplum] allow_insecure_http"
        )
    else:
        return
    raise ConfigError(
        f'{source}: expected "embedded" or an http(s) URL such as '
        f"https://api.leanplum.com/api, but {problem}"
    )


def is_remote(endpoint: str) -> bool:
    """True for an endpoint that is neither embedded nor on this machine (the real API, say)."""
    if endpoint == EMBEDDED:
        return False
    host = urlsplit(endpoint).hostname or ""
    return not _is_loopback(host)


def _is_loopback(host: str) -> bool:
    if host.rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _with_credentials(settings: Settings) -> Settings:
    """Fill the emulator's test credentials for "embedded"; require real ones otherwise."""
    if settings.endpoint == EMBEDDED:
        return replace(
            settings,
            app_id=settings.app_id or EMBEDDED_APP_ID,
            client_key=settings.client_key or Secret(EMBEDDED_CLIENT_KEY),
        )
    if settings.app_id is None:
        raise ConfigError(
            "a Leanplum endpoint needs an app id: set LEANPLUM_APP_ID, --app-id "
            "or [leanplum] app_id"
        )
    if settings.client_key is None:
        raise ConfigError(
            "a Leanplum endpoint needs a client key: set LEANPLUM_CLIENT_KEY, or point "
            "--client-key-file, REPLAYER_CLIENT_KEY_FILE or [leanplum] client_key_file "
            "at a file holding it"
        )
    return settings
