"""The rows of users.ndjson: one per user (userId, else deviceId), as values, written and
read back; and `UsersStats`, what writing them did.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson


class Place(NamedTuple):
    """Where a line is: its file (as rows name it) and its line number (from 1). A
    NamedTuple: two are made per user written, cheaper than a frozen dataclass."""

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
        response = self.last_response
        return user_doc(self.user_id, self.device_id, self.device_ids, self.records,
                        self.delivered, self.failed, self.first, self.last,
                        None if response is None else (response.vars, response.variants),
                        self.dry_run)

    @classmethod
    def of_json(cls, doc: Any) -> UserRow | None:
        """A row read back from users.ndjson; None when it is not one."""
        if not isinstance(doc, dict):
            return None
        try:
            response = doc["last_response"]
            return cls(
                user_id=str_or_none(doc["userId"]), device_id=str_or_none(doc["deviceId"]),
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


def user_doc(user_id: str | None, device_id: str | None, device_ids: int, records: int,
             delivered: int, failed: dict[str, int], first: Place, last: Place,
             response: tuple[int, Sequence[Any]] | None, dry_run: int) -> dict[str, Any]:
    """A users.ndjson row as written (keys in a fixed order), from its values: the one
    writer of the format (`UserRow.as_json`, and the tallies' fast way, `UserSoFar.doc`)."""
    doc: dict[str, Any] = {
        "userId": user_id, "deviceId": device_id, "device_ids": device_ids,
        "records": records, "delivered": delivered, "failed": dict(sorted(failed.items())),
        "first": {"file": first.file, "line": first.line},
        "last": {"file": last.file, "line": last.line},
        "last_response": None if response is None else {
            "vars": response[0], "variants": list(response[1])},
    }
    if dry_run:
        doc["dry_run"] = dry_run
    return doc


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


def str_or_none(value: Any) -> str | None:
    """`value` when it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None
