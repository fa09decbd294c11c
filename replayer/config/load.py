"""Loads `Settings` from defaults < config.toml < environment < flags, checked once.

Pure apart from reading the config file and the client key file (and warning, as ssh
does, on stderr through the `replayer` logger when that file is open to others).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from replayer.config.checks import (
    check_endpoint,
    check_target_chosen,
    check_workers,
    key_file_warning,
    with_credentials,
)
from replayer.config.settings import ConfigError, Secret, Settings
from replayer.config.table import FIELDS, SECTIONS, SPECS, FieldSpec, Kind
from replayer.observe.logs import log

CONFIG_ENV = "REPLAYER_CONFIG"  # path of a config file, used when no path is passed

_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})

# One source's values: setting name -> (typed value, where it came from).
_Layer = dict[str, tuple[Any, str]]


def load_settings(
    *, flags: Mapping[str, object], env: Mapping[str, str], config_path: Path | None,
    sending: bool = False,
) -> Settings:
    """Settings from flags > env > config file > defaults; ConfigError if any given value is bad.

    `sending`: for a command that sends (run, spark), the endpoint must be given whenever
    credentials are (checks.check_target_chosen).
    """
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
    if sending and "endpoint" not in sources:
        check_target_chosen(settings, credentials=_credential_sources(layers))
    check_endpoint(settings, sources.get("endpoint", "default endpoint"))
    check_workers(settings.workers, sources.get("workers", ""), os.cpu_count() or 1)
    return with_credentials(settings)


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


def _credential_sources(layers: list[_Layer]) -> list[str]:
    """Where the app id and the client key were given (names of sources, never values)."""
    names = ("app_id", "client_key", "client_key_file")
    return [layer[name][1] for layer in layers for name in names if name in layer]


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
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode  # of the file read, not of a later one
            text = handle.read().decode("utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the client key file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: the client key file is not UTF-8 text") from None
    if not text:
        raise ConfigError(f"{source}: the client key file is empty")
    if len(text.split()) != 1:
        raise ConfigError(f"{source}: the client key file must hold the key alone, on one line")
    warning = key_file_warning(mode, source)
    if warning is not None:
        log.warning("%s", warning)
    return Secret(text)
