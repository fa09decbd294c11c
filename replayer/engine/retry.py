"""RetryPolicy: how long to wait before the next attempt, or give up. Pure; never sleeps."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_S = 600.0  # a server asking for longer than this is treated as this


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with ± jitter, as in Leanplum's example (2 s, 4 s, 8 s ...).

    `max_attempts` counts every attempt, the first included.
    """

    max_attempts: int = 5
    base_s: float = 2.0
    max_s: float = 60.0
    jitter: float = 0.5  # each delay varies by up to ± this share of itself

    def next_delay(
        self, attempts: int, rng: random.Random, *, retry_after_s: float | None = None
    ) -> float | None:
        """Seconds to wait after `attempts` attempts so far, or None to give up."""
        if attempts >= self.max_attempts:
            return None
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S)
        delay = min(self.max_s, self.base_s * 2.0 ** (attempts - 1))
        spread = delay * self.jitter
        return min(self.max_s, max(0.0, delay + rng.uniform(-spread, spread)))


def parse_retry_after(value: str | None, *, now_s: float) -> float | None:
    """A Retry-After header (delta seconds or an HTTP date) as seconds from `now_s`."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # asctime dates carry no zone; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_s)
