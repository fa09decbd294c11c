"""`iter_records` / `write_records`: deterministic, lazy, realistic and always valid."""

from __future__ import annotations

import inspect
import io
import itertools
import tracemalloc
from collections import Counter, defaultdict
from typing import Any

import orjson
import pytest

from replayer.records import RawLine, Session
from replayer.source.generate import DEFAULT_START_S, iter_records, write_records
from replayer.source.validate import parse_line


def generated(**options: Any) -> bytes:
    out = io.BytesIO()
    count = write_records(out, **options)
    assert count == out.getvalue().count(b"\n")
    return out.getvalue()


def sessions(**options: Any) -> list[Session]:
    parsed = []
    for line_no, data in enumerate(generated(**options).splitlines(), 1):
        result = parse_line(RawLine("gen.ndjson", line_no, data), now_s=DEFAULT_START_S + 1e9)
        assert isinstance(result, Session), result
        parsed.append(result)
    return parsed


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first = generated(records=2000, users=100, seed=5)
    assert first == generated(records=2000, users=100, seed=5)
    assert first != generated(records=2000, users=100, seed=6)


COUNT_CASES: list[tuple[str, int, int, int]] = [
    ("more-records-than-users", 3000, 200, 200),
    ("one-session-each", 150, 150, 150),
    ("fewer-records-than-users", 40, 100, 40),
    ("single-user", 50, 1, 1),
    ("nothing", 0, 10, 0),
]


@pytest.mark.parametrize(
    ("records", "users", "distinct"),
    [c[1:] for c in COUNT_CASES],
    ids=[c[0] for c in COUNT_CASES],
)
def test_counts(records: int, users: int, distinct: int) -> None:
    parsed = sessions(records=records, users=users, seed=1)
    assert len(parsed) == records
    # Every user keeps one device, so deviceIds count users (some users have no userId).
    assert len({s.device_id for s in parsed}) == distinct
    assert len({s.lane for s in parsed}) == distinct


def test_every_user_index_appears_when_there_are_enough_records() -> None:
    users = 500
    parsed = sessions(records=users * 4, users=users, seed=9)
    user_ids = {s.user_id for s in parsed if s.user_id is not None}
    device_only = {s.device_id for s in parsed if s.user_id is None}
    assert len(user_ids) + len(device_only) == users
    assert user_ids <= {f"u{index:06d}" for index in range(users)}
    assert 0.02 * users < len(device_only) < 0.09 * users  # about 5%


def test_each_users_times_strictly_increase_and_never_repeat() -> None:
    parsed = sessions(records=5000, users=300, seed=2, span_s=86400)
    times = [s.params["time"] for s in parsed]
    assert times == sorted(times) and len(set(times)) == len(times)
    per_user: dict[str, list[float]] = defaultdict(list)
    for s in parsed:
        per_user[s.lane].append(s.params["time"])
    for user_times in per_user.values():
        assert all(a < b for a, b in itertools.pairwise(user_times))
    assert DEFAULT_START_S <= times[0] and times[-1] < DEFAULT_START_S + 86400


def test_times_stay_increasing_with_more_records_than_milliseconds() -> None:
    times = [r["time"] for r in iter_records(records=3000, users=10, span_s=1.0)]
    assert all(a < b for a, b in itertools.pairwise(times))
    assert all(round(t, 3) == t for t in times)  # millisecond precision


def test_no_time_gives_the_same_records_without_time() -> None:
    with_time = list(iter_records(records=300, users=40, seed=4))
    without = list(iter_records(records=300, users=40, seed=4, with_time=False))
    assert all("time" not in r for r in without)
    assert [{k: v for k, v in r.items() if k != "time"} for r in with_time] == without


def test_a_user_keeps_one_device_place_and_locale() -> None:
    profile_fields = ("deviceId", "systemName", "deviceModel", "locale", "country", "timezone")
    seen: dict[str, tuple[Any, ...]] = {}
    for s in sessions(records=3000, users=100, seed=3):
        profile = tuple(s.params.get(field) for field in profile_fields)
        assert seen.setdefault(s.lane, profile) == profile


def test_some_users_are_much_busier_than_others() -> None:
    counts = Counter(s.lane for s in sessions(records=20_000, users=1000, seed=8))
    busiest = counts.most_common(10)
    assert busiest[0][1] > 10 * (20_000 / 1000)  # the busiest has over 10x the mean
    assert min(counts.values()) >= 1


def test_records_look_like_mobile_and_web_sessions() -> None:
    parsed = sessions(records=2000, users=400, seed=11)
    systems = Counter(s.params["systemName"] for s in parsed)
    assert {"iOS", "Android OS"} <= systems.keys()
    assert any("browserName" in s.params for s in parsed)
    assert any("userAttributes" in s.params for s in parsed)
    for s in parsed:
        offset = s.params["timezoneOffsetSeconds"]
        assert offset % 900 == 0 and -43200 <= offset <= 50400


def test_generator_is_lazy() -> None:
    assert inspect.isgenerator(iter_records(records=10, users=1))
    # Would never finish (nor fit in memory) if it built its records up front.
    first = list(itertools.islice(iter_records(records=10**15, users=10**9, seed=0), 5))
    assert len(first) == 5 and all(isinstance(r["time"], float) for r in first)


def test_yielded_records_share_no_mutable_values() -> None:
    records = list(iter_records(records=500, users=3, seed=0))
    lists = [
        id(value)
        for r in records
        for value in r.get("userAttributes", {}).values()
        if isinstance(value, list)
    ]
    assert len(lists) == len(set(lists))


def test_written_lines_are_orjson_records() -> None:
    data = generated(records=10, users=3, seed=0)
    assert data.endswith(b"\n")
    expected = [orjson.dumps(r) for r in iter_records(records=10, users=3, seed=0)]
    assert data.splitlines() == expected


BAD_ARGUMENTS: list[tuple[str, dict[str, Any]]] = [
    ("negative-records", {"records": -1, "users": 1}),
    ("no-users", {"records": 1, "users": 0}),
    ("no-span", {"records": 1, "users": 1, "span_s": 0}),
]


@pytest.mark.parametrize(
    "options", [c[1] for c in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS]
)
def test_bad_arguments(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        next(iter_records(**options))


class _Discard:
    """A binary sink that keeps nothing, so that only the generator's memory is measured."""

    def write(self, data: bytes) -> int:
        return len(data)


def test_memory_does_not_grow_with_records() -> None:
    def peak_bytes(records: int) -> int:
        tracemalloc.start()
        try:
            write_records(_Discard(), records=records, users=50, seed=0)  # type: ignore[arg-type]
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak_bytes(1000)  # warm the caches that any first call fills
    assert peak_bytes(40_000) < 1.5 * peak_bytes(4_000)
