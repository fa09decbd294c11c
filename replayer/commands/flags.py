"""Flags as settings, shared by `run` and `spark`: one --rate grammar, one --duration, and
the defaults --help shows, read from `Settings` so that the help cannot drift from them."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

import click

from replayer.config import Settings
from replayer.config.duration import parse_duration
from replayer.engine.rate_control import is_auto, parse_auto
from replayer.engine.schedule import parse_rate
from replayer.observe.thresholds import parse_threshold

_DEFAULTS = {f.name: f.default for f in fields(Settings) if f.default is not MISSING}


def shown(name: str, *, unset: str = "") -> str:
    """The default of setting `name` as --help shows it (`unset` when it has none)."""
    value = _DEFAULTS.get(name)
    if value is None:
        return unset
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def given_flags(**given: Any) -> dict[str, Any]:
    """The flags the user actually gave: click passes None (or () for repeatable) otherwise."""
    return {k: v for k, v in given.items() if v is not None and v != ()}


def settings_flags(given: dict[str, Any]) -> dict[str, Any]:
    """Flags as settings: --rate is a number, auto[:MAX] or a schedule; --duration takes units."""
    flags = given_flags(**given)
    rate = flags.pop("rate_per_s", None)
    if rate is not None and is_auto(rate):
        flags["rate"] = _checked(parse_auto, rate, "--rate")
    elif rate is not None:
        try:
            flags["rate_per_s"] = float(rate)
        except ValueError:
            flags["rate_schedule"] = _checked(parse_rate, rate, "--rate")
    duration = flags.get("duration_s")
    if duration is not None:
        flags["duration_s"] = _checked(parse_duration, duration, "--duration")
    for spec in flags.get("fail_if", ()):
        _checked(parse_threshold, spec, "--fail-if")
    return flags


def _checked(parse: Any, text: str, flag: str) -> Any:
    """`parse(text)`, or a usage error naming the flag."""
    try:
        value = parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None
    return text if parse is not parse_duration else value


class ShownDefault(click.Option):
    """An option whose default --help shows as given (`[default: 64]`), though the option
    itself defaults to None so that config.toml and the environment can set it."""

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        if isinstance(self.show_default, str) and self.show_default:
            extra["default"] = self.show_default
        return extra
