"""Fault injection for the emulator: which failure, if any, one HTTP request meets.

Pure: decisions draw from an injected, seeded `random.Random`; the app applies them.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    """A failure the emulator can inject; the value is its name in counters."""

    STATUS_500 = "status_500"
    STATUS_502 = "status_502"
    STATUS_503 = "status_503"
    STATUS_429_RETRY_AFTER = "status_429_retry_after"
    STATUS_429 = "status_429"
    DROP_BEFORE = "drop_before"
    DROP_AFTER = "drop_after"
    SLOW_AFTER = "slow_after"
    TRUNCATED_BODY = "truncated_body"


# Faults answered before the request is processed: the request leaves no trace in the store.
BEFORE_PROCESSING = frozenset(
    {
        FaultKind.STATUS_500,
        FaultKind.STATUS_502,
        FaultKind.STATUS_503,
        FaultKind.STATUS_429_RETRY_AFTER,
        FaultKind.STATUS_429,
        FaultKind.DROP_BEFORE,
    }
)
SERVER_ERRORS = frozenset({FaultKind.STATUS_500, FaultKind.STATUS_502, FaultKind.STATUS_503})

# Short spellings accepted by `FaultConfig.parse` besides the field names.
_ALIASES = {
    "500": "status_500",
    "502": "status_502",
    "503": "status_503",
    "429": "status_429",
    "429_retry_after": "status_429_retry_after",
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected failure: its kind and the parameters needed to apply it."""

    kind: FaultKind
    html: bool = False  # 5xx only: answer with an HTML page, as a proxy would
    retry_after_s: int = 0  # status_429_retry_after only
    delay_s: float = 0.0  # slow_after only


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Shares (0..1, summing to at most 1) of requests that meet each fault, and their knobs.

    A stall window makes every request that arrives between `stall_after_s` and
    `stall_after_s + stall_for_s` seconds after start wait until the window ends.
    """

    status_500: float = 0.0
    status_502: float = 0.0
    status_503: float = 0.0
    html_share: float = 0.0  # share of injected 5xx answered with HTML instead of JSON
    status_429_retry_after: float = 0.0
    retry_after_s: int = 1
    status_429: float = 0.0
    drop_before: float = 0.0
    drop_after: float = 0.0
    slow_after: float = 0.0
    slow_delay_s: float = 30.0  # meant to exceed the client's timeout
    truncated_body: float = 0.0
    stall_after_s: float = 0.0
    stall_for_s: float = 0.0

    def __post_init__(self) -> None:
        for kind in FaultKind:
            _check_share(kind.value, getattr(self, kind.value))
        _check_share("html_share", self.html_share)
        total = sum(getattr(self, kind.value) for kind in FaultKind)
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault shares add up to {total:g}; they must add up to at most 1")
        for name in ("retry_after_s", "slow_delay_s", "stall_after_s", "stall_for_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    @property
    def injects(self) -> bool:
        """True when some share is above zero, so requests need a decision at all."""
        return any(getattr(self, kind.value) > 0 for kind in FaultKind)

    def decide(self, rng: random.Random) -> Fault | None:
        """Pick at most one fault for a request: one draw, walked over the cumulative shares."""
        draw = rng.random()
        for kind in FaultKind:
            share: float = getattr(self, kind.value)
            if draw < share:
                return self._fault(kind, rng)
            draw -= share
        return None

    def _fault(self, kind: FaultKind, rng: random.Random) -> Fault:
        if kind in SERVER_ERRORS:
            return Fault(kind, html=self.html_share > 0 and rng.random() < self.html_share)
        if kind is FaultKind.STATUS_429_RETRY_AFTER:
            return Fault(kind, retry_after_s=self.retry_after_s)
        if kind is FaultKind.SLOW_AFTER:
            return Fault(kind, delay_s=self.slow_delay_s)
        return Fault(kind)

    def stall_wait_s(self, elapsed_s: float) -> float:
        """How long a request arriving `elapsed_s` after start waits for the stall window to end."""
        end_s = self.stall_after_s + self.stall_for_s
        if self.stall_for_s > 0 and self.stall_after_s <= elapsed_s < end_s:
            return end_s - elapsed_s
        return 0.0

    @classmethod
    def parse(cls, spec: str) -> FaultConfig:
        """Read `500=0.02,503=0.02,html_share=0.5,429=0.03,drop_after=0.01`; ValueError if bad."""
        values: dict[str, float | int] = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            name, value = _parse_item(item)
            if name in values:
                raise ValueError(f"fault {name!r} is given twice")
            values[name] = value
        return cls(**values)  # type: ignore[arg-type]


def _parse_item(item: str) -> tuple[str, float | int]:
    key, sep, raw = item.partition("=")
    if not sep:
        raise ValueError(f"fault {item!r} is not NAME=VALUE")
    key = key.strip()
    name = _ALIASES.get(key, key)
    if name not in _FIELDS:
        known = ", ".join([*_ALIASES, *sorted(_FIELDS - set(_ALIASES.values()))])
        raise ValueError(f"unknown fault {key!r}; known: {known}")
    try:
        number = float(raw)
    except ValueError:
        raise ValueError(f"fault {key!r} needs a number, got {raw.strip()!r}") from None
    if name == "retry_after_s":
        if not number.is_integer():
            raise ValueError(f"retry_after_s is whole seconds, got {raw.strip()!r}")
        return name, int(number)
    return name, number


def _check_share(name: str, share: float) -> None:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{name} is a share between 0 and 1, got {share!r}")


_FIELDS = frozenset(f.name for f in dataclasses.fields(FaultConfig))
