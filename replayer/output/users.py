"""users.ndjson: one row per user, derived at the end of a run from results.ndjson and
failures.ndjson (the rows are the truth), in bounded memory whatever the number of users.

Rows are hash-partitioned by user into temporary files, each partition is aggregated on
its own, and the partitions' users are merged in the order of their first input line.
"""

from __future__ import annotations

import heapq
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from replayer.output.layout import FAILURES, RESULTS, USERS, USERS_PART
from replayer.output.user_rows import Place, UsersStats, str_or_none, user_doc
from replayer.source.read import display_name

# About this many bytes of rows per partition; its users take at most ~7x that in memory
# (one row per user), ~2x with a few rows each.
PARTITION_BYTES = 8 << 20
MAX_PARTITIONS = 256  # open files at once; a bigger run gets bigger partitions
_TMP_PREFIX = ".users-"  # temporary files in the output folder: .users-part-N.tmp, ...
SPILL_PREFIX = f"{_TMP_PREFIX}live-"  # a live tally's spills (output.live_users)
_BUFFER_BYTES = 1 << 16

# (pass, input file index, file name, line): a row's place in the input, comparable.
Position = tuple[int, int, str, int]
# A place as a UserSoFar keeps it: a Position, or one int that orders the same way
# (output.live_users packs its positions so, for less memory per user).
Where = Position | int


def input_order(inputs: Sequence[str]) -> dict[str, int]:
    """Each input's name (as rows name it) -> its index: rows of earlier inputs come first."""
    return {name: i for i, name in reversed(list(enumerate(display_name(p) for p in inputs)))}


def write_users(out_dir: Path, *, inputs: Sequence[str],
                partition_bytes: int = PARTITION_BYTES,
                live: Callable[[Path], UsersStats | None] | None = None) -> UsersStats:
    """Writes out_dir/users.ndjson from out_dir's results.ndjson and failures.ndjson.

    `inputs` are the run's input paths in order (rows' lines are ordered by them). The
    same rows give the same bytes, whatever their order. Temporary files are removed even
    on error; raises OSError when the folder cannot be read or written.
    """
    sources = [p for p in (out_dir / RESULTS, out_dir / FAILURES) if p.is_file()]
    total = sum(p.stat().st_size for p in sources)
    count = min(MAX_PARTITIONS, max(1, math.ceil(total / max(1, partition_bytes))))
    order = input_order(inputs)
    # left by a run killed while writing them (a live tally's spills are its own)
    _remove_temporaries(out_dir, spills=live is None)
    try:
        stats = Tally()
        tmp = out_dir / f"{_TMP_PREFIX}out.tmp"
        done = live(tmp) if live is not None else None
        if done is not None:  # kept as the rows were written (output.live_users)
            os.replace(tmp, out_dir / USERS)
            return done
        if count == 1:  # the rows fit one partition: no temporary files, one pass
            read = RowCounts()
            _aggregate_rows(_projected(sources, order, read), tmp, stats, final=True)
        else:
            read = _partition(sources, out_dir, count, order)
            sorted_parts = []
            for i in range(count):
                sorted_parts.append(out_dir / f"{_TMP_PREFIX}sorted-{i}.tmp")
                _aggregate(out_dir / f"{_TMP_PREFIX}part-{i}.tmp", sorted_parts[-1], stats)
            merge_sorted(sorted_parts, tmp)
        os.replace(tmp, out_dir / USERS)
    finally:
        _remove_temporaries(out_dir)
    return UsersStats(users=stats.users, fully_delivered=stats.fully,
                      partly_delivered=stats.partly, none_delivered=stats.none,
                      rows=read.rows, rows_without_user=read.without_user,
                      unreadable_rows=read.unreadable, partitions=count)


def write_part(out_dir: Path, live: Callable[[Path], UsersStats | None] | None) -> bool:
    """A worker's part of users.ndjson (USERS_PART in its folder) from its live tally `live`,
    for its parent to merge (output.live_users.merge_parts); False, and no part, without a
    tally or when it gave up: the parent then derives users.ndjson from the rows."""
    part, tmp = out_dir / USERS_PART, out_dir / f"{_TMP_PREFIX}worker-part.tmp"
    part.unlink(missing_ok=True)
    try:
        if live is None or live(tmp) is None:
            return False
        os.replace(tmp, part)
        return True
    finally:
        _remove_temporaries(out_dir)


# ---- pass 1: rows to partitions -------------------------------------------------------


@dataclass(slots=True)
class RowCounts:
    """Rows read, those naming no user, and those that could not be read."""

    rows: int = 0
    without_user: int = 0
    unreadable: int = 0


def _partition(sources: Sequence[Path], out_dir: Path, count: int,
               order: dict[str, int]) -> RowCounts:
    """Streams every row into the partition of its user (see `_projected`)."""
    read = RowCounts()
    with ExitStack() as stack:
        files: list[BinaryIO] = [
            stack.enter_context(open(out_dir / f"{_TMP_PREFIX}part-{i}.tmp", "wb",
                                     buffering=_BUFFER_BYTES))
            for i in range(count)]
        for projected in _projected(sources, order, read):
            i = zlib.crc32(projected[0].encode("utf-8", "surrogatepass")) % count
            files[i].write(orjson.dumps(projected) + b"\n")
    return read


def _projected(sources: Sequence[Path], order: dict[str, int],
               read: RowCounts) -> Iterator[list[Any]]:
    """Every row that names a user, projected to what pass 2 needs: [key, pass, file index,
    file, line, userId, deviceId, is result, status or kind, vars, variants]; `read`
    counts the rows, those without a user and those that cannot be read."""
    for source in sources:
        is_result = source.name == RESULTS
        with open(source, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                projected = _project(line, is_result=is_result, order=order)
                if projected is None:
                    read.unreadable += 1
                    continue
                read.rows += 1
                if projected[0] is None:
                    read.without_user += 1
                    continue
                yield projected


def _project(line: bytes, *, is_result: bool, order: dict[str, int]) -> list[Any] | None:
    """A row as pass 2 reads it ([None, ...] for a row without user); None if unreadable."""
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(row, dict):
        return None
    user_id, device_id, file, line_no, pass_no, what, vars, variants = row_fields(
        row, is_result=is_result)
    return [user_id or device_id, pass_no, order.get(file, len(order)), file, line_no,
            user_id, device_id, is_result, what, vars, variants]


RowFields = tuple[str | None, str | None, str, int, int, str, int, list[Any]]


def row_fields(row: dict[str, Any], *, is_result: bool) -> RowFields:
    """What users.ndjson takes from a results row (`is_result`) or a failures row: userId,
    deviceId, file, line, pass, status or kind, vars, variants. The one reading of a row,
    whether the rows are read at the end or a resume hands them to a live tally."""
    variants = row.get("variants")
    return (str_or_none(row.get("userId")), str_or_none(row.get("deviceId")),
            str(row.get("file")), _int(row.get("line")), _int(row.get("pass", 1)) or 1,
            str(row.get("status") if is_result else row.get("kind")), _int(row.get("vars")),
            variants if isinstance(variants, list) else [])


# ---- pass 2: one partition at a time ---------------------------------------------------


@dataclass(slots=True)
class Tally:
    """Users written, by how much of theirs was delivered."""

    users: int = 0
    fully: int = 0
    partly: int = 0
    none: int = 0

    def add_counts(self, records: int, delivered: int) -> None:
        """One user of `records` rows, `delivered` of them delivered."""
        self.users += 1
        if delivered == records:
            self.fully += 1
        elif delivered:
            self.partly += 1
        else:
            self.none += 1


class UserSoFar:
    """One user's rows so far; every choice depends on positions, never on row order.

    Lean on purpose (a partition can hold hundreds of thousands of users): the set of
    deviceIds and the failure counts exist only once they are needed. Positions are all
    Positions or all ints (see `Where`).
    """

    __slots__ = (
        "delivered",
        "device",
        "devices",
        "dry_run",
        "failed",
        "first",
        "has_user_id",
        "last",
        "records",
        "response",
    )

    def __init__(self, position: Where) -> None:
        self.first: Where = position
        self.last: Where = position
        self.has_user_id = False
        self.device: tuple[Where, str] | None = None  # the first deviceId, and where
        self.devices: set[str] | None = None  # once a second distinct deviceId is seen
        self.records = self.delivered = self.dry_run = 0
        self.failed: dict[str, int] | None = None
        self.response: tuple[Where, int, list[Any]] | None = None  # last delivered

    def add(self, p: list[Any], position: Where) -> None:
        """Counts one projected row (see `_partition`) found at `position`."""
        self.count(position, p[5] is not None, p[6], p[7], p[8], p[9], p[10])

    def count(self, position: Where, has_user_id: bool, device_id: str | None, result: bool,
              what: str, vars: int, variants: list[Any]) -> None:
        """Counts one row found at `position`: a result (`what` its status) or a failure
        (`what` its kind); `vars` and `variants` of a delivered one."""
        if position < self.first:  # type: ignore[operator]  # all ints or all Positions
            self.first = position
        elif position > self.last:  # type: ignore[operator]
            self.last = position
        if has_user_id:
            self.has_user_id = True
        if device_id is not None:
            device = self.device
            if device is None or device_id != device[1] or position < device[0]:  # type: ignore[operator]
                self._add_device(device_id, position)
        self.records += 1
        if not result:
            if self.failed is None:
                self.failed = {}
            self.failed[what] = self.failed.get(what, 0) + 1
        elif what == "delivered":
            self.delivered += 1
            response = self.response  # the common case first: a later line than the last
            if (response is None or position > response[0]  # type: ignore[operator]
                    or (position == response[0] and _later(position, vars, variants, response))):
                self.response = (position, vars, variants)
        else:
            self.dry_run += 1

    def _add_device(self, device_id: str, position: Where) -> None:
        if self.device is None:
            self.device = (position, device_id)
            return
        if self.devices is not None:
            self.devices.add(device_id)
        elif device_id != self.device[1]:
            self.devices = {self.device[1], device_id}
        self.device = min(self.device, (position, device_id))

    def doc(self, key: str, place: Callable[[Where], Place] | None = None) -> dict[str, Any]:
        """The user's users.ndjson row as written (`place` turns a position into its Place,
        if not a Position), as `UserRow.as_json` writes it, without making the UserRow."""
        place = place or _place
        device_ids = len(self.devices) if self.devices else int(self.device is not None)
        response = self.response
        return user_doc(key if self.has_user_id else None,
                        None if self.device is None else self.device[1], device_ids,
                        self.records, self.delivered, self.failed or {}, place(self.first),
                        place(self.last), None if response is None else response[1:],
                        self.dry_run)


def _place(position: Where) -> Place:
    assert isinstance(position, tuple)
    return Place(position[2], position[3])


def _later(position: Where, vars: int, variants: list[Any],
           than: tuple[Where, int, list[Any]]) -> bool:
    """Whether a delivered row comes after `than`; a tie (the same line twice) is broken
    by content, so that any order of the rows gives one answer."""
    if position != than[0]:
        return position > than[0]  # type: ignore[operator]
    return (vars, orjson.dumps(variants)) > (than[1], orjson.dumps(than[2]))


def _aggregate(part: Path, target: Path, tally: Tally) -> None:
    """Aggregates one partition file (then removes it, freeing its space at once)."""
    with open(part, "rb") as f:
        _aggregate_rows((orjson.loads(line) for line in f), target, tally, final=False)
    part.unlink()


def _aggregate_rows(rows: Iterable[list[Any]], target: Path, tally: Tally, *,
                    final: bool) -> None:
    """Aggregates projected rows per user and writes them (see `write_aggregated`)."""
    users: dict[str, UserSoFar] = {}
    files: dict[str, str] = {}  # one string per file name, not one per row kept
    for p in rows:
        position: Position = (p[1], p[2], files.setdefault(p[3], p[3]), p[4])
        user = users.get(p[0])
        if user is None:
            user = users[p[0]] = UserSoFar(position)
        user.add(p, position)
    write_aggregated(users, target, tally, final=final)


def write_aggregated(users: dict[str, UserSoFar], target: Path, tally: Tally, *,
                     final: bool, place: Callable[[Where], Place] | None = None,
                     header: bytes = b"") -> None:
    """Writes users to `target` in the order of their first positions: as users.ndjson rows
    (`final`), or as [first position, row] for `merge_sorted`; after `header`, if any."""
    with open(target, "wb", buffering=_BUFFER_BYTES) as out:
        out.write(header)
        for key, user in sorted(users.items(),
                                key=lambda item: (item[1].first, item[0])):
            tally.add_counts(user.records, user.delivered)
            first = user.first
            doc = user.doc(key, place)
            at = [*first, key] if isinstance(first, tuple) else [first, key]
            out.write(orjson.dumps(doc if final else [at, doc]) + b"\n")


def merge_sorted(parts: Sequence[Path], target: Path, *, keep_at: bool = False,
                 header: bytes = b"") -> None:
    """Merges partitions sorted by `write_aggregated` into one file of user rows, first
    positions in order (with `keep_at`, still as [first position, row]; after `header`)."""
    with ExitStack() as stack:
        streams = [sorted_rows(stack.enter_context(open(p, "rb"))) for p in parts]
        merged = heapq.merge(*streams, key=lambda item: item[0])
        with open(target, "wb", buffering=_BUFFER_BYTES) as out:
            out.write(header)
            out.writelines(orjson.dumps(item if keep_at else item[1]) + b"\n"
                           for item in merged)


def sorted_rows(f: BinaryIO) -> Iterator[list[Any]]:
    for line in f:
        yield orjson.loads(line)  # [[pass, file index, file, line, key], row]


def _remove_temporaries(out_dir: Path, *, spills: bool = True) -> None:
    """Removes the temporary files of users.ndjson (with `spills`, a live tally's too)."""
    for path in out_dir.glob(f"{_TMP_PREFIX}*.tmp"):
        if spills or not path.name.startswith(SPILL_PREFIX):
            path.unlink(missing_ok=True)



def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
