"""How many lines about failed records reach the log: a few per kind per interval, then a count.

A CSV given by mistake or a dead endpoint fails every record the same way; one line per
record buries everything else. `LineBudget` is pure: the caller passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass

LINES_PER_KIND = 5
WINDOW_S = 10.0


@dataclass(frozen=True, slots=True)
class Held:
    """Lines of one failure kind not shown in an interval that is over."""

    kind: str
    count: int


def more_text(held: Held) -> str:
    """`(+1,234 more timeout; see failures.ndjson)`."""
    return f"(+{held.count:,} more {held.kind}; see failures.ndjson)"


@dataclass(slots=True)
class _Window:
    start_s: float
    shown: int = 0
    held: int = 0


class LineBudget:
    """Lets through at most `per_kind` lines of each kind per `window_s` (from the kind's first
    line); counts the others, to be told once their interval is over."""

    def __init__(self, *, per_kind: int = LINES_PER_KIND, window_s: float = WINDOW_S) -> None:
        self._per_kind = per_kind
        self._window_s = window_s
        self._windows: dict[str, _Window] = {}

    def take(self, kind: str, now_s: float) -> tuple[bool, list[Held]]:
        """(whether a line of `kind` at `now_s` is shown, the counts of intervals now over)."""
        over = self.due(now_s)
        window = self._windows.setdefault(kind, _Window(now_s))
        if window.shown < self._per_kind:
            window.shown += 1
            return True, over
        window.held += 1
        return False, over

    def due(self, now_s: float, *, every: bool = False) -> list[Held]:
        """The held lines of the intervals over at `now_s` (of all of them when `every`), once."""
        out = []
        for kind, window in list(self._windows.items()):
            if every or now_s - window.start_s >= self._window_s:
                del self._windows[kind]
                if window.held:
                    out.append(Held(kind, window.held))
        return out
