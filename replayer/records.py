"""The values that flow through a replay: an input line, a valid session, a failed record.

Pure: no I/O, no event loop. Every input line becomes exactly one `Session` or one
`RecordFailure`; a `Session` later ends as exactly one result row or failure row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple

import orjson

JSONObject = dict[str, Any]

# Parameters that belong to configuration, never to a record (docs/leanplum-api.md: secrets
# and configuration). A record carrying one of them is rejected without echoing it.
CONFIG_FIELDS = frozenset({"appId", "clientKey", "apiVersion"})
SECRET_FIELDS = frozenset({"clientKey"})
API_VERSION = "1.0.6"
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark: skipped where it starts a line


def line_body(data: bytes) -> bytes | memoryview:
    """A line's JSON text: without a BOM that starts it or a CR that ends it (a view, no copy)."""
    start = 3 if data.startswith(BOM) else 0
    end = len(data) - 1 if data.endswith(b"\r") else len(data)
    if start == 0 and end == len(data):
        return data  # the common line: neither a view nor a copy
    return memoryview(data)[start:end]


class FailureKind(StrEnum):
    """Every kind a failure row can carry: the closed set that outputs and summaries count.

    The validation kinds come first, in the order problems are ranked (a line's kind is
    the earliest of its problems); then the kinds of records that were sent, or were
    meant to be, and did not end delivered.
    """

    # validation: the line was never sent
    LINE_TOO_LONG = "line_too_long"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    SECRET_FIELD = "secret_field"
    CONFIG_FIELD = "config_field"
    UNKNOWN_FIELD = "unknown_field"
    MISSING_USER_ID = "missing_user_id"
    ID_TOO_LONG = "id_too_long"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    INVALID_ATTRIBUTE_NAME = "invalid_attribute_name"
    INVALID_TIME = "invalid_time"
    # not sent because of how the run was asked to go
    MISSING_TIME = "missing_time"  # --pace original and the record has no time
    # sent (or meant to be), not delivered
    WARNING = "warning"
    REJECTED = "rejected"
    CLIENT_ERROR = "client_error"
    FORBIDDEN = "forbidden"
    BLOCKED = "blocked"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    BAD_RESPONSE = "bad_response"
    RESPONSE_MISMATCH = "response_mismatch"
    INVALID_KEY = "invalid_key"
    AMBIGUOUS = "ambiguous"
    INTERRUPTED = "interrupted"


# Kinds of failures for passing reasons (the server, the network, its limits), not the
# record's: `replayer run --resume --retry-failed` sends those records again.
TRANSIENT_KINDS = frozenset({FailureKind.CONNECTION, FailureKind.TIMEOUT,
                             FailureKind.SERVER_ERROR, FailureKind.RATE_LIMITED})


class ExitCode(IntEnum):
    """The exit codes of `replayer run`, one meaning each (the CLI's --help lists them)."""

    OK = 0  # every record delivered
    FAILURES = 1  # some records failed; each is a row of failures.ndjson
    USAGE = 2  # usage, configuration, output-folder or resume error: nothing was sent
    INVALID_KEY = 3  # stopped: the API refused the access key
    INPUT = 4  # stopped: an input could not be read
    WORKER = 5  # a worker process died, or ended in a way nobody can vouch for
    THRESHOLD = 6  # a --fail-if threshold failed
    OUTPUT = 7  # stopped: an output could not be written (disk full, not writable, port)
    OUTAGE = 8  # stopped: the server stayed unreachable or failing for the outage limit
    SIGHUP = 129  # stopped by a signal: resumable
    SIGINT = 130
    SIGTERM = 143

    @property
    def state(self) -> str:
        """The run's state in summary.json: finished, interrupted or aborted."""
        if self in (ExitCode.OK, ExitCode.FAILURES, ExitCode.THRESHOLD):
            return "finished"
        if self in (ExitCode.SIGHUP, ExitCode.SIGINT, ExitCode.SIGTERM):
            return "interrupted"
        return "aborted"

    @property
    def resumable(self) -> bool:
        """True when the run stopped before its end and a resume would go on with it."""
        return self.state != "finished" and self is not ExitCode.USAGE

    @classmethod
    def of_child(cls, returncode: int | None) -> ExitCode:
        """A child process's exit status as an exit code: unknown, negative (killed by a
        signal) or not ours is never success, it is WORKER."""
        if returncode is None or returncode < 0:
            return cls.WORKER
        try:
            return cls(returncode)
        except ValueError:
            return cls.WORKER


# The most serious first: combined runs (workers, shards) exit with the worst of their parts.
SEVERITY: tuple[ExitCode, ...] = (
    ExitCode.WORKER, ExitCode.USAGE, ExitCode.OUTPUT, ExitCode.INVALID_KEY, ExitCode.INPUT,
    ExitCode.OUTAGE, ExitCode.SIGTERM, ExitCode.SIGHUP, ExitCode.SIGINT, ExitCode.THRESHOLD,
    ExitCode.FAILURES, ExitCode.OK,
)


def worst(codes: Iterable[int]) -> ExitCode:
    """The most serious of `codes` (each read by `ExitCode.of_child`); OK for none."""
    seen = {ExitCode.of_child(c) for c in codes}
    return next((c for c in SEVERITY if c in seen), ExitCode.OK)


class RawLine(NamedTuple):
    """One non-blank input line as read: where it came from and its bytes (line end removed).

    A NamedTuple, like Session: one is made per input line, and a NamedTuple's one-line
    __new__ is several times faster than a frozen dataclass's __init__.
    """

    file: str
    line_no: int
    data: bytes
    truncated: bool = False  # the line was longer than the reader's limit; `data` is a prefix
    pass_no: int = 1  # with --loop: which pass over the input this line belongs to


class Session(NamedTuple):
    """A valid record, ready to send as one `start` action (immutable).

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
        return orjson.loads(line_body(self.source))  # type: ignore[no-any-return]

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
    kind: FailureKind
    message: str
    record: JSONObject | None = None
    raw: str | None = None
    user_id: str | None = None
    device_id: str | None = None


class Attempt(NamedTuple):
    """What one HTTP call came back with: a status and body, or a transport error.

    `sent` is False only when the request certainly never reached the server
    (e.g. the connection was refused), which makes a retry free of duplicates.
    A NamedTuple, like RawLine: one is made per request, and a frozen dataclass's __init__
    (a setattr per field) cost four times as much as this __new__ given the fields in order.
    """

    status: int | None
    body: bytes | None
    error: str | None = None  # "timeout" | "connect" | "disconnected" | "transport" | "payload"
    detail: str = ""
    sent: bool = True
    latency_ms: float = 0.0
    retry_after: str | None = None  # the raw Retry-After header, parsed by retry.py


# --- secrets in text ----------------------------------------------------------------------

REDACTED = "[redacted]"
SECRET_NAMES_FOLDED = frozenset(name.lower() for name in CONFIG_FIELDS)
# The value after a name: quoted, single-quoted, unterminated (cut short) or bare, up to
# where it would end. Masking too much of a broken line is fine; masking too little is not.
_VALUE = r"""("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[^,}\]&\s]*)"""
# A name spelled out, in any case, then `:`, `=` or `,` (as in an array or a query string).
_NAMES = "|".join(sorted(CONFIG_FIELDS))
_NAMED = re.compile(rf"""(({_NAMES})[\\"']*\s*[:=,]\s*)""" + _VALUE, re.IGNORECASE)
# A quoted name and its value; one holding escapes (`"\u0063lientKey":`) is decoded and
# compared. (Any quoted name, so that the pattern stays linear on hostile input.)
_ESCAPED = re.compile(r"""("((?:[^"\\]|\\.)*)"\s*[:=]\s*)""" + _VALUE)


def redact_text(text: str) -> str:
    """`text` with the value after every clientKey, appId or apiVersion name masked.

    For text that is not a parsed object: broken lines, strings holding JSON, messages from
    a server. Any case, quoted or bare, cut short, or with the name written in escapes.
    """
    text = _NAMED.sub(_mask, text)
    return _ESCAPED.sub(_mask_escaped, text) if "\\" in text else text


_REDACTED_BYTES = REDACTED.encode()


@dataclass(frozen=True, slots=True)
class KeyText:
    """The client key's own text, masked wherever it stands in a row file or a user's ID.

    Validation cannot know that a value is the key when no name says so (a user attribute
    that holds it); the files written can. `KeyText(None)` masks nothing.
    """

    key: str | None
    # The key as it stands inside a JSON string (orjson writes no other escapes), made once:
    # a dry run masks every request body with it.
    _in_json: bytes | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_in_json", orjson.dumps(self.key)[1:-1] if self.key else None)

    def mask_json(self, data: bytes) -> bytes:
        """`data` (JSON text written by orjson) with every copy of the key masked."""
        needle = self._in_json
        return data.replace(needle, _REDACTED_BYTES) if needle and needle in data else data

    def mask(self, text: str) -> str:
        """`text` with every copy of the key masked."""
        return text.replace(self.key, REDACTED) if self.key and self.key in text else text


def secret_named_in(text: str) -> str | None:
    """The first clientKey, appId or apiVersion name (folded) with a value after it, else None."""
    match = _NAMED.search(text)
    if match is not None:
        return match.group(2).lower()
    if "\\" in text:
        for match in _ESCAPED.finditer(text):
            name = _unescaped(match.group(2))
            if name in SECRET_NAMES_FOLDED:
                return name
    return None


def _mask(match: re.Match[str]) -> str:
    return f'{match.group(1)}"{REDACTED}"'


def _mask_escaped(match: re.Match[str]) -> str:
    return _mask(match) if _unescaped(match.group(2)) in SECRET_NAMES_FOLDED else match.group(0)


def _unescaped(name: str) -> str:
    if "\\" not in name:
        return ""  # spelled out: _NAMED has seen it
    try:
        decoded = orjson.loads(f'"{name}"')
    except orjson.JSONDecodeError:
        return ""
    return decoded.lower() if isinstance(decoded, str) else ""
