"""Streams large, realistic, deterministic session files for load tests and samples.

Pure apart from `write_records`, which writes to a stream it is given; memory does not
grow with the number of records.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, BinaryIO

import orjson

DEFAULT_START_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DEFAULT_SPAN_S = 30 * 86400.0
# Half of the repeat sessions go to any user seen so far, half favour the earliest ones
# (position int(k * r**2)): a long tail with a few sessions each, and a busy head.
_SKEW = 2.0
_BUSY_SHARE = 0.5
_INTRO_SHARE = 0.5  # every user's first session falls in the first half of the file
_DEVICE_ONLY_PER_MILLE = 50  # about 5% of users send a deviceId and no userId
_WRITE_BATCH = 1000  # records joined per write() call

# (country, region, city, lat, lon, January timezone abbreviation, its UTC offset, locales).
# Offsets are those in force in January, so they match the default 30 days from 2026-01-01.
_PLACES: tuple[tuple[str, str, str, float, float, str, int, tuple[str, ...]], ...] = (
    ("US", "CA", "San Francisco", 37.7749, -122.4194, "PST", -28800, ("en_US", "es_US")),
    ("US", "WA", "Seattle", 47.6062, -122.3321, "PST", -28800, ("en_US",)),
    ("US", "TX", "Austin", 30.2672, -97.7431, "CST", -21600, ("en_US", "es_US")),
    ("US", "IL", "Chicago", 41.8781, -87.6298, "CST", -21600, ("en_US",)),
    ("US", "NY", "New York", 40.7128, -74.0060, "EST", -18000, ("en_US", "es_US")),
    ("CA", "ON", "Toronto", 43.6532, -79.3832, "EST", -18000, ("en_CA",)),
    ("CA", "QC", "Montréal", 45.5019, -73.5674, "EST", -18000, ("fr_CA", "en_CA")),
    ("MX", "CMX", "Ciudad de México", 19.4326, -99.1332, "CST", -21600, ("es_MX",)),
    ("BR", "SP", "São Paulo", -23.5505, -46.6333, "BRT", -10800, ("pt_BR",)),
    ("AR", "C", "Buenos Aires", -34.6037, -58.3816, "ART", -10800, ("es_AR",)),
    ("GB", "ENG", "London", 51.5074, -0.1278, "GMT", 0, ("en_GB",)),
    ("IE", "L", "Dublin", 53.3498, -6.2603, "GMT", 0, ("en_IE", "ga_IE")),
    ("FR", "IDF", "Paris", 48.8566, 2.3522, "CET", 3600, ("fr_FR",)),
    ("DE", "BE", "Berlin", 52.5200, 13.4050, "CET", 3600, ("de_DE",)),
    ("DE", "BY", "München", 48.1351, 11.5820, "CET", 3600, ("de_DE",)),
    ("ES", "MD", "Madrid", 40.4168, -3.7038, "CET", 3600, ("es_ES",)),
    ("NL", "NH", "Amsterdam", 52.3676, 4.9041, "CET", 3600, ("nl_NL", "en_NL")),
    ("SE", "AB", "Stockholm", 59.3293, 18.0686, "CET", 3600, ("sv_SE",)),
    ("PL", "14", "Warszawa", 52.2297, 21.0122, "CET", 3600, ("pl_PL",)),
    ("NG", "LA", "Lagos", 6.5244, 3.3792, "WAT", 3600, ("en_NG",)),
    ("ZA", "GP", "Johannesburg", -26.2041, 28.0473, "SAST", 7200, ("en_ZA", "af_ZA")),
    ("EG", "C", "Cairo", 30.0444, 31.2357, "EET", 7200, ("ar_EG",)),
    ("TR", "34", "İstanbul", 41.0082, 28.9784, "TRT", 10800, ("tr_TR",)),
    ("AE", "DU", "Dubai", 25.2048, 55.2708, "GST", 14400, ("en_AE", "ar_AE")),
    ("IN", "MH", "Mumbai", 19.0760, 72.8777, "IST", 19800, ("en_IN", "hi_IN")),
    ("IN", "KA", "Bengaluru", 12.9716, 77.5946, "IST", 19800, ("en_IN", "kn_IN")),
    ("NP", "P3", "Kathmandu", 27.7172, 85.3240, "NPT", 20700, ("ne_NP", "en_US")),
    ("ID", "JK", "Jakarta", -6.2088, 106.8456, "WIB", 25200, ("id_ID",)),
    ("SG", "01", "Singapore", 1.3521, 103.8198, "SGT", 28800, ("en_SG", "zh_SG")),
    ("JP", "13", "Tokyo", 35.6762, 139.6503, "JST", 32400, ("ja_JP",)),
    ("KR", "11", "Seoul", 37.5665, 126.9780, "KST", 32400, ("ko_KR",)),
    ("AU", "NSW", "Sydney", -33.8688, 151.2093, "AEDT", 39600, ("en_AU",)),
    ("NZ", "AUK", "Auckland", -36.8485, 174.7633, "NZDT", 46800, ("en_NZ",)),
)
_IOS_MODELS = ("iPhone 16", "iPhone 16 Pro", "iPhone 15", "iPhone 14", "iPhone SE", "iPad Air")
_IOS_VERSIONS = ("26.2", "26.1", "18.7.2", "18.6", "17.7.1")
_ANDROID_MODELS = ("Pixel 9", "Pixel 8a", "SM-S928B", "SM-A556B", "moto g85 5G", "2312DRA50G")
_ANDROID_VERSIONS = ("16", "15", "14", "13")
_MOBILE_APP_VERSIONS = ("5.4.0", "5.4.1", "5.5.0", "5.6.2")
_BROWSERS = (("Chrome", "143.0"), ("Safari", "26.1"), ("Firefox", "146.0"), ("Edge", "143.0"))
_DESKTOP_SYSTEMS = (("Windows", "10"), ("Mac OS", "10.15.7"), ("Linux", ""))
_WEB_APP_VERSIONS = ("2026.1.0", "2026.1.2")
_PLANS = ("free", "free", "free", "plus", "plus", "pro")
_SIGNUP_SOURCES = ("organic", "app_store_search", "google_ads", "meta_ads", "referral", "email")
_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
_INTERESTS = ("fitness", "travel", "cooking", "music", "finance", "gaming", "reading")


@dataclass(frozen=True, slots=True)
class _Profile:
    """What stays the same across one user's sessions."""

    fields: tuple[tuple[str, Any], ...]  # start parameters sent on every session
    attributes: tuple[tuple[str, Any], ...]
    mobile: bool
    lat: float
    lon: float


def iter_records(
    *,
    records: int,
    users: int,
    seed: int = 0,
    with_time: bool = True,
    start_s: float = DEFAULT_START_S,
    span_s: float = DEFAULT_SPAN_S,
) -> Iterator[dict[str, Any]]:
    """Yields `records` start records for `users` users, lazily and the same for the same seed.

    Every user appears at least once when records >= users; busier users get many more
    sessions. Times (UNIX seconds, ms precision) rise strictly across the whole file, so
    each user's sessions are in order and no (user, time) pair repeats.
    """
    if records < 0 or users < 1 or not span_s > 0:
        raise ValueError("records must be >= 0, users >= 1 and span_s > 0")
    rng = random.Random(seed)
    scale, shift = _permutation(users, rng)
    start_ms = round(start_s * 1000)
    span_ms = max(1, round(span_s * 1000))
    step_ms = span_ms // records if records else 0
    previous_ms = start_ms - 1
    introduced = 0
    intro_slots = min(records, max(users, math.ceil(records * _INTRO_SHARE)))
    for i in range(records):
        # Selection sampling: exactly min(users, records) of the first intro_slots slots
        # introduce a new user; the other slots go to users already seen.
        new_user = introduced < users and (
            introduced == 0 or rng.random() * (intro_slots - i) < users - introduced
        )
        if new_user:
            position = introduced
            introduced += 1
        else:
            exponent = _SKEW if rng.random() < _BUSY_SHARE else 1.0
            position = int(introduced * rng.random() ** exponent)
        index = (scale * position + shift) % users
        record = _session(seed, index, new_user, rng)
        # Drawn even without time, so that --no-time yields the same records minus time.
        jitter_ms = rng.randrange(step_ms) if step_ms > 1 else 0
        if with_time:
            # A jitter below the step keeps the timeline strictly increasing; the max()
            # only matters when there are more records than milliseconds in the span.
            at_ms = max(start_ms + i * span_ms // records + jitter_ms, previous_ms + 1)
            previous_ms = at_ms
            record["time"] = at_ms / 1000
        yield record


def write_records(
    out: BinaryIO,
    *,
    records: int,
    users: int,
    seed: int = 0,
    with_time: bool = True,
    start_s: float = DEFAULT_START_S,
    span_s: float = DEFAULT_SPAN_S,
) -> int:
    """Writes `iter_records(...)` to `out` as NDJSON (orjson, one line each); returns the count."""
    written = 0
    batch: list[bytes] = []
    for record in iter_records(
        records=records,
        users=users,
        seed=seed,
        with_time=with_time,
        start_s=start_s,
        span_s=span_s,
    ):
        batch.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        if len(batch) == _WRITE_BATCH:
            out.write(b"".join(batch))
            written += len(batch)
            batch.clear()
    out.write(b"".join(batch))
    return written + len(batch)


def _permutation(users: int, rng: random.Random) -> tuple[int, int]:
    """An affine map position -> (a * position + b) % users that visits every user once.

    It shuffles the order users first appear in without a list as long as `users`.
    """
    if users == 1:
        return 1, 0
    scale = rng.randrange(1, users)
    while math.gcd(scale, users) != 1:
        scale = rng.randrange(1, users)
    return scale, rng.randrange(users)


def _session(seed: int, index: int, new_user: bool, rng: random.Random) -> dict[str, Any]:
    profile = _profile(seed, index)
    record = dict(profile.fields)
    if profile.mobile:
        if rng.random() < 0.03:
            record["background"] = True
        if record["locationAccuracyType"] == "GPS":
            # A few hundred metres of movement between sessions.
            lat = profile.lat + rng.uniform(-0.003, 0.003)
            lon = profile.lon + rng.uniform(-0.003, 0.003)
            record["location"] = f"{lat:.5f},{lon:.5f}"
    if new_user or rng.random() < 0.25:
        # Lists are copied so that no two yielded records share a mutable value.
        record["userAttributes"] = {
            name: list(value) if type(value) is list else value
            for name, value in profile.attributes
        }
    return record


@lru_cache(maxsize=4096)  # busy users come back often; bounded, so memory stays flat
def _profile(seed: int, index: int) -> _Profile:
    """The device, place and attributes of user `index`, derived from (seed, index) alone."""
    rng = random.Random(f"{seed}:{index}")
    place = rng.choice(_PLACES)
    country, region, city, lat, lon, tz_name, tz_offset_s, locales = place
    kind = rng.choices(("ios", "android", "web"), weights=(4, 4, 2))[0]
    device_only = rng.randrange(1000) < _DEVICE_ONLY_PER_MILLE
    fields: list[tuple[str, Any]] = []
    if not device_only:
        fields.append(("userId", f"u{index:06d}"))
    fields.append(("deviceId", _device_id(kind, rng)))
    if kind == "ios":
        fields += [
            ("appVersion", rng.choice(_MOBILE_APP_VERSIONS)),
            ("systemName", "iOS"),
            ("systemVersion", rng.choice(_IOS_VERSIONS)),
            ("deviceModel", rng.choice(_IOS_MODELS)),
        ]
    elif kind == "android":
        fields += [
            ("appVersion", rng.choice(_MOBILE_APP_VERSIONS)),
            ("systemName", "Android OS"),
            ("systemVersion", rng.choice(_ANDROID_VERSIONS)),
            ("deviceModel", rng.choice(_ANDROID_MODELS)),
        ]
    else:
        browser, browser_version = rng.choice(_BROWSERS)
        system, system_version = rng.choice(_DESKTOP_SYSTEMS)
        if browser == "Safari":
            system, system_version = "Mac OS", "10.15.7"
        fields += [
            ("appVersion", rng.choice(_WEB_APP_VERSIONS)),
            ("systemName", system),
            ("systemVersion", system_version),
            ("browserName", browser),
            ("browserVersion", browser_version),
            ("deviceModel", "Web Browser"),
        ]
    # A user lives somewhere within ~10 km of the city centre.
    lat += rng.uniform(-0.08, 0.08)
    lon += rng.uniform(-0.08, 0.08)
    accuracy = "IP" if kind == "web" else rng.choice(("GPS", "GPS", "CELL"))
    fields += [
        ("locale", rng.choice(locales)),
        ("country", country),
        ("region", region),
        ("city", city),
        ("location", f"{lat:.2f},{lon:.2f}" if accuracy == "IP" else f"{lat:.4f},{lon:.4f}"),
        ("locationAccuracyType", accuracy),
        ("timezone", tz_name),
        ("timezoneOffsetSeconds", tz_offset_s),
    ]
    fields += _push_fields(kind, rng)
    return _Profile(tuple(fields), _attributes(rng), kind != "web", lat, lon)


def _device_id(kind: str, rng: random.Random) -> str:
    if kind == "android":
        return f"{rng.getrandbits(64):016x}"  # Android ID: 16 hex digits
    text = f"{rng.getrandbits(128):032x}"
    uuid = f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:]}"
    return uuid.upper() if kind == "ios" else uuid  # iOS identifierForVendor is upper case


def _push_fields(kind: str, rng: random.Random) -> list[tuple[str, Any]]:
    if rng.random() >= 0.6:
        return []
    if kind == "ios":
        return [("iosPushToken", f"{rng.getrandbits(256):064x}")]
    if kind == "android":
        token = "".join(rng.choices(_TOKEN_CHARS, k=140))
        return [("gcmRegistrationId", f"{rng.getrandbits(64):011x}:APA91b{token}")]
    subscription = {
        "endpoint": f"https://fcm.googleapis.com/fcm/send/{rng.getrandbits(64):016x}",
        "keys": {"p256dh": f"B{rng.getrandbits(256):064x}", "auth": f"{rng.getrandbits(64):016x}"},
    }
    return [("webPushSubscription", orjson.dumps(subscription).decode())]


def _attributes(rng: random.Random) -> tuple[tuple[str, Any], ...]:
    attributes: list[tuple[str, Any]] = [
        ("plan", rng.choice(_PLANS)),
        ("signup_source", rng.choice(_SIGNUP_SOURCES)),
    ]
    if rng.random() < 0.8:  # not everyone tells their age
        attributes.append(("age", rng.randint(18, 74)))
    attributes.append(("marketing_opt_in", rng.random() < 0.45))
    if rng.random() < 0.5:
        attributes.append(("interests", sorted(rng.sample(_INTERESTS, rng.randint(1, 3)))))
    return tuple(attributes)
