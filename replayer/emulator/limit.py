"""The app-wide request limit users meet: a token bucket of requests per second. Pure.

Leanplum documents no such limit and sends no rate-limit headers; a client learns it only
from 429 answers. `--limit-rps 400` holds 400 requests per second (a burst of up to
`burst_s` seconds' worth), `--limit-rps 400,150@14s` drops it to 150 at 14 s from start.
A refused request consumes no token.
"""

from __future__ import annotations

from dataclasses import dataclass

THROTTLED = "Too many requests: the app's request limit was exceeded"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The limit over time: (from second, requests per second) steps, the first at 0."""

    steps: tuple[tuple[float, float], ...]
    burst_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.steps or self.steps[0][0] != 0:
            raise ValueError("a limit starts at 0 s")
        times = [at for at, _ in self.steps]
        if times != sorted(times) or len(set(times)) != len(times):
            raise ValueError("the limit's changes must come in order of time")
        if any(rate <= 0 for _, rate in self.steps):
            raise ValueError("a limit is a number of requests per second greater than 0")
        if self.burst_s <= 0:
            raise ValueError("the burst must be greater than 0 seconds")

    def rate_at(self, elapsed_s: float) -> float:
        """Requests per second allowed at `elapsed_s` from start."""
        rate = self.steps[0][1]
        for at_s, step in self.steps:
            if elapsed_s >= at_s:
                rate = step
        return rate

    @classmethod
    def parse(cls, spec: str, *, burst_s: float = 1.0) -> RateLimit:
        """Read `400` or `400,150@14s` (a change at 14 s); ValueError if bad."""
        steps: list[tuple[float, float]] = []
        for n, item in enumerate(part.strip() for part in spec.split(",")):
            rate_text, sep, at_text = item.partition("@")
            try:
                rate = float(rate_text)
                at_s = float(at_text.strip().removesuffix("s")) if sep else 0.0
            except ValueError:
                raise ValueError(f"bad limit {item!r}: expected RATE or RATE@SECONDSs, "
                                 "e.g. 400,150@14s") from None
            if n > 0 and not sep:
                raise ValueError(f"bad limit {item!r}: a later step needs @SECONDS, e.g. 150@14s")
            steps.append((at_s, rate))
        return cls(tuple(steps), burst_s=burst_s)


class TokenBucket:
    """The bucket for one emulator: `take(elapsed_s)` is True when the request may go."""

    def __init__(self, limit: RateLimit) -> None:
        self._limit = limit
        self._tokens = limit.rate_at(0.0) * limit.burst_s
        self._at_s = 0.0

    def take(self, elapsed_s: float) -> bool:
        """Refills for the time since the last call, then takes a token if there is one."""
        rate = self._limit.rate_at(elapsed_s)
        cap = max(1.0, rate * self._limit.burst_s)
        gained = rate * max(0.0, elapsed_s - self._at_s)
        self._tokens = min(cap, self._tokens + gained)
        self._at_s = max(self._at_s, elapsed_s)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
