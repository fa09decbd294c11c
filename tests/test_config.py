"""Settings loading: defaults, precedence, parsing, range checks, secrecy, and config.toml docs."""

from __future__ import annotations

import copy
import json
import logging
import pickle
import re
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from replayer.config import (
    CONFIG_ENV,
    EMBEDDED_APP_ID,
    EMBEDDED_CLIENT_KEY,
    FIELDS,
    SECTIONS,
    SPECS,
    ConfigError,
    Secret,
    Settings,
    load_settings,
)

ROOT = Path(__file__).resolve().parent.parent
KEY = "lp-prod-Zq8VtR2wXk"  # distinctive, so that any leak shows up as a substring
REAL = "https://api.leanplum.com/api"
CREDS = {"LEANPLUM_APP_ID": "app-1", "LEANPLUM_CLIENT_KEY": KEY}
DEFAULTS: dict[str, Any] = {field.name: field.default for field in fields(Settings)}


def load(
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> Settings:
    return load_settings(flags=flags or {}, env=env or {}, config_path=config_path)


def error(
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> str:
    with pytest.raises(ConfigError) as caught:
        load(flags, env, config_path)
    return str(caught.value)


def toml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "replayer.toml"
    path.write_text(text, encoding="utf-8")
    return path


def key_file(tmp_path: Path, text: str = KEY + "\n") -> Path:
    path = tmp_path / "client-key"
    path.write_text(text, encoding="utf-8")
    return path


# --- the table and the defaults ---------------------------------------------------------


def test_the_field_table_covers_every_setting_in_order() -> None:
    assert [spec.name for spec in FIELDS] == list(DEFAULTS)


@pytest.mark.parametrize("spec", FIELDS, ids=lambda spec: spec.name)
def test_each_default_passes_its_own_check(spec: Any) -> None:
    default = DEFAULTS[spec.name]
    assert default is None or spec.accepts(default)


LOADED_DEFAULTS: dict[str, object] = {
    "endpoint": "embedded",
    "allow_insecure_http": False,
    "preflight": True,
    "app_id": EMBEDDED_APP_ID,
    "client_key": Secret(EMBEDDED_CLIENT_KEY),
    "client_key_file": None,
    "concurrency": 64,
    "rate_per_s": None,
    "rate": None,
    "rate_start_per_s": 20.0,
    "rate_max_per_s": 10_000.0,
    "timeout_s": 30.0,
    "batch": True,
    "batch_users": 50,
    "batch_actions": 500,
    "batch_linger_ms": 20.0,
    "max_attempts": 5,
    "backoff_base_s": 2.0,
    "backoff_max_s": 60.0,
    "backoff_jitter": 0.5,
    "on_ambiguous": "retry",
    "outage_window_s": 60.0,
    "outage_probe_max_s": 30.0,
    "outage_limit_s": 900.0,
    "throttle_wait_max_s": 600.0,
    "drain_timeout_s": 30.0,
    "workers": 0,
    "event_loop": "auto",
    "shard": None,
    "resume": False,
    "retry_failed": False,
    "dry_run": False,
    "yes": False,
    "confirm_over": 10_000,
    "out_dir": None,
    "overwrite": False,
    "save_responses": False,
    "max_line_bytes": 1_048_576,
    "allow_unknown_fields": False,
    "log_format": "text",
    "log_level": "info",
    "progress_interval_s": 10.0,
    "quiet": False,
    "metrics_port": None,
    "metrics_host": "127.0.0.1",
    "rate_schedule": None,
    "pace": "rate",
    "speed": 1.0,
    "duration_s": None,
    "loop": False,
    "loop_suffix": "-pass{n}",
    "fail_if": (),
    "abort_on_fail": False,
}


def test_the_defaults_table_names_every_setting() -> None:
    assert set(LOADED_DEFAULTS) == set(DEFAULTS)


@pytest.mark.parametrize("name, expected", LOADED_DEFAULTS.items(), ids=list(LOADED_DEFAULTS))
def test_defaults_when_nothing_is_given(name: str, expected: object) -> None:
    assert getattr(load(), name) == expected


def test_embedded_keeps_credentials_that_are_given() -> None:
    settings = load(env={"LEANPLUM_APP_ID": "mine", "LEANPLUM_CLIENT_KEY": KEY})
    assert (settings.app_id, settings.client_key) == ("mine", Secret(KEY))


# --- precedence: flags > env > file > defaults ------------------------------------------

# name, flag value, env var and text, file line, and what each level yields
PRECEDENCE = [
    ("concurrency", 8, "REPLAYER_CONCURRENCY", "16", "[send]\nconcurrency = 32", (8, 16, 32)),
    ("rate_per_s", 100.0, "REPLAYER_RATE_PER_S", "50", "[send]\nrate_per_s = 25", (100, 50, 25)),
    ("batch", True, "REPLAYER_BATCH", "no", "[batch]\nbatch = true", (True, False, True)),
    (
        "log_level", "debug", "REPLAYER_LOG_LEVEL", "WARNING", '[log]\nlog_level = "error"',
        ("debug", "warning", "error"),
    ),
    (
        "app_id", "flag-app", "LEANPLUM_APP_ID", "env-app", '[leanplum]\napp_id = "file-app"',
        ("flag-app", "env-app", "file-app"),
    ),
    (
        "out_dir", "/flag/out", "REPLAYER_OUT_DIR", "/env/out", '[output]\nout_dir = "/file/out"',
        (Path("/flag/out"), Path("/env/out"), Path("/file/out")),
    ),
    (
        "backoff_jitter", 0.0, "REPLAYER_BACKOFF_JITTER", "1", "[retry]\nbackoff_jitter = 0.25",
        (0.0, 1.0, 0.25),
    ),
]


@pytest.mark.parametrize("level", ["flag", "env", "file", "default"])
@pytest.mark.parametrize(
    "name, flag, env_var, env_text, file_text, expected", PRECEDENCE, ids=[c[0] for c in PRECEDENCE]
)
def test_precedence(
    tmp_path: Path,
    level: str,
    name: str,
    flag: object,
    env_var: str,
    env_text: str,
    file_text: str,
    expected: tuple[object, object, object],
) -> None:
    levels = ["flag", "env", "file", "default"]
    given = levels[levels.index(level) :]  # the winning level and every one below it
    settings = load(
        flags={name: flag} if "flag" in given else {},
        env={env_var: env_text} if "env" in given else {},
        config_path=toml_file(tmp_path, file_text) if "file" in given else None,
    )
    wanted = LOADED_DEFAULTS[name] if level == "default" else expected[levels.index(level)]
    assert getattr(settings, name) == wanted


def test_config_path_wins_over_replayer_config(tmp_path: Path) -> None:
    chosen = toml_file(tmp_path, "[send]\nconcurrency = 3")
    other = tmp_path / "other.toml"
    other.write_text("[send]\nconcurrency = 4", encoding="utf-8")
    assert load(env={CONFIG_ENV: str(other)}, config_path=chosen).concurrency == 3
    assert load(env={CONFIG_ENV: str(other)}).concurrency == 4


def test_relative_paths_in_the_file_are_relative_to_the_file(tmp_path: Path) -> None:
    path = toml_file(tmp_path, '[output]\nout_dir = "out"')
    assert load(config_path=path).out_dir == tmp_path / "out"


def test_flags_may_be_given_as_text() -> None:
    settings = load(flags={"concurrency": "8", "batch": "yes", "out_dir": "o", "timeout_s": "1.5"})
    assert (settings.concurrency, settings.batch, settings.out_dir) == (8, True, Path("o"))
    assert settings.timeout_s == 1.5


@pytest.mark.parametrize("name", ["no_such_setting", "client_key"])
def test_a_flag_that_does_not_exist_is_a_bug(name: str) -> None:
    with pytest.raises(ValueError, match="no such setting flag"):
        load(flags={name: "x"})


def test_a_flag_of_none_counts_as_not_given() -> None:
    assert load(flags={"concurrency": None}, env={"REPLAYER_CONCURRENCY": "5"}).concurrency == 5


# --- every environment variable ---------------------------------------------------------

# var, text ("{dir}" is a temporary directory), setting, expected value
ENV_CASES: list[tuple[str, str, str, object]] = [
    ("REPLAYER_ENDPOINT", "https://lp.example.com/api", "endpoint", "https://lp.example.com/api"),
    ("REPLAYER_ALLOW_INSECURE_HTTP", "TRUE", "allow_insecure_http", True),
    ("REPLAYER_PREFLIGHT", "no", "preflight", False),
    ("LEANPLUM_APP_ID", "app-9", "app_id", "app-9"),
    ("REPLAYER_APP_ID", " app-8 ", "app_id", "app-8"),
    ("LEANPLUM_CLIENT_KEY", KEY, "client_key", Secret(KEY)),
    ("REPLAYER_CLIENT_KEY", KEY, "client_key", Secret(KEY)),
    ("REPLAYER_CLIENT_KEY_FILE", "{dir}/client-key", "client_key", Secret(KEY)),
    ("REPLAYER_CONCURRENCY", "10000", "concurrency", 10000),
    ("REPLAYER_RATE_PER_S", "0.5", "rate_per_s", 0.5),
    ("REPLAYER_TIMEOUT_S", "2", "timeout_s", 2.0),
    ("REPLAYER_BATCH", "1", "batch", True),
    ("REPLAYER_BATCH_USERS", "1", "batch_users", 1),
    ("REPLAYER_BATCH_ACTIONS", "500", "batch_actions", 500),
    ("REPLAYER_BATCH_LINGER_MS", "0", "batch_linger_ms", 0.0),
    ("REPLAYER_MAX_ATTEMPTS", "1", "max_attempts", 1),
    ("REPLAYER_BACKOFF_BASE_S", "0.25", "backoff_base_s", 0.25),
    ("REPLAYER_BACKOFF_MAX_S", "120", "backoff_max_s", 120.0),
    ("REPLAYER_BACKOFF_JITTER", "0", "backoff_jitter", 0.0),
    ("REPLAYER_ON_AMBIGUOUS", "Fail", "on_ambiguous", "fail"),
    ("REPLAYER_DRAIN_TIMEOUT_S", "0", "drain_timeout_s", 0.0),
    ("REPLAYER_DRY_RUN", "yes", "dry_run", True),
    ("REPLAYER_RATE_SCHEDULE", "100..1000/60s", "rate_schedule", "100..1000/60s"),
    ("REPLAYER_PACE", "original", "pace", "original"),
    ("REPLAYER_SPEED", "5", "speed", 5.0),
    ("REPLAYER_DURATION_S", "90", "duration_s", 90.0),
    ("REPLAYER_LOOP", "true", "loop", True),
    ("REPLAYER_LOOP_SUFFIX", "~{n}", "loop_suffix", "~{n}"),
    ("REPLAYER_FAIL_IF", "p99>500ms; error_rate>1%", "fail_if", ("p99>500ms", "error_rate>1%")),
    ("REPLAYER_ABORT_ON_FAIL", "1", "abort_on_fail", True),
    ("REPLAYER_YES", "1", "yes", True),
    ("REPLAYER_CONFIRM_OVER", "500", "confirm_over", 500),
    ("REPLAYER_METRICS_PORT", "9464", "metrics_port", 9464),
    ("REPLAYER_METRICS_HOST", "::1", "metrics_host", "::1"),
    ("REPLAYER_OUTAGE_WINDOW_S", "5", "outage_window_s", 5.0),
    ("REPLAYER_OUTAGE_PROBE_MAX_S", "2.5", "outage_probe_max_s", 2.5),
    ("REPLAYER_OUTAGE_LIMIT_S", "30", "outage_limit_s", 30.0),
    ("REPLAYER_THROTTLE_WAIT_MAX_S", "0", "throttle_wait_max_s", 0.0),
    ("REPLAYER_RATE", "auto:800", "rate", "auto:800"),
    ("REPLAYER_RATE_START_PER_S", "5", "rate_start_per_s", 5.0),
    ("REPLAYER_RATE_MAX_PER_S", "900", "rate_max_per_s", 900.0),
    ("REPLAYER_WORKERS", "4", "workers", 4),
    ("REPLAYER_SHARD", "2/4", "shard", "2/4"),
    ("REPLAYER_EVENT_LOOP", "asyncio", "event_loop", "asyncio"),
    ("REPLAYER_RESUME", "yes", "resume", True),
    ("REPLAYER_RETRY_FAILED", "1", "retry_failed", True),
    ("REPLAYER_OUT_DIR", "{dir}/out", "out_dir", "{dir}/out"),
    ("REPLAYER_OVERWRITE", "true", "overwrite", True),
    ("REPLAYER_SAVE_RESPONSES", "1", "save_responses", True),
    ("REPLAYER_MAX_LINE_BYTES", "1024", "max_line_bytes", 1024),
    ("REPLAYER_ALLOW_UNKNOWN_FIELDS", "Yes", "allow_unknown_fields", True),
    ("REPLAYER_LOG_FORMAT", "json", "log_format", "json"),
    ("REPLAYER_LOG_LEVEL", "DEBUG", "log_level", "debug"),
    ("REPLAYER_PROGRESS_INTERVAL_S", "0.5", "progress_interval_s", 0.5),
    ("REPLAYER_QUIET", "1", "quiet", True),
]


def test_the_env_table_covers_every_variable() -> None:
    assert {case[0] for case in ENV_CASES} == {var for spec in FIELDS for var in spec.env}


@pytest.mark.parametrize("var, text, name, expected", ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_every_env_var_parses(
    tmp_path: Path, var: str, text: str, name: str, expected: object
) -> None:
    key_file(tmp_path)
    needed = CREDS if name == "endpoint" else {}  # a real endpoint needs credentials
    settings = load(env={**needed, var: text.replace("{dir}", str(tmp_path))})
    if isinstance(expected, str) and "{dir}" in expected:
        expected = Path(expected.replace("{dir}", str(tmp_path)))
    assert getattr(settings, name) == expected


@pytest.mark.parametrize(
    "text, expected",
    [("1", True), ("true", True), ("TRUE", True), ("Yes", True), (" yes ", True),
     ("0", False), ("false", False), ("False", False), ("no", False), ("NO", False)],
)
def test_env_booleans(text: str, expected: bool) -> None:
    assert load(env={"REPLAYER_OVERWRITE": text}).overwrite is expected


def test_an_empty_env_var_counts_as_unset(tmp_path: Path) -> None:
    path = toml_file(tmp_path, "[send]\nconcurrency = 7")
    assert load(env={"REPLAYER_CONCURRENCY": "", CONFIG_ENV: str(path)}).concurrency == 7


def test_equal_aliases_are_fine_and_differing_ones_refused() -> None:
    assert load(env={"LEANPLUM_APP_ID": "a", "REPLAYER_APP_ID": "a"}).app_id == "a"
    message = error(env={"LEANPLUM_APP_ID": "a", "REPLAYER_APP_ID": "b"})
    assert "LEANPLUM_APP_ID" in message and "REPLAYER_APP_ID" in message


# --- bad values name their source -------------------------------------------------------

BAD_ENV = [
    ("REPLAYER_CONCURRENCY", "many", "an integer from 1 to 10000"),
    ("REPLAYER_CONCURRENCY", "0", "an integer from 1 to 10000"),
    ("REPLAYER_CONCURRENCY", "10001", "an integer from 1 to 10000"),
    ("REPLAYER_CONCURRENCY", "8.5", "an integer"),
    ("REPLAYER_RATE_PER_S", "fast", "a number greater than 0"),
    ("REPLAYER_RATE_PER_S", "0", "a number greater than 0"),
    ("REPLAYER_RATE_PER_S", "inf", "a number greater than 0"),
    ("REPLAYER_TIMEOUT_S", "nan", "a number greater than 0"),
    ("REPLAYER_BATCH", "maybe", "a boolean"),
    ("REPLAYER_BATCH_USERS", "51", "an integer from 1 to 50"),
    ("REPLAYER_BATCH_ACTIONS", "501", "an integer from 1 to 500"),
    ("REPLAYER_BATCH_LINGER_MS", "-1", "a number of at least 0"),
    ("REPLAYER_MAX_ATTEMPTS", "0", "an integer of at least 1"),
    ("REPLAYER_BACKOFF_JITTER", "1.5", "a number from 0 to 1"),
    ("REPLAYER_ON_AMBIGUOUS", "sometimes", "one of retry, fail"),
    ("REPLAYER_WORKERS", "-2", "an integer of at least 0"),
    ("REPLAYER_MAX_LINE_BYTES", "1023", "an integer of at least 1024"),
    ("REPLAYER_LOG_FORMAT", "xml", "one of text, json"),
    ("REPLAYER_LOG_LEVEL", "loud", "one of debug, info, warning, error"),
    ("REPLAYER_PROGRESS_INTERVAL_S", "0", "a number greater than 0"),
]


@pytest.mark.parametrize("var, text, expect", BAD_ENV, ids=[f"{v}={t}" for v, t, _ in BAD_ENV])
def test_bad_env_values_name_the_variable(var: str, text: str, expect: str) -> None:
    message = error(env={var: text})
    assert f"environment variable {var}: expected {expect}" in message
    assert repr(text) in message


BAD_FILE = [
    ("send", "concurrency", "0", "an integer from 1 to 10000"),
    ("send", "concurrency", '"8"', "an integer"),
    ("send", "rate_per_s", "true", "a number greater than 0"),
    ("send", "timeout_s", "-inf", "a number greater than 0"),
    ("batch", "batch", '"yes"', "a boolean"),
    ("batch", "batch_users", "0", "an integer from 1 to 50"),
    ("retry", "backoff_jitter", "-0.1", "a number from 0 to 1"),
    ("retry", "on_ambiguous", '"never"', "one of retry, fail"),
    ("input", "max_line_bytes", "10", "an integer of at least 1024"),
    ("output", "out_dir", '""', "a path"),
    ("leanplum", "client_key_file", "5", "a path"),
    ("leanplum", "endpoint", "[1]", "a non-empty string"),
    ("log", "log_format", '"xml"', "one of text, json"),
]


@pytest.mark.parametrize(
    "section, key, literal, expect", BAD_FILE, ids=[f"{k}={v}" for _, k, v, _ in BAD_FILE]
)
def test_bad_file_values_name_the_file_and_key(
    tmp_path: Path, section: str, key: str, literal: str, expect: str
) -> None:
    path = toml_file(tmp_path, f"[{section}]\n{key} = {literal}\n")
    message = error(config_path=path)
    assert f"config file {path}: [{section}] {key}: expected {expect}" in message


BAD_FLAGS: list[tuple[str, object, str]] = [
    ("concurrency", 0, "--concurrency: expected an integer from 1 to 10000"),
    ("concurrency", True, "--concurrency: expected an integer"),
    ("concurrency", 2.0, "--concurrency: expected an integer"),
    ("rate_per_s", -1.0, "--rate: expected a number greater than 0"),
    ("timeout_s", "soon", "--timeout: expected a number greater than 0"),
    ("out_dir", "", "--out: expected a path"),
    ("backoff_jitter", 2.0, "--backoff-jitter: expected a number from 0 to 1"),
    ("batch_users", 51, "--batch-users: expected an integer from 1 to 50"),
    ("log_format", "xml", "--log-format: expected one of text, json"),
    ("batch", "perhaps", "--batch: expected a boolean"),
    ("app_id", "  ", "--app-id: expected a non-empty string"),
]


@pytest.mark.parametrize(
    "name, value, expect", BAD_FLAGS, ids=[f"{n}={v!r}" for n, v, _ in BAD_FLAGS]
)
def test_bad_flag_values_name_the_flag(name: str, value: object, expect: str) -> None:
    assert f"flag {expect}" in error(flags={name: value})


def test_a_bad_value_is_refused_even_where_a_higher_source_wins() -> None:
    assert "REPLAYER_CONCURRENCY" in error(
        flags={"concurrency": 8}, env={"REPLAYER_CONCURRENCY": "lots"}
    )


BAD_FILES = [
    ("unknown section", "[sendd]\nconcurrency = 1\n", "unknown setting [sendd]"),
    ("unknown key", "[send]\nconcurency = 1\n", "unknown setting [send] concurency"),
    ("wrong section", "[send]\nbatch_users = 5\n", "it belongs under [batch]"),
    ("outside sections", "concurrency = 5\n", "concurrency (outside any section)"),
    ("invalid toml", "[send\nconcurrency = 5\n", "not valid TOML"),
    ("nested table", "[send.extra]\nx = 1\n", "unknown setting [send] extra"),
]


@pytest.mark.parametrize("text, expect", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_config_files_name_the_file_and_key(tmp_path: Path, text: str, expect: str) -> None:
    path = toml_file(tmp_path, text)
    message = error(config_path=path)
    assert message.startswith(f"config file {path}: ") and expect in message


@pytest.mark.parametrize("make", ["missing", "directory", "not utf-8"])
def test_unreadable_config_files_are_named(tmp_path: Path, make: str) -> None:
    path = tmp_path / "config.toml"
    if make == "directory":
        path.mkdir()
    elif make == "not utf-8":
        path.write_bytes(b"[send]\n# \xff\xfe\n")
    assert error(config_path=path).startswith(f"config file {path}: ")
    assert error(env={CONFIG_ENV: str(path)}).startswith(f"config file {path}: ")


# --- the client key stays secret --------------------------------------------------------


def test_secret_never_shows_its_value() -> None:
    secret = Secret(KEY)
    logged = logging.LogRecord("t", logging.INFO, __file__, 1, "key %s %r", (secret, secret), None)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>40}"]
    assert all(text.strip() == "Secret('***')" for text in shown)
    assert logged.getMessage() == "key Secret('***') Secret('***')"
    assert secret.reveal() == KEY
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        json.dumps(secret)


def test_secret_compares_and_copies_by_value() -> None:
    assert Secret(KEY) == Secret(KEY) and hash(Secret(KEY)) == hash(Secret(KEY))
    assert Secret(KEY) != Secret("other") and Secret(KEY) != KEY
    assert copy.copy(Secret(KEY)) == copy.deepcopy(Secret(KEY)) == Secret(KEY)


def test_settings_never_show_the_key(tmp_path: Path) -> None:
    settings = load(env={**CREDS, "REPLAYER_ENDPOINT": REAL})
    assert settings.client_key is not None and settings.client_key.reveal() == KEY
    redacted = settings.redacted()
    for text in (repr(settings), str(settings), f"{settings}", json.dumps(redacted)):
        assert KEY not in text
    assert redacted["client_key"] == "[redacted]"
    with pytest.raises(TypeError):
        pickle.dumps(settings)


def test_redacted_holds_every_setting_as_json(tmp_path: Path) -> None:
    settings = load(flags={"out_dir": tmp_path, "client_key_file": key_file(tmp_path)})
    redacted = settings.redacted()
    assert list(redacted) == list(DEFAULTS)
    assert redacted["out_dir"] == str(tmp_path)
    assert redacted["client_key_file"] == str(tmp_path / "client-key")
    assert json.loads(json.dumps(redacted)) == redacted
    assert Settings().redacted()["client_key"] is None


USERINFO = f"https://u:{KEY}@lp.example.com/api"
# How the key is given wrongly: "env" and "flags" take a mapping ("{key_file}" becomes
# the path of a file holding the key), "toml" a config file's text, "key_file" its text.
LEAKS: list[tuple[str, str, Any]] = [
    ("key as key file path (env)", "env", {"REPLAYER_CLIENT_KEY_FILE": KEY}),
    ("key as key file path (flag)", "flags", {"client_key_file": KEY}),
    ("key as key file path (file)", "toml", f'[leanplum]\nclient_key_file = "{KEY}"'),
    ("key in the config file", "toml", f'[leanplum]\nclient_key = "{KEY}"'),
    ("key at the file's top", "toml", f'client_key = "{KEY}"'),
    ("key in another section", "toml", f'[send]\nclient_key = "{KEY}"'),
    ("key in invalid toml", "toml", f'[leanplum]\nclient_key = "{KEY}\n'),
    ("key unquoted in toml", "toml", f"[leanplum]\napp_id = {KEY}\n"),
    ("key in the endpoint query", "env", {**CREDS, "REPLAYER_ENDPOINT": f"{REAL}?clientKey={KEY}"}),
    ("key in the endpoint userinfo", "env", {**CREDS, "REPLAYER_ENDPOINT": USERINFO}),
    ("key as the endpoint scheme", "env", {**CREDS, "REPLAYER_ENDPOINT": f"{KEY}://x"}),
    ("two differing key vars", "env", {"LEANPLUM_CLIENT_KEY": KEY, "REPLAYER_CLIENT_KEY": "x"}),
    (
        "key var and key file", "env",
        {"LEANPLUM_CLIENT_KEY": KEY, "REPLAYER_CLIENT_KEY_FILE": "{key_file}"},
    ),
    ("key file of two lines", "key_file", f"{KEY}\n{KEY}\n"),
    ("app id missing", "env", {"LEANPLUM_CLIENT_KEY": KEY, "REPLAYER_ENDPOINT": REAL}),
    ("another bad value", "env", {**CREDS, "REPLAYER_CONCURRENCY": "0"}),
]


@pytest.mark.parametrize("where, given", [c[1:] for c in LEAKS], ids=[c[0] for c in LEAKS])
def test_no_error_message_holds_the_key(tmp_path: Path, where: str, given: Any) -> None:
    if where == "toml":
        message = error(config_path=toml_file(tmp_path, given))
    elif where == "key_file":
        message = error(flags={"client_key_file": key_file(tmp_path, given)})
    else:
        path = str(key_file(tmp_path))
        values = {name: text.replace("{key_file}", path) for name, text in given.items()}
        message = error(env=values) if where == "env" else error(flags=values)
    assert KEY not in message


@pytest.mark.parametrize("section", ["leanplum", "send", None])
def test_a_key_in_the_config_file_is_refused_with_the_way_out(
    tmp_path: Path, section: str | None
) -> None:
    header = f"[{section}]\n" if section else ""
    message = error(config_path=toml_file(tmp_path, f'{header}client_key = "{KEY}"\n'))
    assert "client_key" in message and "LEANPLUM_CLIENT_KEY" in message
    assert "client_key_file" in message and "repositories" in message


def test_the_key_file_is_read_and_stripped(tmp_path: Path) -> None:
    path = key_file(tmp_path, f"\n  {KEY} \n")
    settings = load(
        flags={"client_key_file": path}, env={"REPLAYER_ENDPOINT": REAL, "LEANPLUM_APP_ID": "a"}
    )
    assert (settings.client_key, settings.client_key_file) == (Secret(KEY), path)


@pytest.mark.parametrize("content, expect", [("", "is empty"), (" \n\t\n", "is empty")])
def test_an_empty_key_file_is_refused(tmp_path: Path, content: str, expect: str) -> None:
    message = error(flags={"client_key_file": key_file(tmp_path, content)})
    assert message == f"flag --client-key-file: the client key file {expect}"


def test_an_unreadable_key_file_names_its_source(tmp_path: Path) -> None:
    message = error(env={"REPLAYER_CLIENT_KEY_FILE": str(tmp_path / "absent")})
    assert message.startswith("environment variable REPLAYER_CLIENT_KEY_FILE: cannot read")


def test_key_sources_follow_precedence(tmp_path: Path) -> None:
    flag_file = key_file(tmp_path, "from-flag-file")
    file_file = tmp_path / "file-key"
    file_file.write_text("from-config-file", encoding="utf-8")
    config = toml_file(tmp_path, f'[leanplum]\nclient_key_file = "{file_file}"')
    env = {"LEANPLUM_CLIENT_KEY": "from-env"}
    by_flag = load(flags={"client_key_file": flag_file}, env=env, config_path=config)
    by_env = load(env=env, config_path=config)
    by_file = load(config_path=config)
    assert by_flag.client_key == Secret("from-flag-file") and by_flag.client_key_file == flag_file
    assert by_env.client_key == Secret("from-env") and by_env.client_key_file is None
    assert by_file.client_key == Secret("from-config-file") and by_file.client_key_file == file_file


# --- endpoint ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://api.leanplum.com/api", "http://10.0.0.5:8080/api", "http://128.0.0.1/api",
     "http://localhost.example.com/api", "http://[::2]/api", "HTTP://example.com/api"],
)
def test_plain_http_to_other_hosts_is_refused(url: str) -> None:
    message = error(env={**CREDS, "REPLAYER_ENDPOINT": url})
    assert message.startswith("environment variable REPLAYER_ENDPOINT: plain http://")
    assert "allow_insecure_http" in message


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/api", "http://127.1.2.3/api", "http://localhost:9000/api",
     "http://LOCALHOST/api", "http://[::1]:9000/api", "https://api.leanplum.com/api"],
)
def test_loopback_http_and_https_are_accepted(url: str) -> None:
    assert load(env={**CREDS, "REPLAYER_ENDPOINT": url}).endpoint == url


@pytest.mark.parametrize(
    "allow",
    [{"env": {"REPLAYER_ALLOW_INSECURE_HTTP": "yes"}}, {"flags": {"allow_insecure_http": True}},
     {"file": "[leanplum]\nallow_insecure_http = true"}],
    ids=["env", "flag", "file"],
)
def test_allow_insecure_http_lets_plain_http_through(tmp_path: Path, allow: dict[str, Any]) -> None:
    url = "http://10.0.0.5:8080/api"
    config = toml_file(tmp_path, allow["file"]) if "file" in allow else None
    settings = load(
        flags={"endpoint": url, **allow.get("flags", {})},
        env={**CREDS, **allow.get("env", {})},
        config_path=config,
    )
    assert (settings.endpoint, settings.allow_insecure_http) == (url, True)


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/api", "ws://127.0.0.1/api", "file:///tmp/api", "api.leanplum.com/api",
     "Embedded", "https://", "http://[::1/api", "http://127.0.0.1:99999/api",
     "https://api.leanplum.com/api#x"],
)
def test_other_endpoints_are_refused(url: str) -> None:
    message = error(flags={"endpoint": url}, env=CREDS)
    assert message.startswith('flag --endpoint: expected "embedded" or an http(s) URL')


@pytest.mark.parametrize(
    "env, missing",
    [({"LEANPLUM_CLIENT_KEY": KEY}, "an app id"), ({"LEANPLUM_APP_ID": "a"}, "a client key"),
     ({}, "an app id")],
    ids=["no app id", "no key", "neither"],
)
def test_a_real_endpoint_needs_credentials(env: dict[str, str], missing: str) -> None:
    message = error(env={**env, "REPLAYER_ENDPOINT": REAL})
    assert message.startswith(f"a Leanplum endpoint needs {missing}")


# --- config.toml documents every setting and changes nothing ----------------------------

CONFIG_TOML = ROOT / "config.toml"


def doc_blocks(text: str) -> dict[str, tuple[str | None, str, str]]:
    """Setting name -> (section, the comment block above its line, its line uncommented)."""
    blocks: dict[str, tuple[str | None, str, str]] = {}
    section: str | None = None
    comments: list[str] = []
    for line in text.splitlines():
        if header := re.fullmatch(r"\[(\w+)\]", line):
            section, comments = header[1], []
        elif setting := re.fullmatch(r"#? ?(\w+) = (.+)", line):
            blocks[setting[1]] = (section, "\n".join(comments), f"{setting[1]} = {setting[2]}")
            comments = []
        elif line.startswith("#"):
            comments.append(line)
        else:
            comments = []
    return blocks


def test_config_toml_loads_and_equals_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert load(config_path=Path("config.toml")) == load()


def test_config_toml_with_every_default_uncommented_still_equals_the_defaults(
    tmp_path: Path,
) -> None:
    text = CONFIG_TOML.read_text(encoding="utf-8")
    lines = [
        line[2:] if (m := re.fullmatch(r"# (\w+) = .+", line)) and DEFAULTS.get(m[1]) is not None
        else line
        for line in text.splitlines()
    ]
    assert load(config_path=toml_file(tmp_path, "\n".join(lines))) == load()


def test_config_toml_has_the_sections_in_order() -> None:
    headers = re.findall(r"^\[(\w+)\]$", CONFIG_TOML.read_text(encoding="utf-8"), re.MULTILINE)
    assert headers == list(SECTIONS)


@pytest.mark.parametrize("spec", FIELDS, ids=lambda spec: spec.name)
def test_config_toml_documents_every_setting(spec: Any) -> None:
    text = CONFIG_TOML.read_text(encoding="utf-8")
    blocks = doc_blocks(text)
    if spec.kind == "secret":  # never in the file: documented in prose only
        assert spec.name not in blocks and spec.name in text
        assert all(var in text for var in spec.env)
        return
    section, comment, line = blocks[spec.name]
    assert section == spec.section
    assert all(var in comment for var in spec.env)
    if spec.flag:
        assert f"flag {spec.flag}" in comment
    else:
        assert "(no flag)" in comment and "--" not in comment
    shown = tomllib.loads(line)[spec.name]
    default = DEFAULTS[spec.name]
    if isinstance(default, tuple):  # TOML has arrays, not tuples
        default = list(default)
    if default is not None:
        assert (shown, type(shown)) == (default, type(default))


def test_config_toml_mentions_replayer_config() -> None:
    assert CONFIG_ENV in CONFIG_TOML.read_text(encoding="utf-8")


def test_specs_index_matches_the_table() -> None:
    assert list(SPECS.values()) == list(FIELDS)


def test_the_table_names_the_flags_of_replayer_run() -> None:
    from replayer.cli import run  # the flag column and config.toml must not drift from it

    options = {param.name: param.opts for param in run.params if param.name in SPECS}
    assert {name: spec.flag for name, spec in SPECS.items() if spec.flag} == {
        name: opts[0] for name, opts in options.items()
    }


def test_embedded_credentials_match_the_emulator() -> None:
    from replayer.emulator.config import DEFAULT_APP_ID, DEFAULT_CLIENT_KEY

    assert (EMBEDDED_APP_ID, EMBEDDED_CLIENT_KEY) == (DEFAULT_APP_ID, DEFAULT_CLIENT_KEY)


# --- the package: pure parts, and one public face ---------------------------------------------

CONFIG_PKG = ROOT / "replayer" / "config"


@pytest.mark.parametrize("module", ["settings.py", "table.py", "checks.py"])
def test_config_modules_other_than_load_do_no_io(module: str) -> None:
    import ast

    tree = ast.parse((CONFIG_PKG / module).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not {name.split(".")[0] for name in imported} & {"os", "io", "tomllib", "asyncio"}
    assert not any(name.startswith("replayer.observe") for name in imported)  # no logging
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert "open" not in calls


def test_the_package_re_exports_what_its_importers_use() -> None:
    from replayer import config

    used = {  # grep -rn "from replayer.config import" replayer tests docs
        "CONFIG_ENV", "EMBEDDED_APP_ID", "EMBEDDED_CLIENT_KEY", "FIELDS", "SECTIONS", "SPECS",
        "ConfigError", "FieldSpec", "Secret", "Settings", "describe_target", "is_remote",
        "key_file_warning",
        "load_settings",
    }
    assert set(config.__all__) == used
    assert all(hasattr(config, name) for name in used)
