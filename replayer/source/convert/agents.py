"""A web event's browser and OS read from what the browser said about itself: its
user-agent client hints (Segment's `context.userAgentData`) and its user-agent string
(`context.userAgent`, through ua-parser's maintained rules). Pure: no I/O.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import ua_parser

from replayer.source.convert.normalise import is_placeholder, os_version, system_name

_MAX_UA_CHARS = 1000  # longer strings are no browser's; the rules would only cost time
_UNKNOWN = "Other"  # ua-parser's family when no rule matches
_MAX_HINT_CHARS = 100  # a client hint longer than this names no platform, brand or model
# The made-up brand a browser adds to its list so that nobody matches on the list's
# order ("Not?A_Brand", "Not A(Brand", " Not;A Brand"): no browser.
_GREASE = re.compile(r"\s*Not[^A-Za-z0-9]*A[^A-Za-z0-9]*Brand\s*", re.IGNORECASE)
_ENGINE = "chromium"  # every Chromium browser lists its engine beside its own name
# Brands as ua-parser names the same browsers, so that one export names each one way.
_BRAND_FAMILY = {"google chrome": "Chrome", "microsoft edge": "Edge"}
_WINDOWS_11_MAJOR = 13  # Windows' platformVersion: 13 and up is 11, 1 to 10 is 10


def agent_fields(user_agent: Any, hints: Any = None) -> dict[str, str]:
    """browserName, browserVersion, systemName, systemVersion and deviceModel of a web
    event, each only when known. The system comes from the client hints `hints` when they
    name a platform, else from the `user_agent` string; the browser from the string, else
    from the hints' brands. An empty dict when neither says anything readable."""
    fields = dict(_parsed(user_agent)) if isinstance(user_agent, str) else {}
    if type(hints) is not dict:
        return fields
    system = _hinted_system(hints)
    if system:  # a Chromium's string freezes its OS version (Mac OS X 10.15.7): not mixed
        fields.pop("systemName", None)
        fields.pop("systemVersion", None)
        fields.update(system)
    if "browserName" not in fields:
        fields.update(_hinted_browser(hints))
    return fields


def _text(value: Any) -> str | None:
    """A hint's text; None for a placeholder, a non-string or a string no hint is."""
    if not isinstance(value, str) or is_placeholder(value) or len(value) > _MAX_HINT_CHARS:
        return None
    return value.strip()


def _hinted_system(hints: dict[str, Any]) -> dict[str, str]:
    """systemName from `platform` ("macOS", "Windows", "Android"; "Unknown" is none),
    systemVersion from `platformVersion` and deviceModel from `model` where the page asked
    for those high-entropy hints (a desktop's model is "")."""
    platform = _text(hints.get("platform"))
    name = system_name(platform) if platform else None
    if name is None:
        return {}
    out = {"systemName": name}
    version = _text(hints.get("platformVersion"))
    if version:
        version = _windows_release(version) if name.lower() == "windows" else os_version(version)
        if version:
            out["systemVersion"] = version
    model = _text(hints.get("model"))
    if model:
        out["deviceModel"] = model
    return out


def _windows_release(platform_version: str) -> str | None:
    """Windows' platformVersion is its API contract's version, not its release: 13.0.0 and
    up is Windows 11, 1 to 10 is Windows 10, 0.x is older (Microsoft's guidance)."""
    major = platform_version.split(".", 1)[0]
    if not major.isdigit():
        return None
    number = int(major)
    return "11" if number >= _WINDOWS_11_MAJOR else "10" if number >= 1 else None


def _hinted_browser(hints: dict[str, Any]) -> dict[str, str]:
    """browserName and browserVersion from `fullVersionList` (full versions, when the page
    asked for them) or `brands` (major versions): the brand that is neither the made-up
    one nor the engine, else the engine."""
    for key in ("fullVersionList", "brands"):
        brands = _brands(hints.get(key))
        if not brands:
            continue
        name, version = min(brands, key=lambda brand: brand[0].lower() == _ENGINE)
        out = {"browserName": _BRAND_FAMILY.get(name.lower(), name)}
        if version:
            out["browserVersion"] = version
        return out
    return {}


def _brands(items: Any) -> list[tuple[str, str]]:
    """(brand, version or "") of a brand list, in its order, without the made-up brand."""
    out: list[tuple[str, str]] = []
    for item in items if type(items) is list else ():
        name = _text(item.get("brand")) if type(item) is dict else None
        if name and not _GREASE.fullmatch(name):
            out.append((name, _text(item.get("version")) or ""))
    return out


@lru_cache(maxsize=4096)  # a site's visitors share a few agents; parsing one is not cheap
def _parsed(user_agent: str) -> tuple[tuple[str, str], ...]:
    if not user_agent.strip() or len(user_agent) > _MAX_UA_CHARS:
        return ()
    parsed = ua_parser.parse(user_agent)
    out: dict[str, str] = {}
    browser, system = parsed.user_agent, parsed.os
    if browser is not None and browser.family != _UNKNOWN:
        out["browserName"] = browser.family
        version = _version(browser.major, browser.minor, browser.patch)
        if version:
            out["browserVersion"] = version
    if system is not None and system.family != _UNKNOWN:
        out["systemName"] = system.family
        version = _version(system.major, system.minor, system.patch)
        if version:
            out["systemVersion"] = version
    return tuple(out.items())


def _version(*parts: str | None) -> str:
    """`major.minor.patch` up to the first part that is missing."""
    kept: list[str] = []
    for part in parts:
        if not part:
            break
        kept.append(part)
    return ".".join(kept)
