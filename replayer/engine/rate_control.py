"""--rate auto: a loss-based controller that finds the rate the server accepts. Pure.

The design is CUBIC (RFC 9438) applied to a request rate instead of a window, as the AWS
SDKs' adaptive retry mode does on its token bucket: a throttling 429 cuts the rate to
BETA times the rate the server was really answering (not only the rate asked for: after
a limit drops, one cut lands near the new limit), remembers that rate as `w_max`, and
climbs back along a cubic curve that reaches `w_max` after K_S seconds, flattens there,
then probes above it slowly at first and faster later. Before the first throttle the rate
doubles every SLOW_START_DOUBLING_S (slow start), and so it does again when STALE_S pass
without a throttle (the limit rose, or an outage ended). Profile-lock and devMode 429s are about
one user, not the app: they neither lower nor raise the rate; 5xx and timeouts neither.

Two guards keep it honest: a throttle for a request sent before the last cut says nothing
about the rate now, so it is ignored (one cut per round trip, as TCP does); and the rate
never grows while the client is not using it (above HEADROOM times the answered rate, as
TCP's congestion window validation), so a run held back by --concurrency does not build a
rate that a later limit would have to cut through.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from replayer.config.settings import Settings

BETA = 0.8  # a throttle cuts the rate to this share of what the server was answering
K_S = 2.0  # seconds after a cut at which the cubic curve is back at w_max
C = (1.0 - BETA) / K_S**3  # the cubic's scale (per s^3, relative to w_max)
SLOW_START_DOUBLING_S = 0.2  # before the first throttle, the rate doubles this often
STALE_S = 2 * K_S  # this long after a cut without another, w_max is stale: slow start again
WINDOW_S = 0.5  # answered and not-throttled rates are measured over this window
HEADROOM = 3.0  # the rate does not grow beyond this many times the answered rate
MIN_RATE_PER_S = 1.0  # the floor: one request a second keeps probing the server
BACKING_OFF_S = 1.0  # the state reads "backing off" this long after a cut
NEAR = 0.1  # within this share of w_max the controller is "holding"


class RateState(StrEnum):
    """What the controller is doing now, as the progress line shows it."""

    CLIMBING = "climbing"
    HOLDING = "holding"
    BACKING_OFF = "backing off"


class Signal(StrEnum):
    """What one answer tells the controller."""

    OK = "ok"  # answered, not throttled (any status but a throttling 429)
    THROTTLED = "throttled"  # a throttling 429: the app-wide limit
    NEUTRAL = "neutral"  # a per-user 429 (profile lock, devMode), a 5xx, no answer


@dataclass(frozen=True, slots=True)
class AutoRate:
    """--rate auto[:MAX]: where the rate starts and the ceiling it never passes (per s)."""

    start_per_s: float
    max_per_s: float

    def share(self, count: int) -> AutoRate:
        """Each of `count` workers' part: a worker adapts on its own from its share."""
        return AutoRate(self.start_per_s / count, self.max_per_s / count)


def is_auto(text: str | None) -> bool:
    """Whether a rate setting asks for the adaptive rate ("auto" or "auto:MAX")."""
    return text is not None and text.strip().lower().split(":", 1)[0] == "auto"


def parse_auto(text: str) -> float | None:
    """The ceiling of "auto:MAX" (None for plain "auto"); ValueError with a clear message."""
    head, sep, tail = text.strip().partition(":")
    if head.strip().lower() != "auto":
        raise ValueError(f"expected auto or auto:MAX, got {text!r}")
    if not sep:
        return None
    try:
        ceiling = float(tail)
    except ValueError:
        raise ValueError(f"the ceiling in {text!r} must be a number of requests per "
                         "second, e.g. auto:800") from None
    if not math.isfinite(ceiling) or ceiling <= 0:
        raise ValueError(f"the ceiling in {text!r} must be greater than 0, e.g. auto:800")
    return ceiling


def auto_rate_of(settings: Settings) -> AutoRate | None:
    """The adaptive rate `settings` ask for (None: not auto); ValueError, with a message
    for the user, for a value or a combination that cannot be."""
    if settings.rate is None:
        return None
    if not is_auto(settings.rate):
        raise ValueError(f"rate {settings.rate!r}: expected auto or auto:MAX (a fixed rate "
                         "is --rate N or rate_per_s, a schedule rate_schedule)")
    ceiling = parse_auto(settings.rate)
    if settings.rate_per_s is not None:
        raise ValueError(f"--rate auto and a fixed rate of {settings.rate_per_s:g}/s "
                         "(rate_per_s) are both set: choose one")
    if settings.is_load_test():
        raise ValueError("--rate auto is for backfills and migrations; a load test (a rate "
                         "schedule, --pace original, --loop, --duration or --fail-if) keeps "
                         "its own pace: give it a number or a schedule instead")
    ceiling = settings.rate_max_per_s if ceiling is None else ceiling
    return AutoRate(min(settings.rate_start_per_s, ceiling), ceiling)


def worker_share(settings: Settings, count: int) -> dict[str, Any]:
    """The settings of one of `count` workers for --rate auto: its share of the start
    rate and of the ceiling (each worker then adapts on its own)."""
    ceiling = parse_auto(settings.rate) if settings.rate and is_auto(settings.rate) else None
    return {
        "rate_start_per_s": settings.rate_start_per_s / count,
        "rate_max_per_s": settings.rate_max_per_s / count,
        "rate": settings.rate if ceiling is None else f"auto:{ceiling / count:.9g}",
    }


class RateController:
    """The adaptive rate, driven by `answered(now_s, ...)` and read by `rate_at(now_s)`.

    Time is whatever clock the caller passes (monotonic seconds); nothing here sleeps.
    """

    def __init__(self, auto: AutoRate, *, now_s: float) -> None:
        self.ceiling_per_s = auto.max_per_s
        self.rate_per_s = min(max(auto.start_per_s, MIN_RATE_PER_S), auto.max_per_s)
        self.w_max: float | None = None  # the rate of the last cut; None in slow start
        self.cuts = 0
        self._started_s = now_s
        self._updated_s = now_s
        self._cut_s: float | None = None  # when the last cut happened
        self._epoch_s = now_s  # the cubic's time origin (shifted while growth is held)
        self._answered: deque[float] = deque()
        self._ok: deque[float] = deque()
        self._limited = False  # growth held by the ceiling or by demand

    def answered(self, now_s: float, *, sent_s: float, signal: Signal) -> None:
        """One answer to a request sent at `sent_s`; a throttle may cut the rate."""
        if signal is Signal.NEUTRAL:
            return
        self._answered.append(now_s)
        if signal is Signal.OK:  # counted only: the curve moves when rate_at is next read
            self._ok.append(now_s)
            return
        self.rate_at(now_s)
        if self._cut_s is not None and sent_s < self._cut_s:
            return  # sent at the rate before the last cut: already answered for
        self._cut(now_s)

    def rate_at(self, now_s: float) -> float:
        """The rate to pace at now (requests per second); advances the curve to `now_s`."""
        dt = now_s - self._updated_s
        if dt <= 0:
            return self.rate_per_s
        self._updated_s = now_s
        self._forget(now_s)
        target = self._grown(now_s, dt)
        used = HEADROOM * self.answered_per_s(now_s)
        warm = now_s - self._started_s >= WINDOW_S
        self._limited = target >= self.ceiling_per_s or (warm and target > used)
        if target > self.rate_per_s and warm and target > used:
            self._epoch_s += dt  # not using the rate: the curve waits instead of climbing
            target = max(self.rate_per_s, min(target, used))
        self.rate_per_s = min(max(target, MIN_RATE_PER_S), self.ceiling_per_s)
        return self.rate_per_s

    def state(self, now_s: float) -> RateState:
        """Climbing, holding or backing off, for the progress line."""
        if self._cut_s is not None and now_s - self._cut_s < BACKING_OFF_S:
            return RateState.BACKING_OFF
        if self._limited or (self.w_max is not None
                             and abs(self.rate_per_s - self.w_max) <= NEAR * self.w_max):
            return RateState.HOLDING
        return RateState.CLIMBING

    def answered_per_s(self, now_s: float) -> float:
        """Answers (throttled or not) per second over the last WINDOW_S."""
        return len(self._answered) / self._window_s(now_s)

    def ok_per_s(self, now_s: float) -> float:
        """Answers that were not throttled, per second, over the last WINDOW_S."""
        return len(self._ok) / self._window_s(now_s)

    def _grown(self, now_s: float, dt: float) -> float:
        if self.w_max is not None and now_s - self._epoch_s >= STALE_S:
            self.w_max = None  # the limit rose, or an outage ended: find it again, fast
        if self.w_max is None:
            return self.rate_per_s * math.pow(2.0, dt / SLOW_START_DOUBLING_S)
        t = now_s - self._epoch_s
        return self.w_max * (1.0 + C * (t - K_S) ** 3)

    def _cut(self, now_s: float) -> None:
        self._forget(now_s)
        ok = self.ok_per_s(now_s)
        basis = min(self.rate_per_s, ok) if ok > 0 else self.rate_per_s
        self.w_max = max(basis, MIN_RATE_PER_S)
        self.rate_per_s = min(max(BETA * basis, MIN_RATE_PER_S), self.ceiling_per_s)
        self._cut_s = self._epoch_s = now_s
        self.cuts += 1

    def _window_s(self, now_s: float) -> float:
        return max(min(WINDOW_S, now_s - self._started_s), 1e-3)

    def _forget(self, now_s: float) -> None:
        edge = now_s - WINDOW_S
        for times in (self._answered, self._ok):
            while times and times[0] < edge:
                times.popleft()


class LimitCounts:
    """429 answers by cause (throttled, profile_lock, dev_mode): in all, and since last read."""

    def __init__(self) -> None:
        self.total: dict[str, int] = {}
        self._window: dict[str, int] = {}

    def add(self, cause: str) -> None:
        """Counts one 429 of `cause`."""
        self.total[cause] = self.total.get(cause, 0) + 1
        self._window[cause] = self._window.get(cause, 0) + 1

    def take_window(self) -> dict[str, int]:
        """The counts since the previous call, then starts a new window."""
        window, self._window = self._window, {}
        return window
