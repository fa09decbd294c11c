"""A web event's browser and OS read from its user-agent string (Segment's
`context.userAgent`), through ua-parser's maintained rules. Pure: no I/O.
"""

from __future__ import annotations

from functools import lru_cache

import ua_parser

_MAX_UA_CHARS = 1000  # longer strings are no browser's; the rules would only cost time
_UNKNOWN = "Other"  # ua-parser's family when no rule matches


def agent_fields(user_agent: str) -> dict[str, str]:
    """browserName, browserVersion, systemName and systemVersion that `user_agent` names
    (each only when known); an empty dict for a string no rule reads."""
    return dict(_parsed(user_agent))


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
