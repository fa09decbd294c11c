"""users.ndjson: per-user rows derived from results.ndjson and failures.ndjson."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from replayer.emulator import FaultConfig
from replayer.engine.control import RunControl
from replayer.engine.replay import replay
from replayer.output import live_users
from replayer.output import users as users_module
from replayer.output.layout import FAILURES, RESULTS, USERS, USERS_PART, WORKERS_DIR
from replayer.output.user_rows import LastResponse, Place, UserRow, read_users
from replayer.output.users import write_part, write_users
from replayer.source.shard import Shard
from replayer.workers import parent
from replayer.workers.parent import run_workers
from tests.conftest import REPO, StartEmulator, input_records, read_rows, settings_for

A, B = "a.ndjson", "b.ndjson"


def ok(file: str, line: int, user: str | None, device: str | None = None, *,
       vars: int = 3, variants: list[Any] | None = None, status: str = "delivered",
       **extra: Any) -> dict[str, Any]:
    return {"file": file, "line": line, "userId": user, "deviceId": device,
            "status": status, "http_status": 200, "attempts": 1, "latency_ms": 1.5,
            "vars": vars, "variants": variants or [], **extra}


def fail(file: str, line: int, user: str | None, device: str | None = None,
         kind: str = "timeout") -> dict[str, Any]:
    return {"file": file, "line": line, "userId": user, "deviceId": device, "kind": kind,
            "message": f"{kind} here", "http_status": None, "attempts": 2}


def write_rows(out: Path, rows: list[dict[str, Any]], *, torn: bytes = b"") -> Path:
    """Writes result rows to results.ndjson and failure rows to failures.ndjson."""
    out.mkdir(parents=True, exist_ok=True)
    for name, part in ((RESULTS, [r for r in rows if "status" in r]),
                       (FAILURES, [r for r in rows if "kind" in r])):
        (out / name).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in part) + torn)
    return out


def users_of(out: Path, rows: list[dict[str, Any]], *, inputs: tuple[str, ...] = (A, B),
             **kw: Any) -> list[dict[str, Any]]:
    write_rows(out, rows)
    write_users(out, inputs=inputs, **kw)
    return read_rows(out / USERS)


def user(user_id: str | None, device_id: str | None, *, records: int, delivered: int,
         first: tuple[str, int], last: tuple[str, int], failed: dict[str, int] | None = None,
         response: tuple[int, list[Any]] | None = None, device_ids: int | None = None,
         **extra: Any) -> dict[str, Any]:
    """A users.ndjson row as it should be written."""
    return {
        "userId": user_id, "deviceId": device_id,
        "device_ids": (device_id is not None) if device_ids is None else device_ids,
        "records": records, "delivered": delivered, "failed": failed or {},
        "first": {"file": first[0], "line": first[1]},
        "last": {"file": last[0], "line": last[1]},
        "last_response": None if response is None else
        {"vars": response[0], "variants": response[1]},
        **extra,
    }


# ---- the aggregation, by table --------------------------------------------------------

CASES: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    ("a_user_across_two_files",
     [ok(B, 1, "u1", "d1", variants=[7]), ok(A, 5, "u1", "d1", variants=[5])],
     [user("u1", "d1", records=2, delivered=2, first=(A, 5), last=(B, 1),
           response=(3, [7]))]),
    ("userid_and_deviceid_lanes",
     [ok(A, 1, "u1", "d1"), ok(A, 2, None, "d2"), fail(A, 3, None, "d2", "rejected")],
     [user("u1", "d1", records=1, delivered=1, first=(A, 1), last=(A, 1), response=(3, [])),
      user(None, "d2", records=2, delivered=1, first=(A, 2), last=(A, 3),
           failed={"rejected": 1}, response=(3, []))]),
    ("a_deviceid_alone_is_the_profile_of_that_userid",  # Leanplum's rule, as the emulator's
     [ok(A, 1, "x", None), ok(A, 2, None, "x")],
     [user("x", "x", records=2, delivered=2, first=(A, 1), last=(A, 2), response=(3, []))]),
    ("several_device_ids_keep_the_first_by_line",
     [ok(A, 3, "u1", "d-late"), ok(A, 1, "u1", "d-early"), ok(A, 2, "u1", None),
      ok(A, 4, "u1", "d-late")],
     [user("u1", "d-early", records=4, delivered=4, first=(A, 1), last=(A, 4),
           response=(3, []), device_ids=2)]),
    ("delivered_after_failures",
     [fail(A, 1, "u1", kind="timeout"), fail(A, 2, "u1", kind="server_error"),
      ok(A, 3, "u1", vars=2, variants=[1001, 2002]), fail(A, 4, "u1", kind="timeout")],
     [user("u1", None, records=4, delivered=1, first=(A, 1), last=(A, 4),
           failed={"server_error": 1, "timeout": 2}, response=(2, [1001, 2002]))]),
    ("the_last_delivered_row_by_line_not_by_row_order",
     [ok(A, 9, "u1", vars=1, variants=[9]), ok(A, 2, "u1", vars=5, variants=[2])],
     [user("u1", None, records=2, delivered=2, first=(A, 2), last=(A, 9),
           response=(1, [9]))]),
    ("nothing_delivered_has_no_last_response",
     [fail(A, 1, "u1", kind="blocked"), fail(B, 1, "u1", kind="blocked")],
     [user("u1", None, records=2, delivered=0, first=(A, 1), last=(B, 1),
           failed={"blocked": 2})]),
    ("invalid_lines_belong_to_no_user",
     [fail(A, 1, None, None, "invalid_json"), fail(A, 2, None, None, "not_an_object"),
      fail(A, 3, "u1", None, "unknown_field")],
     [user("u1", None, records=1, delivered=0, first=(A, 3), last=(A, 3),
           failed={"unknown_field": 1})]),
    ("dry_run_rows_are_not_delivered",
     [ok(A, 1, "u1", status="dry_run", vars=0)],
     [user("u1", None, records=1, delivered=0, first=(A, 1), last=(A, 1), dry_run=1)]),
    ("users_in_the_order_of_their_first_line",
     [ok(B, 1, "early-in-b"), ok(A, 7, "late-in-a"), ok(A, 2, "early-in-a"),
      ok(A, 1, "first-in-a")],
     [user("first-in-a", None, records=1, delivered=1, first=(A, 1), last=(A, 1),
           response=(3, [])),
      user("early-in-a", None, records=1, delivered=1, first=(A, 2), last=(A, 2),
           response=(3, [])),
      user("late-in-a", None, records=1, delivered=1, first=(A, 7), last=(A, 7),
           response=(3, [])),
      user("early-in-b", None, records=1, delivered=1, first=(B, 1), last=(B, 1),
           response=(3, []))]),
    ("a_loop_pass_comes_after_the_first_pass",
     [ok(A, 1, "u1-pass2", **{"pass": 2}), ok(B, 9, "u9")],
     [user("u9", None, records=1, delivered=1, first=(B, 9), last=(B, 9), response=(3, [])),
      user("u1-pass2", None, records=1, delivered=1, first=(A, 1), last=(A, 1),
           response=(3, []))]),
]


@pytest.mark.parametrize(("rows", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_users_are_aggregated_from_the_rows(
    tmp_path: Path, rows: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> None:
    assert users_of(tmp_path / "out", rows) == expected


def test_input_order_decides_first_and_last(tmp_path: Path) -> None:
    rows = [ok(A, 5, "u1"), ok(B, 1, "u1")]
    forward = users_of(tmp_path / "f", rows, inputs=(A, B))
    backward = users_of(tmp_path / "b", rows, inputs=(B, A))
    unknown = users_of(tmp_path / "u", rows, inputs=())  # files not named: by name
    assert (forward[0]["first"], forward[0]["last"]) == ({"file": A, "line": 5},
                                                         {"file": B, "line": 1})
    assert (backward[0]["first"], backward[0]["last"]) == ({"file": B, "line": 1},
                                                           {"file": A, "line": 5})
    assert unknown == forward


def many_rows(n_users: int = 300, seed: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(n_users * 4):
        file, line = (A, i + 1) if i % 2 else (B, i + 1)
        uid = f"u{rng.randrange(n_users)}"
        device = rng.choice([None, f"d{rng.randrange(3)}"])
        if rng.random() < 0.3:
            rows.append(fail(file, line, uid, device, rng.choice(["timeout", "rejected"])))
        elif rng.random() < 0.05:
            rows.append(fail(file, line, None, None, "invalid_json"))
        else:
            rows.append(ok(file, line, uid, device, vars=rng.randrange(5),
                           variants=[rng.randrange(9)]))
    return rows


def test_the_same_rows_give_the_same_bytes_in_any_order_and_partitioning(
    tmp_path: Path
) -> None:
    rows = many_rows()
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)

    one = write_users(write_rows(tmp_path / "one", rows), inputs=(A, B))
    many = write_users(write_rows(tmp_path / "many", shuffled), inputs=(A, B),
                       partition_bytes=4096)

    assert one.partitions == 1 and many.partitions > 4
    assert (tmp_path / "many" / USERS).read_bytes() == (tmp_path / "one" / USERS).read_bytes()
    assert one == dataclasses.replace(many, partitions=1)
    written = read_rows(tmp_path / "one" / USERS)
    assert one.users == len(written) == len({r["userId"] for r in rows if r["userId"]})
    assert sum(u["records"] for u in written) == one.rows - one.rows_without_user
    assert one.fully_delivered + one.partly_delivered + one.none_delivered == one.users
    assert one.fully_delivered == sum(u["delivered"] == u["records"] for u in written)
    firsts = [(u["first"]["file"] != A, u["first"]["line"]) for u in written]
    assert firsts == sorted(firsts), "users come in the order of their first line"
    assert not list((tmp_path / "many").glob(".users-*")), "temporary files are removed"


def test_stats_count_rows_without_user_and_unreadable_rows(tmp_path: Path) -> None:
    out = write_rows(tmp_path / "out", [ok(A, 1, "u1"), fail(A, 2, "u2", kind="rejected"),
                                        fail(A, 3, None, None, "invalid_json")],
                     torn=b'{"file": "a.ndjson", "li')

    stats = write_users(out, inputs=(A,))

    assert (stats.users, stats.fully_delivered, stats.partly_delivered,
            stats.none_delivered) == (2, 1, 0, 1)
    assert (stats.rows, stats.rows_without_user, stats.unreadable_rows) == (3, 1, 2)


def test_a_folder_without_rows_gets_an_empty_file(tmp_path: Path) -> None:
    stats = write_users(tmp_path, inputs=(A,))
    assert (tmp_path / USERS).read_bytes() == b""
    assert stats.users == stats.rows == 0 and stats.partitions == 1


def test_temporary_files_are_removed_on_error_and_the_old_file_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = write_rows(tmp_path / "out", many_rows(50))
    (out / USERS).write_bytes(b"old\n")
    (out / ".users-part-7.tmp").write_bytes(b"left by a killed run")

    def disk_full(parts: Any, target: Path) -> None:
        target.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(users_module, "merge_sorted", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_users(out, inputs=(A, B), partition_bytes=2048)

    assert sorted(p.name for p in out.iterdir()) == [FAILURES, RESULTS, USERS]
    assert (out / USERS).read_bytes() == b"old\n"
    monkeypatch.undo()
    write_users(out, inputs=(A, B))
    assert not list(out.glob(".users-*")), "a later run removes what a killed one left"


def test_rows_read_back_as_values(tmp_path: Path) -> None:
    users_of(tmp_path, [fail(A, 1, "u1", "d1", "timeout"), ok(A, 2, "u1", "d1", vars=2,
                                                              variants=[4, "x"])])
    (tmp_path / USERS).write_bytes((tmp_path / USERS).read_bytes() + b'{"userId": 1}\n[]\n')

    rows = list(read_users(tmp_path / USERS))

    assert rows == [UserRow(user_id="u1", device_id="d1", device_ids=1, records=2,
                            delivered=1, failed={"timeout": 1}, first=Place(A, 1),
                            last=Place(A, 2), last_response=LastResponse(2, (4, "x"))),
                    None, None]
    assert rows[0] is not None and (rows[0].key, rows[0].failures) == ("u1", 1)


# ---- end to end: a replay into the emulator ------------------------------------------

SAMPLE = REPO / "samples" / "sessions.ndjson"


def emulator_variants(key: str) -> list[int]:
    """The variant ids the emulator answers `key` with (fixed per user: see emulator.app)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return [(i + 1) * 1000 + digest[i + 1] for i in range(int.from_bytes(digest, "big") % 3)]


async def test_users_of_a_replay_match_what_the_emulator_received(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    keys = Counter(rec.get("userId") or rec.get("deviceId")
                   for _, rec in input_records(SAMPLE))
    blocked = sorted(k for k in keys if k)[:2]  # every record of these two users fails
    emulator = await start_emulator(blocked_users=frozenset(blocked),
                                    faults=FaultConfig(status_503=0.3), seed=4)
    out = tmp_path / "out"
    out.mkdir()
    await replay(settings_for(emulator.url, max_attempts=1, batch=False), [str(SAMPLE)], out,
                 control=RunControl(), rng=random.Random(7))

    stats = write_users(out, inputs=[str(SAMPLE)])

    state = await emulator.state()
    written = {u["userId"] or u["deviceId"]: u for u in read_rows(out / USERS)}
    received = {key: len(entries) for key, entries in state["users"].items()}
    assert {k: u["delivered"] for k, u in written.items() if u["delivered"]} == received
    failures: dict[str, Counter[str]] = defaultdict(Counter)
    for row in read_rows(out / FAILURES):
        if key := row["userId"] or row["deviceId"]:
            failures[key][row["kind"]] += 1
    assert {k: u["failed"] for k, u in written.items() if u["failed"]} == failures
    for key in blocked:  # refused by the server, or failed on a 503 first
        assert written[key]["delivered"] == 0 and "blocked" in written[key]["failed"]
    assert {k for k, u in failures.items() if "server_error" in u} - set(blocked), \
        "some records failed with the 503s too"
    rows_of = Counter(row["userId"] or row["deviceId"]
                      for name in (RESULTS, FAILURES) for row in read_rows(out / name))
    del rows_of[None]  # lines that did not parse name no user
    assert {k: u["records"] for k, u in written.items()} == rows_of
    for key, u in written.items():
        assert u["records"] == u["delivered"] + sum(u["failed"].values())
        if u["delivered"]:
            assert u["last_response"] == {"vars": 3, "variants": emulator_variants(key)}
        else:
            assert u["last_response"] is None
    assert stats.users == len(written)
    assert stats.none_delivered >= len(blocked) and stats.partly_delivered > 0
    assert stats.rows_without_user >= 1, "the sample has a line that is not JSON"


async def test_a_run_with_workers_gives_the_users_of_a_single_run(
    start_emulator: StartEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = await start_emulator()
    settings = settings_for(emulator.url, batch=False)
    single, split = tmp_path / "single", tmp_path / "split"
    single.mkdir()
    split.mkdir()
    await replay(settings, [str(SAMPLE)], single, control=RunControl(), rng=random.Random(7))
    merged: list[Any] = []

    def merge_parts(*args: Any, **kw: Any) -> Any:
        merged.append(live_users.merge_parts(*args, **kw))
        return merged[-1]

    monkeypatch.setattr(parent, "merge_parts", merge_parts)
    await run_workers(settings, [str(SAMPLE)], split, 2, control=RunControl(),
                      resume_command=None)

    # The parent merged the workers' parts (no row read again) ...
    assert len(merged) == 1 and merged[0] is not None and merged[0].users > 50
    assert not list((split / WORKERS_DIR).glob(f"*/{USERS_PART}")), "the parts are removed"
    assert (split / USERS).read_bytes() == (single / USERS).read_bytes()
    # ... into the bytes the rows give
    write_users(split, inputs=[str(SAMPLE)])
    assert (split / USERS).read_bytes() == (single / USERS).read_bytes()
    assert len(read_rows(single / USERS)) > 50


@pytest.mark.parametrize("shard", ["1/2", "2/3"])
async def test_the_workers_of_a_shard_merge_their_users_too(
    start_emulator: StartEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shard: str
) -> None:
    # Workers of a --shard split that shard's users: a user is still one worker's.
    emulator = await start_emulator()
    merged: list[Any] = []

    def merge_parts(*args: Any, **kw: Any) -> Any:
        merged.append(live_users.merge_parts(*args, **kw))
        return merged[-1]

    monkeypatch.setattr(parent, "merge_parts", merge_parts)
    out = tmp_path / "out"
    out.mkdir()
    await run_workers(settings_for(emulator.url, shard=shard), [str(SAMPLE)], out, 3,
                      control=RunControl(), resume_command=None)
    live = (out / USERS).read_bytes()

    assert len(merged) == 1 and merged[0] is not None and merged[0].users > 10
    write_users(out, inputs=[str(SAMPLE)])
    assert (out / USERS).read_bytes() == live


@pytest.mark.parametrize("max_users", [None, 4], ids=["in_memory", "spilled"])
async def test_users_kept_live_equal_users_derived_from_the_rows(
    start_emulator: StartEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    max_users: int | None
) -> None:
    # A fresh run writes users.ndjson from tallies kept as rows were written (spilled to
    # the folder past a number of users); the end of a resume derives it from the rows.
    # Both ways must give the same bytes.
    if max_users is not None:
        monkeypatch.setattr(live_users, "MAX_LIVE_USERS", max_users)
    emulator = await start_emulator(blocked_users=frozenset({"u000003"}),
                                    faults=FaultConfig(status_503=0.2), seed=2)
    out = tmp_path / "out"
    out.mkdir()
    await replay(settings_for(emulator.url, max_attempts=2), [str(SAMPLE)], out,
                 control=RunControl(), rng=random.Random(3))
    live = (out / USERS).read_bytes()
    assert live.count(b"\n") > 10
    assert not list(out.glob(".users-*")), "spills are removed"
    write_users(out, inputs=[str(SAMPLE)])
    assert (out / USERS).read_bytes() == live


def live_users_of(rows: list[dict[str, Any]], spill_dir: Path, *,
                  inputs: tuple[str, ...] = (A, B), **kw: Any) -> live_users.LiveUsers:
    """A live tally fed `rows` as the Finisher would feed them."""
    spill_dir.mkdir(parents=True, exist_ok=True)
    live = live_users.LiveUsers(inputs, spill_dir=spill_dir, **kw)
    for r in rows:
        result = "status" in r
        live.row(r["userId"], r["deviceId"], r["file"], r["line"], r.get("pass", 1),
                 result=result, what=r["status"] if result else r["kind"],
                 vars=r.get("vars", 0), variants=r.get("variants"))
    return live


RESUMED = [  # a line sent again after a kill: two rows, the tie broken by content
    ok(A, 3, "u1", "d1", vars=1, variants=[1], possible_duplicate=True),
    ok(A, 3, "u1", "d1", vars=2, variants=[2]), fail(A, 4, "u1", "d2", "timeout"),
    ok(B, 1, "u2", None, **{"pass": 2}),
]


@pytest.mark.parametrize("max_users", [1_000_000, 1, 7], ids=["memory", "spill_1", "spill_7"])
@pytest.mark.parametrize(("name", "rows"),
                         [(c[0], c[1]) for c in CASES] + [("resumed", RESUMED),
                                                          ("many", many_rows())],
                         ids=[c[0] for c in CASES] + ["resumed", "many"])
def test_live_tallies_write_the_bytes_derived_from_the_same_rows(
    tmp_path: Path, name: str, rows: list[dict[str, Any]], max_users: int
) -> None:
    shuffled = rows[:]
    random.Random(2).shuffle(shuffled)  # retries finish records out of input order
    derived = write_users(write_rows(tmp_path / "rows", rows), inputs=(A, B))
    live = live_users_of(shuffled, tmp_path / "live", max_users=max_users,
                         partitions=3, partition_bytes=512)

    stats = live.write(tmp_path / "live" / USERS)

    assert stats is not None and not live.gave_up
    assert (tmp_path / "live" / USERS).read_bytes() == (tmp_path / "rows" / USERS).read_bytes()
    assert dataclasses.replace(stats, partitions=0) == dataclasses.replace(derived,
                                                                           partitions=0)
    assert (stats.partitions > 0) == (max_users < derived.users)
    assert [p.name for p in (tmp_path / "live").iterdir()] == [USERS], "spills are removed"


def test_a_live_tally_of_workers_rows_gives_the_users_of_the_merge(tmp_path: Path) -> None:
    # The rows of workers, merged: each worker's rows stay together, so their order is
    # not the input's; the tally does not depend on it.
    rows = many_rows(200, seed=9)
    by_worker = [r for r in rows if r["line"] % 2] + [r for r in rows if not r["line"] % 2]
    write_users(write_rows(tmp_path / "rows", rows), inputs=(A, B))
    live = live_users_of(by_worker, tmp_path / "live", max_users=16, partitions=2,
                         partition_bytes=1024)
    live.write(tmp_path / "live" / USERS)
    assert (tmp_path / "live" / USERS).read_bytes() == (tmp_path / "rows" / USERS).read_bytes()


def test_a_live_tally_without_a_folder_or_of_unknown_files_gives_up(tmp_path: Path) -> None:
    # It gives up (and the end derives from the rows) only where it cannot be exact in
    # bounded memory: no folder to spill to, or two files that are not the inputs.
    no_folder = live_users.LiveUsers([str(SAMPLE)], max_users=3)
    for n in range(5):
        no_folder.row(f"user{n}", None, str(SAMPLE), n + 1, 1, result=True, what="delivered")
    assert no_folder.gave_up and no_folder.write(tmp_path / "x") is None
    rows = [ok(A, 5, "u1"), ok(B, 1, "u1")]
    assert live_users_of(rows, tmp_path / "two", inputs=()).write(tmp_path / "y") is None
    write_users(write_rows(tmp_path / "one", rows[:1]), inputs=())
    one = live_users_of(rows[:1], tmp_path / "one-live", inputs=())
    assert one.write(tmp_path / "one-live" / USERS) is not None
    assert (tmp_path / "one-live" / USERS).read_bytes() == (tmp_path / "one" / USERS).read_bytes()


def user_key(row: dict[str, Any]) -> str | None:
    """The user a row counts for in users.ndjson: its userId, else its deviceId (strings)."""
    for name in ("userId", "deviceId"):
        if type(row[name]) is str and row[name]:
            return str(row[name])
    return None


def worker_parts(rows: list[dict[str, Any]], folder: Path, count: int,
                 **kw: Any) -> list[Path]:
    """Each of `count` workers' part of users.ndjson, of the rows of its users (the rows
    of no user go to worker 0, as the lines that name none do)."""
    parts = []
    for i in range(count):
        shard = Shard(i, count)
        mine = [r for r in rows if (shard.holds_key(k) if (k := user_key(r)) else i == 0)]
        random.Random(i).shuffle(mine)
        live = live_users_of(mine, folder / str(i), owns=shard.holds_key, **kw)
        assert write_part(folder / str(i), functools.partial(live.write, part=True))
        parts.append(folder / str(i) / USERS_PART)
    return parts


@pytest.mark.parametrize("max_users", [1_000_000, 3], ids=["memory", "spilled"])
@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize(("name", "rows"),
                         [(c[0], c[1]) for c in CASES] + [("resumed", RESUMED),
                                                          ("many", many_rows())],
                         ids=[c[0] for c in CASES] + ["resumed", "many"])
def test_workers_parts_merge_to_the_bytes_derived_from_the_same_rows(
    tmp_path: Path, name: str, rows: list[dict[str, Any]], count: int, max_users: int
) -> None:
    derived = write_users(write_rows(tmp_path / "rows", rows), inputs=(A, B))
    parts = worker_parts(rows, tmp_path / "workers", count, max_users=max_users,
                         partitions=2, partition_bytes=512)

    stats = live_users.merge_parts(parts, tmp_path / USERS, rows=len(rows))

    assert stats is not None
    assert (tmp_path / USERS).read_bytes() == (tmp_path / "rows" / USERS).read_bytes()
    assert dataclasses.replace(stats, partitions=0) == dataclasses.replace(derived,
                                                                           partitions=0)
    for i in range(count):  # nothing but the part is left in a worker's folder
        assert [p.name for p in (tmp_path / "workers" / str(i)).iterdir()] == [USERS_PART]


@pytest.mark.parametrize("max_users", [1_000, 1], ids=["memory", "spilled"])
def test_a_user_tallied_by_two_workers_is_not_merged(tmp_path: Path, max_users: int) -> None:
    # An invalid line goes to the worker of its userId, but its row counts for its
    # deviceId when the userId was not valid: that user may be another worker's.
    theirs = next(f"d{n}" for n in range(100) if Shard(1, 2).holds_key(f"d{n}"))
    mine = next(f"u{n}" for n in range(100) if Shard(0, 2).holds_key(f"u{n}"))
    invalid = fail(A, 2, None, theirs, "id_too_long")  # its line: worker 0's (by its userId)
    alone = [ok(A, 1, mine), invalid, ok(A, 3, mine)]
    both = [*alone, ok(A, 4, None, theirs)]  # ... and a line of the deviceId alone: worker 1's

    def parts_of(rows: list[dict[str, Any]], folder: Path) -> list[Path]:
        split = [[r for r in rows if r is invalid or r["userId"] == mine],
                 [r for r in rows if r is not invalid and r["userId"] != mine]]
        for i, share in enumerate(split):
            live = live_users_of(share, folder / str(i), owns=Shard(i, 2).holds_key,
                                 max_users=max_users)
            assert write_part(folder / str(i), functools.partial(live.write, part=True))
        return [folder / str(i) / USERS_PART for i in range(2)]

    # A user in one part is merged as it is: the bytes the rows give.
    write_users(write_rows(tmp_path / "rows", alone), inputs=(A, B))
    assert live_users.merge_parts(parts_of(alone, tmp_path / "alone"), tmp_path / USERS,
                                  rows=len(alone)) is not None
    assert (tmp_path / USERS).read_bytes() == (tmp_path / "rows" / USERS).read_bytes()
    # One in two parts cannot be: the parent derives users.ndjson from the rows instead.
    assert live_users.merge_parts(parts_of(both, tmp_path / "both"), tmp_path / USERS,
                                  rows=len(both)) is None
    assert not write_part(tmp_path, None)


def test_a_worker_with_too_many_other_workers_users_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The list of users that are not its own stays bounded: past it, no part (derive).
    monkeypatch.setattr(live_users, "MAX_FOREIGN", 3)
    theirs = [f"d{n}" for n in range(200) if Shard(1, 2).holds_key(f"d{n}")][:5]
    rows = [fail(A, n + 1, None, key, "id_too_long") for n, key in enumerate(theirs)]
    assert live_users_of(rows[:3], tmp_path / "three", owns=Shard(0, 2).holds_key).write(
        tmp_path / "three" / USERS_PART, part=True) is not None
    live = live_users_of(rows, tmp_path / "five", owns=Shard(0, 2).holds_key)
    assert live.gave_up and live.write(tmp_path / "five" / USERS_PART, part=True) is None


def test_parts_that_do_not_count_the_rows_or_are_no_parts_are_not_merged(
    tmp_path: Path
) -> None:
    rows = many_rows(20, seed=3)
    parts = worker_parts(rows, tmp_path / "workers", 2)
    assert live_users.merge_parts(parts, tmp_path / USERS, rows=len(rows) + 1) is None
    assert live_users.merge_parts(parts, tmp_path / USERS, rows=len(rows)) is not None
    other = len(rows) - orjson.loads(parts[0].read_bytes().split(b"\n")[0])["rows"]
    for damage in (b"", b"not json\n", b'{"rows": 3}\n',
                   b'{"rows": %d, "rows_without_user": 0, "foreign": []}\n[1]\n' % other):
        parts[1].write_bytes(damage)
        assert live_users.merge_parts(parts, tmp_path / USERS, rows=len(rows)) is None, damage
