"""Writes a large synthetic export per vendor (Amplitude, Mixpanel, Segment, GA4) for
measuring `replayer convert`: sessions of users interleaved over a week, gzip JSON lines.

    .venv/bin/python bench/gen_exports.py --events 1000000 --out /tmp/exports
    /usr/bin/time -v .venv/bin/replayer convert --from ga4 /tmp/exports/ga4.json.gz -o /tmp/ga4.ndjson
"""

from __future__ import annotations

import argparse
import gzip
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

T0 = 1767225600  # 2026-01-01 00:00 UTC
SPAN_S = 7 * 86400
ACTIVE_SESSIONS = 2000
COUNTRIES = ["United States", "Germany", "France", "Japan", "Brazil", "India", "Atlantis"]
LOCALES = ["en-US", "de-de", "fr", "ja-JP", "pt-BR", "hi-IN"]
ZONES = ["America/New_York", "Europe/Berlin", "Europe/Paris", "Asia/Tokyo", "Asia/Kolkata"]

Row = Callable[[random.Random, str, int, float, bool], dict[str, Any]]


def _stamp(t: float, sep: str = " ") -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(sep=sep, timespec="microseconds")[:26]


def amplitude(rng: random.Random, user: str, session: int, t: float, first: bool) -> dict[str, Any]:
    """One Amplitude Export API row."""
    return {"event_type": "session_start" if first else rng.choice(["play", "view", "tap"]),
            "user_id": user, "device_id": f"dev-{user}", "amplitude_id": hash(user) & 0xFFFFFF,
            "event_time": _stamp(t), "client_event_time": _stamp(t - 1.5),
            "session_id": session * 1000, "version_name": "3.2.0", "os_name": "ios",
            "os_version": "17.2", "device_model": "iPhone15,2", "platform": "iOS",
            "country": rng.choice(COUNTRIES), "region": "Region", "city": "City",
            "language": "English", "location_lat": 37.77, "location_lng": -122.41,
            "user_properties": {"plan": rng.choice(["free", "pro"]), "level": rng.randint(1, 50)},
            "event_properties": {"track": f"t{rng.randint(1, 999)}"}}


def mixpanel(rng: random.Random, user: str, session: int, t: float, first: bool) -> dict[str, Any]:
    """One Mixpanel raw export row."""
    return {"event": "App Open" if first else "Search", "properties": {
        "time": int(t), "distinct_id": user, "$user_id": user, "$device_id": f"dev-{user}",
        "$insert_id": f"{user}-{t}", "$os": "Android", "$os_version": "14", "$model": "Pixel 8",
        "$app_version_string": "2.0.1", "$city": "Austin", "$region": "Texas",
        "mp_country_code": "US", "query": "boots"}}


def segment(rng: random.Random, user: str, session: int, t: float, first: bool) -> dict[str, Any]:
    """One Segment track call."""
    return {"type": "track", "event": "Application Opened" if first else "Song Played",
            "userId": user, "anonymousId": f"anon-{user}", "messageId": f"{user}-{t}",
            "timestamp": _stamp(t, "T") + "Z",
            "context": {"app": {"version": "1.4.0"}, "device": {"id": f"dev-{user}",
                                                                "model": "iPhone14,5"},
                        "os": {"name": "iOS", "version": "17.2"},
                        "locale": rng.choice(LOCALES), "timezone": rng.choice(ZONES),
                        "location": {"country": rng.choice(COUNTRIES), "city": "City"}},
            "properties": {"song": "a"}}


def ga4(rng: random.Random, user: str, session: int, t: float, first: bool) -> dict[str, Any]:
    """One GA4 BigQuery export row (INT64 as strings)."""
    return {"event_date": "20260101", "event_timestamp": str(int(t * 1e6)),
            "event_name": "session_start" if first else "screen_view",
            "event_params": [{"key": "ga_session_id", "value": {"int_value": str(session)}},
                             {"key": "firebase_screen", "value": {"string_value": "home"}}],
            "user_pseudo_id": f"p-{user}", "user_id": user,
            "user_properties": [{"key": "tier", "value": {"string_value": "gold",
                                                          "set_timestamp_micros": "1"}}],
            "device": {"category": "mobile", "mobile_model_name": "SM-S918B",
                       "operating_system": "Android", "operating_system_version": "Android 14",
                       "language": rng.choice(LOCALES).lower(), "time_zone_offset_seconds": "3600"},
            "geo": {"country": rng.choice(COUNTRIES), "region": "R", "city": "C"},
            "app_info": {"id": "com.example.app", "version": "5.1.0"}}


SOURCES: dict[str, tuple[str, Row]] = {
    "amplitude": ("amplitude.json.gz", amplitude), "mixpanel": ("mixpanel.json.gz", mixpanel),
    "segment": ("segment.json.gz", segment), "ga4": ("ga4.json.gz", ga4),
}


def events(row: Row, *, count: int, users: int, seed: int) -> Iterator[dict[str, Any]]:
    """`count` rows: ACTIVE_SESSIONS sessions at a time, each ending with p=1/12 per event;
    time rises steadily over a week, each row jittered back by up to a minute."""
    rng = random.Random(seed)
    step_s = SPAN_S / count
    active: list[tuple[str, int, bool]] = []
    for i in range(count):
        t = T0 + i * step_s
        if len(active) < ACTIVE_SESSIONS:
            active.append((f"u{rng.randrange(users):07d}", int(t), True))
        slot = rng.randrange(len(active))
        user, session, first = active[slot]
        yield row(rng, user, session, max(session, t - rng.random() * 60), first)
        active[slot] = (user, session, False)
        if rng.random() < 1 / 12:
            active[slot] = active[-1]
            active.pop()


def main() -> None:
    """Parses flags and writes one gzip export per source."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench-exports"))
    parser.add_argument("--source", choices=sorted(SOURCES), action="append")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.source or sorted(SOURCES):
        file_name, row = SOURCES[name]
        with gzip.open(args.out / file_name, "wb", compresslevel=1) as out:
            for event in events(row, count=args.events, users=args.users, seed=args.seed):
                out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        print(f"wrote {args.out / file_name}")


if __name__ == "__main__":
    main()
