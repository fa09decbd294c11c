"""How values read from the output files are written in the report and the text summary. Pure.

Numbers keep the precision the files hold (no rounding), with thousands separators, so a
number in summary.json can be found as is on the page.
"""

from __future__ import annotations

from typing import Any

NONE = "—"
REDACTED = "[redacted]"
# Settings whose value is a secret: hidden even if a summary.json ever held one in clear.
_SECRET_WORDS = ("client_key", "secret", "token", "password")


def number(value: Any) -> str:
    """An int or float as it is stored, with thousands separators; anything else as text."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,}"
    return str(value)


def ms(value: Any) -> str:
    """A latency in milliseconds, or — when there is none."""
    return NONE if value is None else f"{number(value)} ms"


def duration(seconds: Any) -> str:
    """Seconds as stored, plus hours/minutes when that helps: `3,725.5 s (1 h 2 min 5.5 s)`."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return number(seconds)
    text = f"{number(seconds)} s"
    if seconds < 60:
        return text
    hours, rest = divmod(float(seconds), 3600.0)
    minutes, secs = divmod(rest, 60.0)
    parts = [f"{int(hours)} h"] if hours else []
    parts.append(f"{int(minutes)} min")
    parts.append(f"{secs:.1f} s")
    return f"{text} ({' '.join(parts)})"


def setting(name: str, value: Any) -> str:
    """A setting's value for display; secrets are never shown."""
    if any(word in name.lower() for word in _SECRET_WORDS) and not name.endswith("_file"):
        return REDACTED if value is not None else NONE
    if isinstance(value, list | tuple):
        return ", ".join(setting(name, v) for v in value) or NONE
    return number(value)


def counts(pairs: list[tuple[str, int]] | tuple[tuple[str, int], ...]) -> str:
    """`kind 3, other 1`."""
    return ", ".join(f"{name} {number(n)}" for name, n in pairs)


def percent(part: int, whole: int) -> str:
    """A share as a percentage with one decimal, — when the whole is zero."""
    return f"{100.0 * part / whole:.1f}%" if whole else NONE
