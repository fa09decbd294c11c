"""The values that flow through a replay: an input line, a valid session, a failed record.

Pure: no I/O, no event loop. Every input line becomes exactly one `Session` or one
`RecordFailure`; a `Session` later ends as exactly one result row or failure row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

JSONObject = dict[str, Any]

# Parameters that belong to configuration, never to a record (CONTRACT.md: secrets
# and configuration). A record carrying one of them is rejected without echoing it.
CONFIG_FIELDS = frozenset({"appId", "clientKey", "apiVersion"})
SECRET_FIELDS = frozenset({"clientKey"})
API_VERSION = "1.0.6"
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class RawLine:
    """One non-blank input line as read: where it came from and its bytes (line end removed)."""

    file: str
    line_no: int
    data: bytes
    truncated: bool = False  # the line was longer than the reader's limit; `data` is a prefix
    pass_no: int = 1  # with --loop: which pass over the input this line belongs to


@dataclass(frozen=True, slots=True)
class Session:
    """A valid record, ready to send as one `start` action.

    `body` holds the start parameters after normalisation (time in UNIX seconds,
    userAttributes JSON-encoded as the published schema wants) as an encoded JSON
    object, so a request is built by joining bytes; `source` is the line as read.
    Both together cost half the memory of parsed dicts; `params` and `record` parse
    them on the rare occasions (failure rows, tests) that need objects.
    """

    file: str
    line_no: int
    user_id: str | None
    device_id: str | None
    body: bytes
    source: bytes
    time_s: float | None = None
    pass_no: int = 1

    def in_pass(self, pass_no: int, suffix: str) -> Session:
        """This session for pass `pass_no` of a --loop run: its IDs carry `suffix`."""
        params = self.params
        for key in ("userId", "deviceId"):
            if params.get(key):
                params[key] += suffix
        body = bytes(memoryview(orjson.dumps(params)))  # exact size: see validate.parse_line
        return Session(self.file, self.line_no, params.get("userId"), params.get("deviceId"),
                       body, self.source, self.time_s, pass_no)

    @property
    def params(self) -> JSONObject:
        """The start parameters as an object."""
        return orjson.loads(self.body)  # type: ignore[no-any-return]

    @property
    def record(self) -> JSONObject:
        """The object as read (a valid record holds no secret to redact)."""
        data = self.source[3:] if self.source.startswith(_BOM) else self.source
        return orjson.loads(data.removesuffix(b"\r"))  # type: ignore[no-any-return]

    @property
    def lane(self) -> str:
        """The profile this session belongs to: userId, else deviceId (Leanplum's rule)."""
        return self.user_id if self.user_id else self.device_id  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class RecordFailure:
    """A line that will not be (or was not) delivered: where it was, why, and what it held.

    `record` is the parsed object when the line parsed (secret values replaced by "[redacted]"),
    else `raw` holds the line's text (decoded with replacement, possibly truncated).
    """

    file: str
    line_no: int
    kind: str
    message: str
    record: JSONObject | None = None
    raw: str | None = None
    user_id: str | None = None
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one HTTP call came back with: a status and body, or a transport error.

    `sent` is False only when the request certainly never reached the server
    (e.g. the connection was refused), which makes a retry free of duplicates.
    """

    status: int | None
    body: bytes | None
    error: str | None = None  # "timeout" | "connect" | "disconnected" | "transport" | "payload"
    detail: str = ""
    sent: bool = True
    latency_ms: float = 0.0
    retry_after: str | None = None  # the raw Retry-After header, parsed by retry.py
