"""Request schedules for load tests: rate specs like `100..1000/60s,1000/5m`, and the original pace.

Pure: a schedule answers when the k-th request is due and how many are due by t, exactly.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

from replayer.config.duration import NUMBER, parse_duration

_RATE = re.compile(NUMBER)
_END_EPS = 1e-9  # relative slack so that a total of 14999.999999 still plans 15000 requests


@dataclass(frozen=True, slots=True)
class Stage:
    """A linear ramp from `start_rate` to `end_rate` requests/s over `duration_s`.

    `duration_s` None: holds `start_rate` (== `end_rate`, > 0) forever; only a last stage may.
    """

    start_rate: float
    end_rate: float
    duration_s: float | None

    def count_in(self, tau_s: float) -> float:
        """Requests planned in the first `tau_s` seconds of this stage (0 <= tau_s <= duration)."""
        if self.duration_s is None or self.start_rate == self.end_rate:
            return self.start_rate * tau_s
        slope = (self.end_rate - self.start_rate) / self.duration_s
        return tau_s * (self.start_rate + 0.5 * slope * tau_s)

    def time_for(self, need: float) -> float:
        """The smallest offset into this stage at which `need` (> 0) requests are planned."""
        a = self.start_rate
        if self.duration_s is None or a == self.end_rate:
            tau = need / a
        else:
            # Solve a*tau + slope/2*tau^2 = need in the form that loses no digits when
            # slope*need is small next to a^2 (the textbook form cancels there).
            slope = (self.end_rate - a) / self.duration_s
            root = math.sqrt(max(0.0, a * a + 2.0 * slope * need))
            tau = 2.0 * need / (a + root)
        return tau if self.duration_s is None else min(tau, self.duration_s)


@dataclass(frozen=True, slots=True)
class RateSchedule:
    """Stages run one after another; after a last stage with a duration, the schedule ends.

    Request k (from 0) is due at the first t where `count_by(t) >= k`: request 0 at t=0.
    """

    stages: tuple[Stage, ...]
    # Per stage start, plus the end (inf when the last stage holds forever).
    _starts_s: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _counts: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("a schedule needs at least one stage")
        starts, counts = [0.0], [0.0]
        for i, stage in enumerate(self.stages, 1):
            _check_stage(stage, last=i == len(self.stages))
            if stage.duration_s is None:
                starts.append(math.inf)
                counts.append(math.inf)
            else:
                starts.append(starts[-1] + stage.duration_s)
                counts.append(counts[-1] + stage.count_in(stage.duration_s))
        object.__setattr__(self, "_starts_s", tuple(starts))
        object.__setattr__(self, "_counts", tuple(counts))

    @property
    def total_duration_s(self) -> float | None:
        """When the schedule ends, in seconds from its start; None when it holds forever."""
        end = self._starts_s[-1]
        return None if math.isinf(end) else end

    @property
    def constant(self) -> bool:
        """One rate from the start, forever (what a bare `250` gives)."""
        first = self.stages[0].start_rate
        return self.total_duration_s is None and all(
            s.start_rate == first and s.end_rate == first for s in self.stages
        )

    def rate_at(self, t_s: float) -> float:
        """Requests/s planned at `t_s` (a stage's own rate at its start); 0 before 0 and after the end."""
        if t_s < 0.0 or t_s >= self._starts_s[-1]:
            return 0.0
        i = bisect_right(self._starts_s, t_s) - 1
        stage = self.stages[i]
        if stage.duration_s is None:
            return stage.start_rate
        share = (t_s - self._starts_s[i]) / stage.duration_s
        return stage.start_rate + (stage.end_rate - stage.start_rate) * share

    def count_by(self, t_s: float) -> float:
        """Requests planned in [0, t_s]: the integral of the rate (the total after the end)."""
        if t_s <= 0.0:
            return 0.0
        if t_s >= self._starts_s[-1]:
            return self._counts[-1]
        i = bisect_right(self._starts_s, t_s) - 1
        return self._counts[i] + self.stages[i].count_in(t_s - self._starts_s[i])

    def time_of(self, k: int) -> float | None:
        """Seconds from the start at which request `k` (from 0) is due; None past the end."""
        total = self._counts[-1]
        if math.isfinite(total) and k >= total - _END_EPS * max(1.0, total):
            return None
        if k <= 0:
            return 0.0
        i = bisect_left(self._counts, k) - 1  # counts[i] < k <= counts[i + 1]
        # `starts[i] + tau` never passes `starts[i + 1]`: tau <= duration and the sum rounds alike.
        return self._starts_s[i] + self.stages[i].time_for(k - self._counts[i])


def _check_stage(stage: Stage, *, last: bool) -> None:
    for rate in (stage.start_rate, stage.end_rate):
        if not (math.isfinite(rate) and rate >= 0.0):
            raise ValueError(f"{stage}: rates must be finite numbers >= 0")
    if stage.duration_s is None:
        if not last:
            raise ValueError(f"{stage}: only the last stage may hold forever")
        if stage.start_rate != stage.end_rate or stage.start_rate == 0.0:
            raise ValueError(f"{stage}: a stage that holds forever needs one rate > 0")
    elif not (math.isfinite(stage.duration_s) and stage.duration_s > 0.0):
        raise ValueError(f"{stage}: duration must be finite and > 0")


def parse_rate(spec: str) -> RateSchedule:
    """A schedule from `250`, `100..1000/60s` or stages `100..1000/60s,1000/5m,1000..0/30s`.

    After the last stage its end rate holds forever, unless that rate is 0: then the
    schedule ends. A stage without a duration (`250`) may only come last.
    """
    parts = spec.split(",")
    try:
        stages = [_parse_stage(p, n=n, last=n == len(parts)) for n, p in enumerate(parts, 1)]
    except ValueError as e:
        raise ValueError(f"bad rate {spec!r}: {e}") from None
    last = stages[-1]
    if last.duration_s is None and last.start_rate == 0.0:
        stages.pop()  # a last bare `0` means: stop here
        if not stages:
            raise ValueError(f"bad rate {spec!r}: plans no requests")
    elif last.duration_s is not None and last.end_rate > 0.0:
        stages.append(Stage(last.end_rate, last.end_rate, None))
    schedule = RateSchedule(tuple(stages))
    if schedule.time_of(0) is None:
        raise ValueError(f"bad rate {spec!r}: plans no requests")
    return schedule


def _parse_stage(part: str, *, n: int, last: bool) -> Stage:
    where = f"stage {n} {part.strip()!r}"
    rates_text, slash, duration_text = part.partition("/")
    if not rates_text.strip():
        raise ValueError(f"{where}: empty; expected RATE, RATE/DURATION or FROM..TO/DURATION")
    start_text, ramp, end_text = rates_text.partition("..")
    start = _parse_rate_value(start_text, where=where)
    end = _parse_rate_value(end_text, where=where) if ramp else start
    if not slash:
        if ramp:
            raise ValueError(f"{where}: a ramp needs a duration, e.g. {rates_text.strip()}/60s")
        if not last:
            raise ValueError(f"{where}: only the last stage may omit its duration")
        return Stage(start, end, None)
    try:
        duration_s = parse_duration(duration_text)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return Stage(start, end, duration_s)


def _parse_rate_value(text: str, *, where: str) -> float:
    body = text.strip()
    if _RATE.fullmatch(body) is None:
        raise ValueError(f"{where}: {body!r} is not a rate (a number >= 0, requests/s)")
    return float(body)


@dataclass(frozen=True, slots=True)
class OriginalPace:
    """Replays records at their recorded pace, `speed` times faster (2.0 = twice as fast)."""

    speed: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0.0):
            raise ValueError(f"speed must be a finite number > 0, not {self.speed!r}")

    def offset_s(self, first_time_s: float, record_time_s: float) -> float:
        """Seconds after the start that a record is due; records older than the first go at 0."""
        return max(0.0, (record_time_s - first_time_s) / self.speed)
