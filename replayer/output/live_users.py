"""users.ndjson kept as the rows are written, for a run in one process or in workers.

The same users `write_users` would derive from the rows at the end, without reading
them again: the Finisher hands each row's user and outcome here, and it updates that
user's tally (a `UserSoFar` whose positions are packed into one int). Memory is bounded
for any number of users: the first `max_users` users are tallied in memory; the rows of
any later user go, as a few values, to that user's hash partition in the output folder
(a user stays where it started, so no tally is ever split). At the end each partition
is tallied on its own (one too big for memory is split again), every part is written in
the order of its users' first lines, and the parts merged.

A worker of a `--workers` run writes its users as a part (`write(..., part=True)`: still
in order, each with its first position) and its parent merges the parts (`merge_parts`),
so a run in workers does not read its rows again either. The lines are split by user, so
a user is one worker's, with one exception: the row of an invalid line counts for the
IDs that were valid (a userId too long to send is no user: the row goes by its
deviceId), while the line went to the worker of its userId. A worker lists the users it
tallied that are not its own; should one of them be in two parts, the merge gives up and
the parent derives the file from the rows instead.

A resumed run's tally starts from the rows its folder already holds, handed over one by
one as the resume reads and checks them (`prior`), so its end reads no row again either.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from replayer.output.user_rows import Place, UsersStats
from replayer.output.users import (
    PARTITION_BYTES,
    SPILL_PREFIX,
    RowCounts,
    Tally,
    UserSoFar,
    Where,
    input_order,
    merge_sorted,
    row_fields,
    sorted_rows,
    write_aggregated,
)
from replayer.records import REDACTED, KeyText

MAX_LIVE_USERS = 32_768  # users tallied in memory (~12 MB); later ones spill to the folder
MAX_FOREIGN = 65_536  # a worker's users of other workers it lists; past that it gives up
SPILL_PARTITIONS = 32  # hash partitions of the spilled rows
_SPLIT = 4  # a partition above PARTITION_BYTES at the end is split this many ways ...
_MAX_DEPTH = 2  # ... at most this many times (so at most 512 sorted parts to merge)
_LINE_BITS = 36  # line numbers below 2**36; then the file's index, then the pass
_MAX_LINE = (1 << _LINE_BITS) - 1
_MAX_PACKED = 1 << 63  # packed positions are spilled as JSON integers
_BUFFER_BYTES = 1 << 16


class LiveUsers:
    """Per-user tallies of this session's rows; `write` makes users.ndjson from them.

    `spill_dir`: where tallies go past `max_users` (the output folder); without one the
    tally gives up there, and the end derives the file from the rows instead. `owns`: a
    worker's test of whether a user (as users.ndjson keys it) is its own.
    """

    def __init__(self, inputs: Sequence[str], *, max_users: int | None = None,
                 key: KeyText | None = None, spill_dir: Path | None = None,
                 partitions: int = SPILL_PARTITIONS, partition_bytes: int = PARTITION_BYTES,
                 owns: Callable[[str], bool] | None = None) -> None:
        self._owns = owns
        self._foreign: set[str] = set()  # users tallied here that are not `owns`'s
        self._order = input_order(inputs)
        self._names = {index: name for name, index in self._order.items()}
        self._file_bits = max(1, len(self._order).bit_length())
        self._pass_shift = self._file_bits + _LINE_BITS
        self._bases = {name: index << _LINE_BITS for name, index in self._order.items()}
        # IDs as the rows show them: the key's text masked (no call at all without a key)
        self._key = key.key if key is not None and key.key else None
        self._max_users = MAX_LIVE_USERS if max_users is None else max_users
        self._users: dict[str, UserSoFar] = {}
        self._counts = RowCounts()
        self._spill_dir = spill_dir
        self._partitions = partitions
        self._partition_bytes = partition_bytes
        self._spills: list[BinaryIO] | None = None  # the partitions, once a user spills
        self._spill_stack = ExitStack()
        self._parts = 0  # sorted parts made at the end
        self.gave_up = False  # the end derives users.ndjson from the rows instead

    def row(self, user_id: Any, device_id: Any, file: str, line: int, pass_no: int, *,
            result: bool, what: str, vars: int = 0, variants: list[Any] | None = None) -> None:
        """One row written: a result (`what` its status) or a failure (`what` its kind)."""
        self._counts.rows += 1
        if type(user_id) is not str or not user_id:
            user_id = None
        if type(device_id) is not str or not device_id:
            device_id = None
        secret = self._key
        if secret is not None:  # KeyText.mask, without a call per ID
            if user_id is not None and secret in user_id:
                user_id = user_id.replace(secret, REDACTED)
            if device_id is not None and secret in device_id:
                device_id = device_id.replace(secret, REDACTED)
        key = user_id or device_id
        if key is None:
            self._counts.without_user += 1
            return
        if self.gave_up:
            return
        base = self._bases.get(file)
        if base is None:
            base = self._unknown_file(file) << _LINE_BITS
        position = (pass_no << self._pass_shift) | base | line
        if position >= _MAX_PACKED or line > _MAX_LINE:  # a --loop of ~2**20 passes
            self._give_up()
            return
        user = self._users.get(key)
        if user is None:
            if self._owns is not None and not self._owns(key):
                self._foreign.add(key)  # another worker's user: see merge_parts
                if len(self._foreign) > MAX_FOREIGN:  # memory stays bounded: derive instead
                    self._give_up()
                    return
            if len(self._users) >= self._max_users:
                self._spill(key, position, user_id is not None, device_id, result, what, vars,
                            variants or [])
                return
            user = self._users[key] = UserSoFar(position)
        user.count(position, user_id is not None, device_id, result, what, vars,
                   variants or [])

    def prior(self, row: dict[str, Any], *, result: bool) -> None:
        """A row an earlier session of this folder wrote (a resume reads each once): tallied
        as the end would read it from the file, so a resumed run does not read its rows
        again either. Its IDs were masked when it was written."""
        user_id, device_id, file, line, pass_no, what, vars, variants = row_fields(
            row, is_result=result)
        secret, self._key = self._key, None
        try:
            self.row(user_id, device_id, file, line, pass_no, result=result, what=what,
                     vars=vars, variants=variants)
        finally:
            self._key = secret

    def mask_with(self, key: KeyText) -> None:
        """The key whose text the IDs of the rows to come are masked for (a resume's tally is
        made, from the rows it reads, before the run knows its key)."""
        self._key = key.key or None

    def discard(self) -> None:
        """Closes and removes the spills of a tally that will not be written (a session that
        ended before its end: a refused resume, a failed start); after `write`, nothing."""
        self._spill_stack.close()
        if self._spills is not None and self._spill_dir is not None:
            for i in range(self._partitions):
                self._spill_path(str(i)).unlink(missing_ok=True)

    def _unknown_file(self, file: str) -> int:
        """Rows name the run's inputs; a name that is not one sorts after them, by name as
        `write_users` does, which one packed index can say for one such name only."""
        index = len(self._order)
        known = self._names.setdefault(index, file)
        if known != file or self._owns is not None:  # other workers may index it otherwise
            self._give_up()
        return index

    def _give_up(self) -> None:
        self.gave_up = True
        self._users.clear()
        self._spill_stack.close()

    def _place(self, position: Where) -> Place:
        assert isinstance(position, int)
        index = (position >> _LINE_BITS) & ((1 << self._file_bits) - 1)
        return Place(self._names[index], position & ((1 << _LINE_BITS) - 1))

    # ---- spilling ----------------------------------------------------------------------

    def _spill_path(self, name: str) -> Path:
        assert self._spill_dir is not None
        return self._spill_dir / f"{SPILL_PREFIX}{name}.tmp"

    def _spill(self, key: str, *row: Any) -> None:
        """Appends a row of a user not tallied in memory to that user's partition."""
        spills = self._spills
        if spills is None:
            if self._spill_dir is None:
                self._give_up()
                return
            spills = self._spills = [  # open for the rest of the run; closed by `write`
                self._spill_stack.enter_context(open(  # noqa: SIM115
                    self._spill_path(str(i)), "wb", buffering=_BUFFER_BYTES))
                for i in range(self._partitions)]
        i = zlib.crc32(key.encode("utf-8", "surrogatepass")) % self._partitions
        # written at once: orjson's output holds ~8 KB until it is freed (see sinks)
        spills[i].write(orjson.dumps((key, *row)) + b"\n")

    def _combine(self, part: Path, sorted_parts: list[Path], tally: Tally, depth: int) -> None:
        """Tallies one partition's rows into a part sorted by first position; a partition
        too big for memory is split first."""
        if part.stat().st_size > self._partition_bytes and depth < _MAX_DEPTH:
            subs = [self._spill_path(f"{part.stem.removeprefix(SPILL_PREFIX)}.{i}")
                    for i in range(_SPLIT)]
            with ExitStack() as stack, open(part, "rb") as f:
                outs: list[BinaryIO] = [stack.enter_context(open(s, "wb")) for s in subs]
                for line in f:
                    key = orjson.loads(line)[0]
                    outs[zlib.crc32(key.encode("utf-8", "surrogatepass"), depth + 1)
                         % _SPLIT].write(line)
            part.unlink()
            for sub in subs:
                self._combine(sub, sorted_parts, tally, depth + 1)
            return
        users: dict[str, UserSoFar] = {}
        with open(part, "rb") as f:
            for line in f:
                key, position, *row = orjson.loads(line)
                user = users.get(key)
                if user is None:
                    user = users[key] = UserSoFar(position)
                user.count(position, *row)
        part.unlink()
        self._write_part(users, sorted_parts, tally)

    def _write_part(self, users: dict[str, UserSoFar], sorted_parts: list[Path],
                    tally: Tally) -> None:
        target = self._spill_path(f"sorted-{self._parts}")
        self._parts += 1
        write_aggregated(users, target, tally, final=False, place=self._place)
        sorted_parts.append(target)

    # ---- the end -----------------------------------------------------------------------

    def write(self, target: Path, *, part: bool = False) -> UsersStats | None:
        """Writes the users to `target`; None when the tally gave up (derive instead).
        Spilled partitions are removed as they are merged. With `part`, as a worker's part
        for `merge_parts`: a line of its row counts, then [first position, row] lines."""
        if self.gave_up:
            return None
        tally = Tally()
        self._spill_stack.close()
        c = self._counts
        header = (orjson.dumps({"rows": c.rows, "rows_without_user": c.without_user,
                                "foreign": sorted(self._foreign)}) + b"\n"
                  if part else b"")
        if self._spills is None:
            write_aggregated(self._users, target, tally, final=not part, place=self._place,
                             header=header)
        else:
            sorted_parts: list[Path] = []
            try:
                self._write_part(self._users, sorted_parts, tally)
                for i in range(self._partitions):
                    self._combine(self._spill_path(str(i)), sorted_parts, tally, 0)
                merge_sorted(sorted_parts, target, keep_at=part, header=header)
            finally:
                for path in sorted_parts:
                    path.unlink(missing_ok=True)
        return UsersStats(users=tally.users, fully_delivered=tally.fully,
                          partly_delivered=tally.partly, none_delivered=tally.none,
                          rows=c.rows, rows_without_user=c.without_user, unreadable_rows=0,
                          partitions=0 if self._spills is None else self._partitions)


def merge_parts(parts: Sequence[Path], target: Path, *, rows: int) -> UsersStats | None:
    """users.ndjson from the workers' parts (`LiveUsers.write(..., part=True)`), merged in the
    order of the users' first lines: the bytes `write_users` would derive from the rows.

    None when the parts do not count `rows` rows between them (the rows the merged folder
    holds: then they are not the tallies of those rows), when a user is in two of them
    (one that a worker tallied as not its own: see the module's text), or when one cannot
    be read as a part.
    """
    try:
        return _merge_parts(parts, target, rows=rows)
    except (ValueError, KeyError, TypeError, IndexError):  # not a part: derive instead
        return None


def _merge_parts(parts: Sequence[Path], target: Path, *, rows: int) -> UsersStats | None:
    tally = Tally()
    counted = without = 0
    foreign: set[str] = set()
    with ExitStack() as stack:
        files = [stack.enter_context(open(p, "rb")) for p in parts]
        for f in files:
            head = orjson.loads(f.readline())
            counted += head["rows"]
            without += head["rows_without_user"]
            foreign.update(head["foreign"])
        if counted != rows:
            return None
        merged = heapq.merge(*(sorted_rows(f) for f in files), key=lambda item: item[0])
        seen: set[str] = set()
        with open(target, "wb", buffering=_BUFFER_BYTES) as out:
            for at, row in merged:
                if foreign and (key := at[-1]) in foreign:
                    if key in seen:
                        return None  # tallied in two parts: only the rows can say it whole
                    seen.add(key)
                tally.add_counts(row["records"], row["delivered"])
                out.write(orjson.dumps(row) + b"\n")
    return UsersStats(users=tally.users, fully_delivered=tally.fully,
                      partly_delivered=tally.partly, none_delivered=tally.none,
                      rows=counted, rows_without_user=without, unreadable_rows=0,
                      partitions=len(parts))
