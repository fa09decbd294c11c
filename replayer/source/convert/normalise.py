"""Pure normalisation of vendor values to what Leanplum's `start` expects.

Country names to ISO-2, locales to `ll_CC`, IANA zones to an abbreviation and offset,
times to UNIX seconds, attribute names to Leanplum's naming rules. Nothing here raises
for bad input: a value that cannot be normalised comes back as None.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry

from replayer.limits import MAX_ATTRIBUTE_NAME_CHARS, MAX_ISO_CHARS, MAX_OFFSET_S
from replayer.source.convert.countries import cldr_country

TIME_UNITS = ("s", "ms", "us", "iso", "auto")
_LOCALE = re.compile(
    r"([A-Za-z]{2,3})(?:[-_][A-Za-z]{4})?(?:[-_]([A-Za-z]{2}|[0-9]{3}))?(?:[-_@.].*)?"
)
_ATTRIBUTE_FORBIDDEN = re.compile(r'[,|"{\t\n\r]')
_NUMERIC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DIGITS = re.compile(r"-?[0-9]+(?:\.[0-9]*)?")
_UNIT_DIVISOR = {"s": 1.0, "ms": 1e3, "us": 1e6}
# Vendors' words for "no value" (GA4's "(not set)"): an absent value, not a city or an OS.
PLACEHOLDERS = frozenset({"(not set)", "(none)", "(not provided)"})
_OS_PREFIX = re.compile(r"[^\d]*?\s(?=\d)")  # "Android 11", "Mac OS X 10.15": the name
# Words in an OS field that name no OS: GA4's platform of web rows, client hints' "Unknown".
_NOT_AN_OS = frozenset({"web", "unknown"})


def is_placeholder(value: Any) -> bool:
    """Whether `value` is an empty string or a vendor's placeholder for no value."""
    return isinstance(value, str) and (not value.strip()
                                       or value.strip().lower() in PLACEHOLDERS)


def system_name(text: str) -> str | None:
    """An OS name as the vendor wrote it; None for a placeholder or a word that names no OS
    (GA4's `Web`, user-agent client hints' `Unknown`)."""
    if is_placeholder(text) or text.strip().lower() in _NOT_AN_OS:
        return None
    return text


def os_version(text: str) -> str:
    """An OS version without its OS name: `Android 11` -> `11`, `iOS 17.2` -> `17.2`."""
    return _OS_PREFIX.sub("", text.strip(), count=1)


@lru_cache(maxsize=4096)
def country_code(text: str) -> str | None:
    """An ISO 3166-1 alpha-2 code for a code or an exact name (ISO's official or common,
    or CLDR's as the vendors write them: "Russia", "UK", "Bosnia & Herzegovina"); else None.

    pycountry's `lookup` matches codes and names case-insensitively and exactly: no fuzzy
    matching, so "Untied States" stays unmapped rather than guessed.
    """
    name = text.strip()
    if not name:
        return None
    try:
        country = pycountry.countries.lookup(name)
    except LookupError:
        return cldr_country(name)
    code: str = country.alpha_2
    return code


@lru_cache(maxsize=4096)
def locale_tag(text: str) -> str | None:
    """`en-US`, `en-us`, `en_US.UTF-8` -> `en_US`; `en` stays `en`; a language name -> its code.

    The script subtag (`zh-Hans-CN`) is dropped; an unreadable value gives None.
    """
    value = text.strip()
    match = _LOCALE.fullmatch(value)
    if match is not None:
        language, region = match.group(1).lower(), match.group(2)
        return f"{language}_{region.upper()}" if region else language
    try:
        language_record = pycountry.languages.lookup(value)
    except LookupError:
        return None
    code: str | None = getattr(language_record, "alpha_2", None) or getattr(
        language_record, "alpha_3", None
    )
    return code


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: read from the tzdata package, a name too long for a file name, or one
        # that is a folder of zones ("America"), fails as the file it names would
        return None


def zone_at(name: str, time_s: float) -> tuple[str, int] | None:
    """The abbreviation and UTC offset (seconds) in force in IANA zone `name` at `time_s`."""
    zone = _zone(name.strip()) if name.strip() else None
    if zone is None:
        return None
    moment = datetime.fromtimestamp(time_s, UTC).astimezone(zone)
    offset = moment.utcoffset()
    abbreviation = moment.tzname()
    if offset is None or abbreviation is None:
        return None
    return abbreviation, int(offset.total_seconds())


def offset_seconds(value: Any) -> int | None:
    """A whole-second UTC offset within ±14h from a number or a numeric string; else None."""
    number = _number(value)
    if number is None or not float(number).is_integer():
        return None
    seconds = int(number)
    return seconds if -MAX_OFFSET_S <= seconds <= MAX_OFFSET_S else None


def source_zone(name: str) -> ZoneInfo | None:
    """The IANA zone `name` (`--source-timezone`), or None when it is not one."""
    return _zone(name.strip()) if name.strip() else None


def unix_seconds(value: Any, unit: str, zone: ZoneInfo | None = None) -> float | None:
    """UNIX seconds from a number (or numeric string) in `unit`, or a date string; else None.

    `iso` reads ISO-8601 and the vendors' `YYYY-MM-DD HH:MM:SS[.ffffff]` (no zone: UTC);
    `auto` takes strings as dates and numbers by magnitude (s, ms or µs). With `zone`, a
    number or a date without an offset is that zone's wall clock, not UTC.
    """
    if isinstance(value, str) and unit in ("iso", "auto") and not _DIGITS.fullmatch(value):
        return _date_seconds(value, zone)
    number = _number(value)
    if number is None:
        return None
    if unit == "auto":
        magnitude = abs(number)
        unit = "us" if magnitude >= 1e14 else "ms" if magnitude >= 1e11 else "s"
    divisor = _UNIT_DIVISOR.get(unit)
    if divisor is None:
        return None
    seconds = number / divisor
    if zone is not None and seconds > 0:
        seconds = _wall_clock(seconds, zone)
    return seconds if seconds > 0 else None


def _wall_clock(seconds: float, zone: ZoneInfo) -> float:
    """The UNIX time of `seconds` read as `zone`'s wall clock (as local-time exports write)."""
    try:
        wall = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=zone)
    except (OverflowError, OSError, ValueError):
        return seconds
    return wall.timestamp()


def _date_seconds(text: str, zone: ZoneInfo | None = None) -> float | None:
    if len(text) > MAX_ISO_CHARS:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone or UTC)
    seconds = parsed.timestamp()
    return seconds if seconds > 0 else None


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return None if math.isnan(value) else value
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        text = value.strip()
        return int(text) if "." not in text else float(text)
    return None


def coordinate(value: Any, limit: float) -> float | None:
    """A latitude (limit 90) or longitude (limit 180) from a number or numeric string."""
    number = _number(value)
    if number is None or not -limit <= number <= limit:
        return None
    return float(number)


@lru_cache(maxsize=8192)
def attribute_name(name: str) -> str:
    """`name` made valid by Leanplum's rules (1..139 chars, no leading . or -, no trailing /,
    none of , | " { tab CR LF, not numeric); a valid name comes back unchanged."""
    fixed = _ATTRIBUTE_FORBIDDEN.sub("_", name).lstrip(".-")
    fixed = fixed[:MAX_ATTRIBUTE_NAME_CHARS].rstrip("/")
    if not fixed:
        return "_"
    if _NUMERIC.fullmatch(fixed.strip()):
        return ("_" + fixed)[:MAX_ATTRIBUTE_NAME_CHARS]
    return fixed


def text_value(value: Any) -> str | None:
    """A scalar as the string a start parameter takes (numbers as written); None otherwise."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


_SCALARS = (str, int, float, bool, type(None))


def attribute_value(value: Any) -> bool:
    """True when `value` may be a user attribute's value: a scalar or a list of scalars."""
    if isinstance(value, _SCALARS):
        return True
    return isinstance(value, list) and all(isinstance(item, _SCALARS) for item in value)
