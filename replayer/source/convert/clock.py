"""Exports whose event times are a local wall clock: detected from a UTC processing time.

Mixpanel projects created before their UTC migration write `time` in the project's zone,
while `mp_processing_time_ms` is UTC: the difference is then the zone's offset (plus the
few seconds of upload delay), a whole number of hours. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

_SLACK_S = 15 * 60  # upload delay tolerated around a whole hour
_SHARE = 0.9  # of the events with both times, at a non-zero whole hour
_SAMPLES = 8  # event times kept per hour, to name the zones that fit
# Zones named first when several fit (the most used of each offset); else the first by name.
_PREFERRED = (
    "America/Los_Angeles", "America/Denver", "America/Phoenix", "America/Chicago",
    "America/New_York", "America/Sao_Paulo", "Europe/London", "Europe/Paris",
    "Europe/Moscow", "Asia/Kolkata", "Asia/Shanghai", "Asia/Tokyo", "Asia/Singapore",
    "Australia/Sydney", "Pacific/Auckland",
)
_AREAS = ("Africa/", "America/", "Asia/", "Atlantic/", "Australia/", "Europe/", "Indian/",
          "Pacific/")


@dataclass(frozen=True, slots=True)
class LocalTimes:
    """Event times that look local: processing time minus event time, in whole hours, with
    how many events show each, and a zone whose offsets fit them (None: none does)."""

    hours: dict[int, int]
    events: int
    zone: str | None

    def encode(self) -> dict[str, object]:
        """As FILE.summary.json holds it."""
        return {"lag_hours": {f"{h:+d}": n for h, n in sorted(self.hours.items())},
                "events": self.events, "suggested_zone": self.zone}

    def line(self) -> str:
        """The stderr line: what was seen and the flag to pass."""
        seen = ", ".join(f"{h:+d} h in {n}" for h, n in sorted(self.hours.items()))
        flag = f"--source-timezone {self.zone}" if self.zone else "--source-timezone ZONE"
        return (f"  event times look local: the UTC processing time is {seen} of "
                f"{self.events} events: pass {flag}")


@dataclass(slots=True)
class LagTally:
    """Whole-hour differences between processing and event times, as events are read."""

    events: int = 0
    hours: dict[int, int] = field(default_factory=dict)
    samples: dict[int, list[float]] = field(default_factory=dict)

    def add(self, time_s: float, processed_s: float) -> None:
        """Counts one event that carries both times (`processed_s` in UTC)."""
        self.events += 1
        lag_s = processed_s - time_s
        hours = round(lag_s / 3600)
        if abs(lag_s - hours * 3600) > _SLACK_S:
            return
        self.hours[hours] = self.hours.get(hours, 0) + 1
        kept = self.samples.setdefault(hours, [])
        if len(kept) < _SAMPLES:
            kept.append(processed_s)

    def merge(self, later: LagTally) -> None:
        """Adds the events counted by `later`, as if they had been added here after ours."""
        self.events += later.events
        for hours, count in later.hours.items():
            self.hours[hours] = self.hours.get(hours, 0) + count
            kept = self.samples.setdefault(hours, [])
            kept.extend(later.samples.get(hours, [])[: _SAMPLES - len(kept)])

    def detected(self) -> LocalTimes | None:
        """Local times when nearly all events are a non-zero whole hour off: one offset, or
        two an hour apart (daylight saving time); else None."""
        if not self.hours:
            return None
        best = max(self.hours, key=lambda h: (self.hours[h], -abs(h)))
        near = max((best - 1, best + 1), key=lambda h: self.hours.get(h, 0))
        off = {h: self.hours[h] for h in (best, near) if h in self.hours and h != 0}
        if best == 0 or sum(off.values()) < _SHARE * self.events:
            return None
        moments = tuple(sorted((h, t) for h in off for t in self.samples[h]))
        return LocalTimes(off, self.events, _zone_fitting(moments))


@lru_cache(maxsize=64)
def _zone_fitting(moments: tuple[tuple[int, float], ...]) -> str | None:
    """A zone `hours` behind UTC at each UTC moment of `moments`, or None."""
    fits = [name for name in (*_PREFERRED, *sorted(_zone_names()))
            if _fits(name, moments)]
    return fits[0] if fits else None


def _zone_names() -> set[str]:
    return {n for n in available_timezones() if n.startswith(_AREAS)}


def _fits(name: str, moments: tuple[tuple[int, float], ...]) -> bool:
    zone = ZoneInfo(name)
    for hours, utc_s in moments:
        offset = datetime.fromtimestamp(utc_s, UTC).astimezone(zone).utcoffset()
        if offset is None or offset.total_seconds() != -hours * 3600:
            return False
    return True
