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
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from replayer.output.layout import FAILURES, RESULTS, USERS
from replayer.source.read import display_name

# About this many bytes of rows per partition; its users take at most ~7x that in memory
# (one row per user), ~2x with a few rows each.
PARTITION_BYTES = 8 << 20
MAX_PARTITIONS = 256  # open files at once; a bigger run gets bigger partitions
_TMP_PREFIX = ".users-"  # temporary files in the output folder: .users-part-N.tmp, ...
_BUFFER_BYTES = 1 << 16

# (pass, input file index, file name, line): a row's place in the input, comparable.
Position = tuple[int, int, str, int]


@dataclass(frozen=True, slots=True)
class Place:
    """Where a line is: its file (as rows name it) and its line number (from 1)."""

    file: str
    line: int


@dataclass(frozen=True, slots=True)
class LastResponse:
    """What the user's last delivered record got back: how many vars, which variant ids."""

    vars: int
    variants: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class UserRow:
    """One row of users.ndjson: a user (userId, else deviceId: Leanplum's profile rule).

    `device_id` is the first deviceId of the user's lines; `device_ids` counts the distinct
    ones. `failed` is {kind: records}; `last_response` is None when nothing was delivered.
    """

    user_id: str | None
    device_id: str | None
    device_ids: int
    records: int
    delivered: int
    failed: dict[str, int]
    first: Place
    last: Place
    last_response: LastResponse | None
    dry_run: int = 0  # records of a --dry-run (nothing sent)

    @property
    def key(self) -> str:
        """The id the user's profile goes by: userId, else deviceId."""
        return self.user_id or self.device_id or ""

    @property
    def failures(self) -> int:
        """Records of this user that were not delivered, all kinds together."""
        return sum(self.failed.values())

    def as_json(self) -> dict[str, Any]:
        """The row as written to users.ndjson (keys in a fixed order)."""
        doc: dict[str, Any] = {
            "userId": self.user_id, "deviceId": self.device_id, "device_ids": self.device_ids,
            "records": self.records, "delivered": self.delivered,
            "failed": dict(sorted(self.failed.items())),
            "first": {"file": self.first.file, "line": self.first.line},
            "last": {"file": self.last.file, "line": self.last.line},
            "last_response": None if self.last_response is None else {
                "vars": self.last_response.vars,
                "variants": list(self.last_response.variants)},
        }
        if self.dry_run:
            doc["dry_run"] = self.dry_run
        return doc

    @classmethod
    def of_json(cls, doc: Any) -> UserRow | None:
        """A row read back from users.ndjson; None when it is not one."""
        if not isinstance(doc, dict):
            return None
        try:
            response = doc["last_response"]
            return cls(
                user_id=_str_or_none(doc["userId"]), device_id=_str_or_none(doc["deviceId"]),
                device_ids=int(doc["device_ids"]), records=int(doc["records"]),
                delivered=int(doc["delivered"]),
                failed={str(k): int(v) for k, v in dict(doc["failed"]).items()},
                first=Place(str(doc["first"]["file"]), int(doc["first"]["line"])),
                last=Place(str(doc["last"]["file"]), int(doc["last"]["line"])),
                last_response=None if response is None else LastResponse(
                    int(response["vars"]), tuple(response["variants"])),
                dry_run=int(doc.get("dry_run", 0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class UsersStats:
    """What `write_users` did: users by how much of theirs was delivered, and rows read."""

    users: int = 0
    fully_delivered: int = 0  # every record of the user delivered
    partly_delivered: int = 0
    none_delivered: int = 0  # not one record delivered (every user of a --dry-run)
    rows: int = 0  # rows read from results.ndjson and failures.ndjson
    rows_without_user: int = 0  # neither userId nor deviceId (lines that did not parse)
    unreadable_rows: int = 0  # not a JSON object (e.g. a line torn by a kill)
    partitions: int = 0


def read_users(path: Path) -> Iterator[UserRow | None]:
    """Each non-blank line of users.ndjson as a row, or None when it is not one."""
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                try:
                    yield UserRow.of_json(orjson.loads(line))
                except orjson.JSONDecodeError:
                    yield None


def write_users(out_dir: Path, *, inputs: Sequence[str],
                partition_bytes: int = PARTITION_BYTES) -> UsersStats:
    """Writes out_dir/users.ndjson from out_dir's results.ndjson and failures.ndjson.

    `inputs` are the run's input paths in order (rows' lines are ordered by them). The
    same rows give the same bytes, whatever their order. Temporary files are removed even
    on error; raises OSError when the folder cannot be read or written.
    """
    sources = [p for p in (out_dir / RESULTS, out_dir / FAILURES) if p.is_file()]
    total = sum(p.stat().st_size for p in sources)
    count = min(MAX_PARTITIONS, max(1, math.ceil(total / max(1, partition_bytes))))
    order = {name: i for i, name in reversed(list(enumerate(display_name(p) for p in inputs)))}
    _remove_temporaries(out_dir)  # left by a run killed while writing them
    try:
        read = _partition(sources, out_dir, count, order)
        stats = _Tally()
        sorted_parts = []
        for i in range(count):
            sorted_parts.append(out_dir / f"{_TMP_PREFIX}sorted-{i}.tmp")
            _aggregate(out_dir / f"{_TMP_PREFIX}part-{i}.tmp", sorted_parts[-1], stats)
        target = out_dir / USERS
        tmp = out_dir / f"{_TMP_PREFIX}out.tmp"
        _merge(sorted_parts, tmp)
        os.replace(tmp, target)
    finally:
        _remove_temporaries(out_dir)
    return UsersStats(users=stats.users, fully_delivered=stats.fully,
                      partly_delivered=stats.partly, none_delivered=stats.none,
                      rows=read.rows, rows_without_user=read.without_user,
                      unreadable_rows=read.unreadable, partitions=count)


# ---- pass 1: rows to partitions -------------------------------------------------------


@dataclass(slots=True)
class _Read:
    rows: int = 0
    without_user: int = 0
    unreadable: int = 0


def _partition(sources: Sequence[Path], out_dir: Path, count: int,
               order: dict[str, int]) -> _Read:
    """Streams every row into the partition of its user, projected to what pass 2 needs:
    [key, pass, file index, file, line, userId, deviceId, is result, status or kind,
    vars, variants]."""
    read = _Read()
    with ExitStack() as stack:
        files: list[BinaryIO] = [
            stack.enter_context(open(out_dir / f"{_TMP_PREFIX}part-{i}.tmp", "wb",
                                     buffering=_BUFFER_BYTES))
            for i in range(count)]
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
                    key = projected[0]
                    i = zlib.crc32(key.encode("utf-8", "surrogatepass")) % count
                    files[i].write(orjson.dumps(projected) + b"\n")
    return read


def _project(line: bytes, *, is_result: bool, order: dict[str, int]) -> list[Any] | None:
    """A row as pass 2 reads it ([None, ...] for a row without user); None if unreadable."""
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(row, dict):
        return None
    user_id, device_id = _str_or_none(row.get("userId")), _str_or_none(row.get("deviceId"))
    file, line_no, pass_no = str(row.get("file")), _int(row.get("line")), row.get("pass", 1)
    variants = row.get("variants")
    return [user_id or device_id, _int(pass_no) or 1, order.get(file, len(order)), file,
            line_no, user_id, device_id, is_result,
            str(row.get("status") if is_result else row.get("kind")),
            _int(row.get("vars")), variants if isinstance(variants, list) else []]


# ---- pass 2: one partition at a time ---------------------------------------------------


@dataclass(slots=True)
class _Tally:
    users: int = 0
    fully: int = 0
    partly: int = 0
    none: int = 0

    def add(self, row: UserRow) -> None:
        self.users += 1
        if row.delivered == row.records:
            self.fully += 1
        elif row.delivered:
            self.partly += 1
        else:
            self.none += 1


class _User:
    """One user's rows so far; every choice depends on positions, never on row order.

    Lean on purpose (a partition can hold hundreds of thousands of users): the set of
    deviceIds and the failure counts exist only once they are needed.
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

    def __init__(self, position: Position) -> None:
        self.first = self.last = position
        self.has_user_id = False
        self.device: tuple[Position, str] | None = None  # the first deviceId, and where
        self.devices: set[str] | None = None  # once a second distinct deviceId is seen
        self.records = self.delivered = self.dry_run = 0
        self.failed: dict[str, int] | None = None
        self.response: tuple[Position, int, list[Any]] | None = None  # last delivered

    def add(self, p: list[Any], position: Position) -> None:
        """Counts one projected row (see `_partition`) found at `position`."""
        if position < self.first:
            self.first = position
        elif position > self.last:
            self.last = position
        self.has_user_id = self.has_user_id or p[5] is not None
        if p[6] is not None:
            self._add_device(p[6], position)
        self.records += 1
        if not p[7]:
            if self.failed is None:
                self.failed = {}
            self.failed[p[8]] = self.failed.get(p[8], 0) + 1
        elif p[8] == "delivered":
            self.delivered += 1
            if self.response is None or _later(position, p[9], p[10], self.response):
                self.response = (position, p[9], p[10])
        else:
            self.dry_run += 1

    def _add_device(self, device_id: str, position: Position) -> None:
        if self.device is None:
            self.device = (position, device_id)
            return
        if self.devices is not None:
            self.devices.add(device_id)
        elif device_id != self.device[1]:
            self.devices = {self.device[1], device_id}
        self.device = min(self.device, (position, device_id))

    def row(self, key: str) -> UserRow:
        """The user's users.ndjson row."""
        response = None
        if self.response is not None:
            response = LastResponse(self.response[1], tuple(self.response[2]))
        device_ids = len(self.devices) if self.devices else int(self.device is not None)
        return UserRow(
            user_id=key if self.has_user_id else None,
            device_id=None if self.device is None else self.device[1],
            device_ids=device_ids, records=self.records, delivered=self.delivered,
            failed=dict(self.failed or {}), first=Place(self.first[2], self.first[3]),
            last=Place(self.last[2], self.last[3]), last_response=response,
            dry_run=self.dry_run)


def _later(position: Position, vars: int, variants: list[Any],
           than: tuple[Position, int, list[Any]]) -> bool:
    """Whether a delivered row comes after `than`; a tie (the same line twice) is broken
    by content, so that any order of the rows gives one answer."""
    if position != than[0]:
        return position > than[0]
    return (vars, orjson.dumps(variants)) > (than[1], orjson.dumps(than[2]))


def _aggregate(part: Path, target: Path, tally: _Tally) -> None:
    """Aggregates one partition's rows per user; writes [first position, row] per user to
    `target`, in the order of first positions."""
    users: dict[str, _User] = {}
    files: dict[str, str] = {}  # one string per file name, not one per row kept
    with open(part, "rb") as f:
        for line in f:
            p = orjson.loads(line)
            position: Position = (p[1], p[2], files.setdefault(p[3], p[3]), p[4])
            user = users.get(p[0])
            if user is None:
                user = users[p[0]] = _User(position)
            user.add(p, position)
    part.unlink()  # its space is free before the next partition is read
    with open(target, "wb", buffering=_BUFFER_BYTES) as out:
        for key, user in sorted(users.items(), key=lambda item: (item[1].first, item[0])):
            row = user.row(key)
            tally.add(row)
            out.write(orjson.dumps([[*user.first, key], row.as_json()]) + b"\n")


def _merge(parts: Sequence[Path], target: Path) -> None:
    """Merges the sorted partitions into one file of user rows, first positions in order."""
    with ExitStack() as stack:
        streams = [_sorted_rows(stack.enter_context(open(p, "rb"))) for p in parts]
        merged = heapq.merge(*streams, key=lambda item: item[0])
        with open(target, "wb", buffering=_BUFFER_BYTES) as out:
            out.writelines(orjson.dumps(row) + b"\n" for _, row in merged)


def _sorted_rows(f: BinaryIO) -> Iterator[list[Any]]:
    for line in f:
        yield orjson.loads(line)  # [[pass, file index, file, line, key], row]


def _remove_temporaries(out_dir: Path) -> None:
    for path in out_dir.glob(f"{_TMP_PREFIX}*.tmp"):
        path.unlink(missing_ok=True)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
