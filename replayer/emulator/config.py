"""What an emulator instance is: its credentials, users, limits, latency and faults.

Pure values; `replayer emulate`, the client's embedded mode and the tests all build one.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from replayer.emulator.faults import FaultConfig
from replayer.emulator.limit import RateLimit
from replayer.limits import MAX_MULTI_ACTIONS, MAX_MULTI_USERS

# The test credentials the client's `embedded` mode sends; never a real app's.
DEFAULT_APP_ID = "emulator-app"
DEFAULT_CLIENT_KEY = "emulator-prod-key"

_Z_P99 = 2.3263478740408408  # standard normal quantile at 0.99


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Time the server holds a request (and its users' locks): fixed, or lognormal.

    Fixed when `p99_ms` is None; else lognormal with the given median and 99th percentile.
    """

    median_ms: float = 0.0
    p99_ms: float | None = None

    def __post_init__(self) -> None:
        if not self.median_ms >= 0:
            raise ValueError(f"latency must not be negative, got {self.median_ms!r}")
        if self.p99_ms is not None and not self.p99_ms > self.median_ms > 0:
            raise ValueError("lognormal latency needs 0 < median < p99")

    def sample_ms(self, rng: random.Random) -> float:
        """One latency draw in milliseconds."""
        if self.p99_ms is None:
            return self.median_ms
        sigma = math.log(self.p99_ms / self.median_ms) / _Z_P99
        return rng.lognormvariate(math.log(self.median_ms), sigma)

    @classmethod
    def parse(cls, spec: str) -> LatencyModel:
        """Read `5` (fixed ms) or `lognormal:5:50` (median:p99 ms); ValueError if bad."""
        parts = spec.strip().split(":")
        try:
            if len(parts) == 1:
                return cls(float(parts[0]))
            if len(parts) == 3 and parts[0] == "lognormal":
                return cls(float(parts[1]), float(parts[2]))
        except ValueError as exc:
            raise ValueError(f"bad latency {spec!r}: {exc}") from None
        raise ValueError(f"bad latency {spec!r}: expected MS or lognormal:MEDIAN_MS:P99_MS")


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """One emulator: the keys it expects, its users, Leanplum's limits, latency and faults."""

    app_id: str = DEFAULT_APP_ID
    client_key: str = field(default=DEFAULT_CLIENT_KEY, repr=False)
    latency_ms: LatencyModel = field(default_factory=LatencyModel)
    blocked_users: frozenset[str] = frozenset()
    known_users: frozenset[str] = frozenset()  # exist before any request (for CreateNever)
    multi_max_users: int = MAX_MULTI_USERS
    multi_max_actions: int = MAX_MULTI_ACTIONS
    devmode_min_interval_s: float = 1.0
    record_requests: bool = False  # keep every request body, clientKey redacted
    faults: FaultConfig = field(default_factory=FaultConfig)
    seed: int = 0
    limit: RateLimit | None = None  # an app-wide request limit (429 above it); None: none
