"""users.ndjson kept as the rows are written, for a fresh run in one process.

The same users `write_users` would derive from the rows at the end, without reading
them again: the Finisher hands each row's user and outcome here. Memory is bounded: past
`max_users` distinct users the tally gives up, and the end derives the file from the
rows as before (so the bytes never depend on which way they were made).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from replayer.output.user_rows import UsersStats
from replayer.output.users import (
    Position,
    RowCounts,
    Tally,
    UserSoFar,
    input_order,
    write_aggregated,
)
from replayer.records import KeyText

MAX_LIVE_USERS = 32_768  # about 10 MB of tallies; more users: derived at the end


class LiveUsers:
    """Per-user tallies of this session's rows; `write` makes users.ndjson from them."""

    def __init__(self, inputs: Sequence[str], *, max_users: int = MAX_LIVE_USERS,
                 key: KeyText | None = None) -> None:
        self._order = input_order(inputs)
        self._key = key or KeyText(None)  # IDs as the rows show them: the key's text masked
        self._max_users = max_users
        self._users: dict[str, UserSoFar] = {}
        self._files: dict[str, str] = {}
        self._counts = RowCounts()
        self.gave_up = False

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
        index = self._order.get(file, len(self._order))
        position: Position = (pass_no, index, self._files.setdefault(file, file), line)
        user = self._users.get(key)
        if user is None:
            if len(self._users) >= self._max_users:
                self.gave_up = True
                self._users.clear()
                return
            user = self._users[key] = UserSoFar(position)
        user.add([key, pass_no, index, file, line, user_id, device_id, result, what, vars,
                  variants or []], position)

    def write(self, target: Path) -> UsersStats | None:
        """Writes the users to `target`; None when the tally gave up (derive instead)."""
        if self.gave_up:
            return None
        tally = Tally()
        write_aggregated(self._users, target, tally, final=True)
        c = self._counts
        return UsersStats(users=tally.users, fully_delivered=tally.fully,
                          partly_delivered=tally.partly, none_delivered=tally.none,
                          rows=c.rows, rows_without_user=c.without_user, unreadable_rows=0,
                          partitions=0)
