"""users.ndjson kept as the rows are written, for a fresh run in one process.

The same users `write_users` would derive from the rows at the end, without reading
them again: the Finisher hands each row's user and outcome here, and it updates that
user's tally (a `UserSoFar` whose positions are packed into one int). Memory is bounded
for any number of users: past `max_users` tallies in memory, all of them are spilled to
hash partitions in the output folder and memory starts again. At the end each
partition's tallies are merged per user (a partition too big for memory is split
again), written in the order of the users' first lines, and the partitions merged;
never a row read again.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
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
    write_aggregated,
)
from replayer.records import KeyText

MAX_LIVE_USERS = 65_536  # tallies in memory (~20 MB); more users spill to the folder
SPILL_PARTITIONS = 32  # hash partitions of the spilled tallies
_SPLIT = 4  # a partition above PARTITION_BYTES at the end is split this many ways ...
_MAX_DEPTH = 2  # ... at most this many times (so at most 512 sorted parts to merge)
_LINE_BITS = 36  # line numbers below 2**36; then the file's index, then the pass
_MAX_PACKED = 1 << 63  # packed positions are spilled as JSON integers
_BUFFER_BYTES = 1 << 16


class LiveUsers:
    """Per-user tallies of this session's rows; `write` makes users.ndjson from them.

    `spill_dir`: where tallies go past `max_users` (the output folder); without one the
    tally gives up there, and the end derives the file from the rows instead.
    """

    def __init__(self, inputs: Sequence[str], *, max_users: int | None = None,
                 key: KeyText | None = None, spill_dir: Path | None = None,
                 partitions: int = SPILL_PARTITIONS, partition_bytes: int = PARTITION_BYTES,
                 ) -> None:
        self._order = input_order(inputs)
        self._names = {index: name for name, index in self._order.items()}
        self._file_bits = max(1, len(self._order).bit_length())
        self._key = key or KeyText(None)  # IDs as the rows show them: the key's text masked
        self._max_users = MAX_LIVE_USERS if max_users is None else max_users
        self._users: dict[str, UserSoFar] = {}
        self._counts = RowCounts()
        self._spill_dir = spill_dir
        self._partitions = partitions
        self._partition_bytes = partition_bytes
        self._spilled: set[int] = set()  # partitions written to so far
        self._parts = 0  # sorted parts made at the end
        self.gave_up = False  # the end derives users.ndjson from the rows instead

    def row(self, user_id: Any, device_id: Any, file: str, line: int, pass_no: int, *,
            result: bool, what: str, vars: int = 0, variants: list[Any] | None = None) -> None:
        """One row written: a result (`what` its status) or a failure (`what` its kind)."""
        self._counts.rows += 1
        user_id = self._key.mask(user_id) if isinstance(user_id, str) and user_id else None
        device_id = self._key.mask(device_id) if isinstance(device_id, str) and device_id else None
        key = user_id or device_id
        if key is None:
            self._counts.without_user += 1
            return
        if self.gave_up:
            return
        index = self._order.get(file)
        if index is None:
            index = self._unknown_file(file)
        position = (((pass_no << self._file_bits) | index) << _LINE_BITS) | line
        if position >= _MAX_PACKED or line >> _LINE_BITS:  # a --loop of ~2**20 passes
            self._give_up()
            return
        user = self._users.get(key)
        if user is None:
            if len(self._users) >= self._max_users:
                self._spill()
                if self.gave_up:
                    return
            user = self._users[key] = UserSoFar(position)
        user.count(position, user_id is not None, device_id, result, what, vars,
                   variants or [])

    def _unknown_file(self, file: str) -> int:
        """Rows name the run's inputs; a name that is not one sorts after them, by name as
        `write_users` does, which one packed index can say for one such name only."""
        index = len(self._order)
        known = self._names.setdefault(index, file)
        if known != file:
            self._give_up()
        return index

    def _give_up(self) -> None:
        self.gave_up = True
        self._users.clear()

    def _place(self, position: Where) -> Place:
        assert isinstance(position, int)
        index = (position >> _LINE_BITS) & ((1 << self._file_bits) - 1)
        return Place(self._names[index], position & ((1 << _LINE_BITS) - 1))

    # ---- spilling ----------------------------------------------------------------------

    def _spill_path(self, name: str) -> Path:
        assert self._spill_dir is not None
        return self._spill_dir / f"{SPILL_PREFIX}{name}.tmp"

    def _spill(self) -> None:
        """Appends every tally in memory to its user's partition and forgets them."""
        if self._spill_dir is None:
            self._give_up()
            return
        with ExitStack() as stack:
            # Written at once: orjson's output holds ~8 KB until it is freed (see sinks).
            files: list[BinaryIO] = [
                stack.enter_context(open(self._spill_path(str(i)),
                                         "ab" if i in self._spilled else "wb",
                                         buffering=_BUFFER_BYTES))
                for i in range(self._partitions)]
            for key, user in self._users.items():
                i = zlib.crc32(key.encode("utf-8", "surrogatepass")) % self._partitions
                files[i].write(orjson.dumps(_doc(key, user)) + b"\n")
        self._users.clear()
        self._spilled.update(range(self._partitions))

    def _combine(self, part: Path, sorted_parts: list[Path], tally: Tally, depth: int) -> None:
        """Merges one partition's tallies per user into a part sorted by first position;
        a partition too big for memory is split first."""
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
                key, user = _of_doc(orjson.loads(line))
                have = users.get(key)
                if have is None:
                    users[key] = user
                else:
                    have.merge(user)
        part.unlink()
        target = self._spill_path(f"sorted-{self._parts}")
        self._parts += 1
        write_aggregated(users, target, tally, final=False, place=self._place)
        sorted_parts.append(target)

    # ---- the end -----------------------------------------------------------------------

    def write(self, target: Path) -> UsersStats | None:
        """Writes the users to `target`; None when the tally gave up (derive instead).
        Spilled partitions are removed as they are merged."""
        if self.gave_up:
            return None
        tally = Tally()
        if not self._spilled:
            write_aggregated(self._users, target, tally, final=True, place=self._place)
        else:
            self._spill()
            sorted_parts: list[Path] = []
            try:
                for i in sorted(self._spilled):
                    self._combine(self._spill_path(str(i)), sorted_parts, tally, 0)
                merge_sorted(sorted_parts, target)
            finally:
                for path in sorted_parts:
                    path.unlink(missing_ok=True)
        c = self._counts
        return UsersStats(users=tally.users, fully_delivered=tally.fully,
                          partly_delivered=tally.partly, none_delivered=tally.none,
                          rows=c.rows, rows_without_user=c.without_user, unreadable_rows=0,
                          partitions=len(self._spilled))


def _doc(key: str, user: UserSoFar) -> list[Any]:
    """A tally as one spilled line (see `_of_doc`)."""
    return [key, user.first, user.last, user.has_user_id, user.device,
            sorted(user.devices) if user.devices else None, user.records, user.delivered,
            user.dry_run, user.failed, user.response]


def _of_doc(doc: list[Any]) -> tuple[str, UserSoFar]:
    user = UserSoFar(doc[1])
    user.last, user.has_user_id = doc[2], doc[3]
    user.device = (doc[4][0], doc[4][1]) if doc[4] else None
    user.devices = set(doc[5]) if doc[5] else None
    user.records, user.delivered, user.dry_run, user.failed = doc[6], doc[7], doc[8], doc[9]
    user.response = (doc[10][0], doc[10][1], doc[10][2]) if doc[10] else None
    return doc[0], user
