"""Durations as operators write them (`90s`, `5m`, `1h30m`, `250ms`) in flags and config. Pure."""

from __future__ import annotations

import math
import re

NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"  # a decimal without sign or exponent
_DURATION = re.compile(
    rf"(?:(?P<h>{NUMBER})h)?(?:(?P<m>{NUMBER})m)?(?:(?P<s>{NUMBER})s)?(?:(?P<ms>{NUMBER})ms)?"
)
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in `90s`, `5m`, `1h30m`, `250ms`, `1.5h` (units h, m, s, ms, in that order); > 0."""
    body = text.strip()
    match = _DURATION.fullmatch(body)
    if not body or match is None:
        raise ValueError(
            f"bad duration {text!r}: use a number and a unit (ms, s, m, h), e.g. 90s, 5m, 1h30m"
        )
    seconds = sum(float(v) * _UNIT_S[unit] for unit, v in match.groupdict().items() if v)
    if not seconds > 0.0 or not math.isfinite(seconds):
        raise ValueError(f"bad duration {text!r}: must be greater than 0")
    return seconds
