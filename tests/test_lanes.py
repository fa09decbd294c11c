"""Lanes: per-user FIFO, one request per user in flight, take limits, exact counters, spilling."""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson
import pytest

from replayer.engine.lanes import Lane, Lanes, SpillStore, Take, Work
from replayer.engine.spill import FileSpill
from replayer.records import Session

FILE = "sessions.ndjson"


def session(user: str, line_no: int, **params: object) -> Session:
    record = {"userId": user, "time": 1_700_000_000 + line_no, **params}
    return Session(FILE, line_no, user, None, orjson.dumps(record), orjson.dumps(record))


def work(user: str, line_no: int) -> Work:
    return Work(session(user, line_no))


def lines(works: Iterable[Work]) -> list[int]:
    return [w.session.line_no for w in works]


def parts(take: Take | None) -> list[tuple[str, list[int]]]:
    assert take is not None
    return [(lane.key, lines(ws)) for lane, ws in take.parts]


def push_all(lanes: Lanes, users: str) -> None:
    """Pushes one item per character, numbering lines from 1 in order."""
    for line_no, user in enumerate(users, start=1):
        lanes.push(work(user, line_no))


def settle_all(lanes: Lanes, take: Take) -> None:
    for lane, ws in take.parts:
        assert lanes.settle(lane, ws, ws)


class MemorySpill:
    """A `SpillStore` in a dict of deques."""

    def __init__(self) -> None:
        self.chains: dict[str, deque[Work]] = {}

    def append(self, lane: str, work: Work) -> None:
        self.chains.setdefault(lane, deque()).append(work)

    def pop(self, lane: str, n: int) -> list[Work]:
        chain = self.chains.get(lane, deque())
        out = [chain.popleft() for _ in range(min(n, len(chain)))]
        if not chain:
            self.chains.pop(lane, None)
        return out

    def __len__(self) -> int:
        return sum(len(c) for c in self.chains.values())


@pytest.fixture
def file_spill(tmp_path: Path) -> Iterator[FileSpill]:
    spill = FileSpill(tmp_path)
    yield spill
    spill.close()


@pytest.fixture(params=["memory", "file"])
def spill(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SpillStore]:
    """Each spill test runs against the in-memory fake and against the real FileSpill."""
    if request.param == "memory":
        yield MemorySpill()
        return
    store = FileSpill(tmp_path)
    yield store
    store.close()


# ---- FIFO and one request per user ---------------------------------------------------------

def test_each_user_gets_its_items_in_input_order() -> None:
    lanes = Lanes(lane_cap=100)
    push_all(lanes, "abacabcaab")
    seen: dict[str, list[int]] = {}
    while (take := lanes.take(max_users=1, max_actions=1)) is not None:
        for key, ls in parts(take):
            seen.setdefault(key, []).extend(ls)
        settle_all(lanes, take)
    assert seen == {"a": [1, 3, 5, 8, 9], "b": [2, 6, 10], "c": [4, 7]}
    assert (lanes.pending, lanes.in_memory, len(lanes)) == (0, 0, 0)


def test_lanes_become_ready_in_the_order_their_first_item_came() -> None:
    lanes = Lanes(lane_cap=100)
    push_all(lanes, "cabca")
    assert parts(lanes.take(max_users=10, max_actions=10)) == [
        ("c", [1, 4]), ("a", [2, 5]), ("b", [3])]


def test_a_freed_lane_goes_to_the_back_of_the_ready_queue() -> None:
    lanes = Lanes(lane_cap=100)
    push_all(lanes, "aab")
    first = lanes.take(max_users=1, max_actions=1)
    assert parts(first) == [("a", [1])]
    assert first is not None
    settle_all(lanes, first)
    assert parts(lanes.take(max_users=2, max_actions=10)) == [("b", [3]), ("a", [2])]


BUSY_CASES: list[tuple[str, str, Callable[[Lanes, Take], object]]] = [
    ("taken", "aab", lambda lanes, take: None),
    ("pushed-while-busy", "ab", lambda lanes, take: lanes.push(work("a", 99))),
    ("kept-for-retry", "aab", lambda lanes, take: [
        lanes.settle(lane, ws, ()) for lane, ws in take.parts if lane.key == "a"]),
    ("partly-kept", "aaab", lambda lanes, take: [
        lanes.settle(lane, ws, ws[:1]) for lane, ws in take.parts if lane.key == "a"]),
]


@pytest.mark.parametrize(("users", "then"), [c[1:] for c in BUSY_CASES],
                         ids=[c[0] for c in BUSY_CASES])
def test_a_busy_lane_is_never_taken_again(
    users: str, then: Callable[[Lanes, Take], object]
) -> None:
    lanes = Lanes(lane_cap=100)
    push_all(lanes, users)
    take = lanes.take(max_users=1, max_actions=500)
    assert take is not None and [key for key, _ in parts(take)] == ["a"]
    then(lanes, take)
    for _ in range(3):
        again = lanes.take(max_users=50, max_actions=500)
        assert again is None or all(key != "a" for key, _ in parts(again))


# ---- take limits ---------------------------------------------------------------------------

# users pushed: a x3, b x1, c x5, d x2 (lines 1..11), ready in that order
TAKE_CASES = [
    (1, 1, [("a", [1])]),
    (1, 500, [("a", [1, 2, 3])]),
    (2, 500, [("a", [1, 2, 3]), ("b", [4])]),
    (50, 500, [("a", [1, 2, 3]), ("b", [4]), ("c", [5, 6, 7, 8, 9]), ("d", [10, 11])]),
    (50, 2, [("a", [1, 2])]),
    (50, 3, [("a", [1, 2, 3])]),
    (50, 4, [("a", [1, 2, 3]), ("b", [4])]),
    (50, 6, [("a", [1, 2, 3]), ("b", [4])]),  # c would not fit whole: it goes next time
    (1, 2, [("a", [1, 2])]),  # a lane alone is cut to the limit
    (3, 10, [("a", [1, 2, 3]), ("b", [4]), ("c", [5, 6, 7, 8, 9])]),
    (4, 10, [("a", [1, 2, 3]), ("b", [4]), ("c", [5, 6, 7, 8, 9])]),  # d's 2 need 2 places
]


@pytest.mark.parametrize(
    ("max_users", "max_actions", "expected"), TAKE_CASES,
    ids=[f"users-{u}-actions-{a}" for u, a, _ in TAKE_CASES],
)
def test_take_respects_both_limits(
    max_users: int, max_actions: int, expected: list[tuple[str, list[int]]]
) -> None:
    lanes = Lanes(lane_cap=100)
    push_all(lanes, "aaabcccccdd")
    take = lanes.take(max_users=max_users, max_actions=max_actions)
    assert parts(take) == expected
    assert take is not None
    assert len(take.parts) <= max_users
    assert take.actions == sum(len(ls) for _, ls in expected) <= max_actions
    assert lines(take.works) == [n for _, ls in expected for n in ls]
    assert lanes.ready_count == 4 - len(expected)
    assert lanes.pending == lanes.in_memory == 11


def test_take_on_nothing_ready_is_none() -> None:
    lanes = Lanes(lane_cap=10)
    assert lanes.take(max_users=50, max_actions=500) is None
    push_all(lanes, "a")
    assert lanes.take() is not None
    assert lanes.take(max_users=50, max_actions=500) is None


def test_take_defaults_to_one_action() -> None:
    lanes = Lanes(lane_cap=10)
    push_all(lanes, "aab")
    assert parts(lanes.take()) == [("a", [1])]


def test_the_untaken_rest_of_a_lane_comes_next_time() -> None:
    lanes = Lanes(lane_cap=100)
    push_all(lanes, "aaaaa")
    take = lanes.take(max_users=1, max_actions=2)
    assert parts(take) == [("a", [1, 2])]
    assert take is not None
    settle_all(lanes, take)
    assert parts(lanes.take(max_users=1, max_actions=10)) == [("a", [3, 4, 5])]


# ---- settle and release --------------------------------------------------------------------

def test_settle_all_final_frees_the_lane_and_drops_it_when_empty() -> None:
    lanes = Lanes(lane_cap=100)
    push_all(lanes, "aab")
    assert len(lanes) == 2
    take = lanes.take(max_users=2, max_actions=10)
    assert take is not None
    (lane_a, works_a), (lane_b, works_b) = take.parts
    assert lanes.settle(lane_b, works_b, works_b) is True
    assert len(lanes) == 1  # b had nothing more: gone
    assert lanes.settle(lane_a, works_a, works_a) is True
    assert len(lanes) == 0
    assert (lanes.pending, lanes.in_memory, lanes.ready_count) == (0, 0, 0)
    assert lanes.take(max_users=10, max_actions=10) is None


def test_settle_frees_a_lane_with_more_work_for_the_next_take() -> None:
    lanes = Lanes(lane_cap=100)
    push_all(lanes, "aa")
    take = lanes.take(max_users=1, max_actions=1)
    assert take is not None
    lanes.push(work("a", 3))
    settle_all(lanes, take)
    assert len(lanes) == 1 and lanes.ready_count == 1
    assert parts(lanes.take(max_users=1, max_actions=10)) == [("a", [2, 3])]


# (lines taken of a's 5 items, indexes among them that are final, order of the next take)
KEEP_CASES = [
    (3, [], [1, 2, 3, 4, 5]),
    (3, [0], [2, 3, 4, 5]),
    (3, [1], [1, 3, 4, 5]),
    (3, [0, 2], [2, 4, 5]),
    (3, [2], [1, 2, 4, 5]),
    (1, [], [1, 2, 3, 4, 5]),
    (5, [0, 1, 2, 3], [5]),
]


@pytest.mark.parametrize(
    ("n_taken", "final_at", "next_lines"), KEEP_CASES,
    ids=["none-final", "first-final", "middle-final", "ends-final", "last-final",
         "single-kept", "all-but-last"],
)
def test_kept_items_stay_first_in_order_until_release(
    n_taken: int, final_at: list[int], next_lines: list[int]
) -> None:
    lanes = Lanes(lane_cap=100)
    push_all(lanes, "aaaaab")
    take = lanes.take(max_users=1, max_actions=n_taken)
    assert take is not None
    [(lane, ws)] = take.parts
    assert lanes.settle(lane, ws, [ws[i] for i in final_at]) is False
    assert lanes.pending == lanes.in_memory == 6 - len(final_at)
    assert len(lanes) == 2
    # Still busy: only b can go until the retry delay is over.
    assert parts(lanes.take(max_users=10, max_actions=10)) == [("b", [6])]
    assert lanes.take(max_users=10, max_actions=10) is None
    lanes.release(lane)
    assert lanes.ready_count == 1
    assert parts(lanes.take(max_users=10, max_actions=10)) == [("a", next_lines)]


def test_settle_return_value_says_whether_the_lane_is_free() -> None:
    lanes = Lanes(lane_cap=100)
    push_all(lanes, "aa")
    take = lanes.take(max_users=1, max_actions=2)
    assert take is not None
    [(lane, ws)] = take.parts
    assert lanes.settle(lane, ws, ws[:1]) is False
    lanes.release(lane)
    again = lanes.take(max_users=1, max_actions=2)
    assert again is not None
    [(lane, ws)] = again.parts
    assert lines(ws) == [2]
    assert lanes.settle(lane, ws, ws) is True


# ---- randomized: counters exact, every item once, per-user order -------------------------

def check_random_sequence(lanes: Lanes, spill: SpillStore | None, seed: int) -> None:
    rng = random.Random(seed)
    users = [f"u{i}" for i in range(8)]
    unfinished: dict[str, list[int]] = {u: [] for u in users}
    finished: list[int] = []
    in_flight: list[tuple[Lane, tuple[Work, ...]]] = []
    waiting: dict[str, Lane] = {}
    next_line = 0

    def check() -> None:
        pending = sum(len(v) for v in unfinished.values())
        assert lanes.pending == pending
        assert lanes.in_memory + lanes.spilled == pending
        assert lanes.in_memory >= 0 and lanes.spilled >= 0
        if isinstance(spill, MemorySpill):
            assert lanes.spilled == len(spill)
        if spill is not None:
            assert lanes.in_memory <= lanes.lane_cap * len(lanes)
        else:
            assert lanes.spilled == 0
        with_work = {u for u, v in unfinished.items() if v}
        busy = {lane.key for lane, _ in in_flight} | set(waiting)
        assert len(lanes) == len(with_work)
        assert lanes.ready_count == len(with_work - busy)

    def take_once(max_users: int, max_actions: int) -> None:
        busy = {lane.key for lane, _ in in_flight} | set(waiting)
        take = lanes.take(max_users=max_users, max_actions=max_actions)
        if take is None:
            assert not {u for u, v in unfinished.items() if v} - busy
            return
        assert 1 <= len(take.parts) <= max_users
        assert 1 <= take.actions <= max_actions
        keys = [lane.key for lane, _ in take.parts]
        assert len(set(keys)) == len(keys)
        for lane, ws in take.parts:
            assert lane.key not in busy
            assert ws and lines(ws) == unfinished[lane.key][: len(ws)]
            assert all(w.session.lane == lane.key for w in ws)
            in_flight.append((lane, ws))

    def settle_one(index: int, final: list[Work]) -> None:
        lane, ws = in_flight.pop(index)
        free = lanes.settle(lane, ws, final)
        assert free == (len(final) == len(ws))
        for w in final:
            unfinished[lane.key].remove(w.session.line_no)
            finished.append(w.session.line_no)
        if not free:
            waiting[lane.key] = lane

    for _ in range(1500):
        roll = rng.random()
        if roll < 0.45:
            next_line += 1
            user = rng.choice(users[:3]) if rng.random() < 0.5 else rng.choice(users)
            lanes.push(work(user, next_line))
            unfinished[user].append(next_line)
        elif roll < 0.65:
            take_once(rng.randint(1, 4), rng.randint(1, 8))
        elif roll < 0.9 and in_flight:
            index = rng.randrange(len(in_flight))
            ws = in_flight[index][1]
            final = list(ws) if rng.random() < 0.6 else [w for w in ws if rng.random() < 0.5]
            settle_one(index, final)
        elif waiting:
            user = rng.choice(sorted(waiting))
            lanes.release(waiting.pop(user))
        check()

    # Drain: everything comes out, each item exactly once.
    while in_flight or waiting or lanes.pending:
        while in_flight:
            settle_one(0, list(in_flight[0][1]))
        for user in sorted(waiting):
            lanes.release(waiting.pop(user))
        take_once(50, 500)
        check()
    assert sorted(finished) == list(range(1, next_line + 1))
    assert (lanes.pending, lanes.in_memory, lanes.spilled, len(lanes)) == (0, 0, 0, 0)
    if isinstance(spill, MemorySpill):
        assert len(spill) == 0


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed-{s}")
@pytest.mark.parametrize("lane_cap", [1, 3, 1000], ids=lambda c: f"cap-{c}")
def test_random_sequence_with_memory_spill(seed: int, lane_cap: int) -> None:
    spill = MemorySpill()
    check_random_sequence(Lanes(lane_cap=lane_cap, spill=spill), spill, seed)


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed-{s}")
def test_random_sequence_without_spill(seed: int) -> None:
    check_random_sequence(Lanes(lane_cap=2), None, seed)


@pytest.mark.parametrize("seed", range(3), ids=lambda s: f"seed-{s}")
def test_random_sequence_with_file_spill(seed: int, file_spill: FileSpill) -> None:
    check_random_sequence(Lanes(lane_cap=2, spill=file_spill), file_spill, seed)


# ---- spilling ------------------------------------------------------------------------------

def test_a_lane_over_its_cap_spills_and_comes_back_in_order(spill: SpillStore) -> None:
    lanes = Lanes(lane_cap=3, spill=spill)
    for n in range(1, 11):
        lanes.push(work("a", n))
    lanes.push(work("b", 11))
    assert (lanes.pending, lanes.in_memory, lanes.spilled) == (11, 4, 7)
    seen: list[int] = []
    while (take := lanes.take(max_users=1, max_actions=500)) is not None:
        for key, ls in parts(take):
            if key == "a":
                assert len(ls) <= 3
                seen.extend(ls)
        settle_all(lanes, take)
        assert lanes.in_memory + lanes.spilled == lanes.pending
    assert seen == list(range(1, 11))
    assert (lanes.pending, lanes.in_memory, lanes.spilled, len(lanes)) == (0, 0, 0, 0)


def test_without_spill_nothing_spills() -> None:
    lanes = Lanes(lane_cap=3)
    for n in range(1, 11):
        lanes.push(work("a", n))
    assert (lanes.in_memory, lanes.spilled) == (10, 0)
    assert parts(lanes.take(max_users=1, max_actions=500)) == [("a", list(range(1, 11)))]


def test_pushes_keep_spilling_while_older_items_wait_on_disk(spill: SpillStore) -> None:
    lanes = Lanes(lane_cap=2, spill=spill)
    for n in range(1, 6):  # 1 2 in memory; 3 4 5 spilled
        lanes.push(work("a", n))
    take = lanes.take(max_users=1, max_actions=1)
    assert parts(take) == [("a", [1])]
    assert take is not None
    settle_all(lanes, take)  # memory now holds only 2, yet 6 must queue behind 3 4 5
    lanes.push(work("a", 6))
    assert lanes.spilled == 4
    seen: list[int] = []
    while (take := lanes.take(max_users=1, max_actions=500)) is not None:
        seen.extend(lines(take.works))
        settle_all(lanes, take)
    assert seen == [2, 3, 4, 5, 6]


def test_kept_items_of_a_spilled_lane_stay_first(spill: SpillStore) -> None:
    lanes = Lanes(lane_cap=2, spill=spill)
    for n in range(1, 7):
        lanes.push(work("a", n))
    take = lanes.take(max_users=1, max_actions=500)
    assert take is not None
    [(lane, ws)] = take.parts
    assert lines(ws) == [1, 2]
    assert lanes.settle(lane, ws, ws[1:]) is False  # 1 waits for a retry
    lanes.release(lane)
    seen: list[int] = []
    while (take := lanes.take(max_users=1, max_actions=500)) is not None:
        seen.extend(lines(take.works))
        settle_all(lanes, take)
    assert seen == [1, 3, 4, 5, 6]


def test_one_busy_user_with_10000_items_stays_within_lane_cap(spill: SpillStore) -> None:
    cap = 16
    lanes = Lanes(lane_cap=cap, spill=spill)
    lanes.push(work("heavy", 1))
    first = lanes.take(max_users=50, max_actions=500)
    assert first is not None  # the heavy user is busy from here on
    for n in range(2, 10_001):
        lanes.push(work("heavy", n))
        assert lanes.in_memory <= cap
    lanes.push(work("light", 10_001))
    assert (lanes.pending, lanes.spilled) == (10_001, 10_001 - lanes.in_memory)
    # The user after it is not stalled.
    light = lanes.take(max_users=50, max_actions=500)
    assert parts(light) == [("light", [10_001])]
    assert light is not None
    settle_all(lanes, light)
    settle_all(lanes, first)
    seen = [1]
    while (take := lanes.take(max_users=50, max_actions=500)) is not None:
        assert [key for key, _ in parts(take)] == ["heavy"]
        seen.extend(lines(take.works))
        settle_all(lanes, take)
        assert lanes.in_memory <= cap
    assert seen == list(range(1, 10_001))
    assert (lanes.pending, lanes.in_memory, lanes.spilled, len(lanes)) == (0, 0, 0, 0)


# ---- FileSpill -----------------------------------------------------------------------------

def rich_work(user: str, line_no: int, **fields: object) -> Work:
    params = {
        "userId": user, "time": 1_700_000_000.5, "city": "Zürich", "locale": "ja_JP",
        "userAttributes": '{"név":"Ünïcødé","emoji":"🚀","cjk":"東京"}',
        "location": "47.37,8.54", "background": False, "timezoneOffsetSeconds": -18000,
    }
    record = {**params, "nested": {"list": [1, 2.5, None, "ø"]}}
    s = Session(f"in-{user}.ndjson", line_no, user, f"dev-{user}-Ω", orjson.dumps(params),
                orjson.dumps(record), params.get("time"))
    return Work(s, **fields)  # type: ignore[arg-type]


WORK_FIELDS = [
    {},
    {"attempts": 3},
    {"attempts": 2, "ambiguous": 1},
    {"resent": True},
    {"attempts": 4, "ambiguous": 4, "resent": True},
]


@pytest.mark.parametrize("fields", WORK_FIELDS,
                         ids=["fresh", "attempts", "ambiguous", "resent", "all"])
def test_file_spill_round_trips_work(fields: dict[str, object], file_spill: FileSpill) -> None:
    original = rich_work("ü-user", 7, **fields)
    file_spill.append("ü-user", original)
    [back] = file_spill.pop("ü-user", 5)
    assert back.session == original.session
    assert back.session.params["userAttributes"] == original.session.params["userAttributes"]
    assert (back.attempts, back.ambiguous, back.resent) == (
        original.attempts, original.ambiguous, original.resent)


def test_file_spill_keeps_chains_apart_and_in_order(file_spill: FileSpill) -> None:
    for n in range(1, 31):
        file_spill.append("even" if n % 2 == 0 else "odd", rich_work("x", n))
    assert lines(file_spill.pop("odd", 4)) == [1, 3, 5, 7]
    assert lines(file_spill.pop("even", 2)) == [2, 4]
    file_spill.append("odd", rich_work("x", 31))
    assert lines(file_spill.pop("odd", 100)) == [9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31]
    assert file_spill.pop("odd", 1) == []
    assert file_spill.pop("nobody", 3) == []
    assert lines(file_spill.pop("even", 100)) == list(range(6, 31, 2))


def spill_file_size(spill: FileSpill) -> int:
    # The file is unlinked at creation: its descriptor is the only way to look at it.
    return os.fstat(spill._fd).st_size


def test_file_spill_truncates_when_every_chain_is_empty(file_spill: FileSpill) -> None:
    for n in range(1, 11):
        file_spill.append("a", rich_work("a", n))
        file_spill.append("b", rich_work("b", n))
    assert spill_file_size(file_spill) > 0
    assert len(file_spill.pop("a", 100)) == 10
    assert spill_file_size(file_spill) > 0  # b still waits
    assert len(file_spill.pop("b", 9)) == 9
    assert spill_file_size(file_spill) > 0
    assert lines(file_spill.pop("b", 9)) == [10]
    assert spill_file_size(file_spill) == 0
    # It starts over cleanly after the truncation.
    file_spill.append("c", rich_work("c", 1))
    file_spill.append("c", rich_work("c", 2))
    assert lines(file_spill.pop("c", 5)) == [1, 2]
    assert spill_file_size(file_spill) == 0


def test_file_spill_leaves_no_file_behind(tmp_path: Path) -> None:
    spill = FileSpill(tmp_path)
    spill.append("a", rich_work("a", 1))
    assert list(tmp_path.iterdir()) == []
    spill.close()


def test_a_dropped_lane_comes_back_as_new_for_another_user() -> None:
    lanes = Lanes(lane_cap=4)
    lanes.push(work("a", 1))
    take = lanes.take(max_users=1, max_actions=1)
    assert take is not None
    (lane_a, ws), = take.parts
    lanes.done(lane_a, len(ws))
    assert len(lanes) == 0

    lanes.push(work("b", 2))
    lanes.push(work("b", 3))
    take = lanes.take(max_users=5, max_actions=5)
    assert take is not None
    (lane_b, ws), = take.parts
    assert lane_b is lane_a, "the dropped lane was reused"
    assert (lane_b.key, lane_b.busy, lane_b.spilled, lines(ws)) == ("b", True, 0, [2, 3])
    assert lanes.take(max_users=5, max_actions=5) is None
    lanes.done(lane_b, 2)
    assert (lanes.pending, lanes.in_memory, len(lanes)) == (0, 0, 0)
