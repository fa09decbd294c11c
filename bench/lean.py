"""A lean replayer: the yardstick for `replayer run`, batched or not, not a product path.

It does the essential work of `replayer run` with batching, in as little Python per
record as we know how: reads NDJSON lines; validates them as `replayer validate` does
(msgspec decodes and type-checks a whole chunk of lines into Structs in one C pass;
Python checks only what a type cannot say; a line the fast path does not accept goes
through replayer's own validator, so the verdicts are the same); keeps per-user lanes
with one request in flight per user; sends batches of up to 50 users / 500 actions
through `multi`; writes one journal line per request and one row per record
(results.ndjson, failures.ndjson); retries 429, 5xx and transport errors. With
`--no-batch`, one `start` call per record instead, the line's own bytes after the auth
fields, from a sender per `--concurrency` slot: the yardstick for `replayer run
--no-batch`, beside the bare client that does none of the work above but the sending.

Its means: the action sent is the line's own bytes when nothing needed normalising; a
lane holds (line number, row head bytes, action bytes); a request body is one join; an
answer is decoded into Structs holding only what rows need; a row is its head (encoded
once at intake) plus a tail (encoded once per distinct answer).

    LEANPLUM_APP_ID=... LEANPLUM_CLIENT_KEY=... \\
        python bench/lean.py FILE --endpoint http://127.0.0.1:PORT/api --out DIR [--no-batch]

One input file; prints `lines=N delivered=N failed=N requests=N`; exit code 0 when every
valid record was delivered, 1 otherwise. Needs the `bench` extra (msgspec).

Left out on purpose (the yardstick is for throughput): --rate and pacing, outage
detection, splitting a multi that is refused as too large (such records fail as
`forbidden`), resume, summary.json. An untimed record is sent with the time it was
read, not the time its request left.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import aiohttp
import msgspec
import orjson
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

from replayer.config.settings import Settings
from replayer.engine.classify import Outcome, Verdict, classify
from replayer.engine.retry import RetryPolicy
from replayer.engine.send import NO_LIMIT, Deadlines, auth_prefix, post
from replayer.output.sinks import invalid_row
from replayer.records import Attempt, KeyText, RawLine, Session
from replayer.source.fields import CHECKS, Problem
from replayer.source.read import display_name
from replayer.source.redact import may_name_secret
from replayer.source.validate import parse_line

DEFAULTS = Settings()
MAX_USERS = DEFAULTS.batch_users  # 50
MAX_ACTIONS = DEFAULTS.batch_actions  # 500
MAX_LINE_BYTES = DEFAULTS.max_line_bytes
CHUNK_LINES = 2048  # lines decoded in one C pass
MAX_PENDING = 32_768  # records read but not finished: intake waits above this
FLUSH_BYTES = 1 << 20  # rows buffered before one write

Id = Annotated[str, Meta(min_length=1, max_length=400)]
Seconds = Annotated[float, Meta(gt=0, le=1e11)]
Offset = Annotated[int, Meta(ge=-14 * 3600, le=14 * 3600)]


class Record(Struct, forbid_unknown_fields=True):
    """A `start` record as the fast path accepts it: every field typed as it is sent.

    What a type cannot say (time as an ISO string or a whole float, userAttributes and
    webPushSubscription, country and location, no ID at all) is looked at in Python; a
    line that fails the types goes to replayer's validator.
    """

    userId: Id | UnsetType = UNSET
    deviceId: Id | UnsetType = UNSET
    time: Seconds | str | UnsetType = UNSET
    devMode: bool | UnsetType = UNSET
    createDisposition: Literal["CreateIfNeeded", "CreateNever"] | UnsetType = UNSET
    appVersion: str | UnsetType = UNSET
    systemName: str | UnsetType = UNSET
    systemVersion: str | UnsetType = UNSET
    browserName: str | UnsetType = UNSET
    browserVersion: str | UnsetType = UNSET
    deviceName: str | UnsetType = UNSET
    deviceModel: str | UnsetType = UNSET
    iosPushToken: str | UnsetType = UNSET
    gcmRegistrationId: str | UnsetType = UNSET
    webPushSubscription: Raw | UnsetType = UNSET  # checked, an object sent as a string
    userAttributes: Raw | UnsetType = UNSET  # checked, sent as a compact string
    locale: str | UnsetType = UNSET
    country: str | UnsetType = UNSET
    region: str | UnsetType = UNSET
    city: str | UnsetType = UNSET
    location: str | UnsetType = UNSET
    locationAccuracyType: Literal["IP", "CELL", "GPS"] | UnsetType = UNSET
    timezone: str | UnsetType = UNSET
    timezoneOffsetSeconds: Offset | UnsetType = UNSET
    background: bool | UnsetType = UNSET
    includeDefaults: bool | UnsetType = UNSET


_LINES = msgspec.json.Decoder(list[Record])
_LINE = msgspec.json.Decoder(Record)
_COUNTRY, _LOCATION = CHECKS["country"], CHECKS["location"]
_ATTRIBUTES, _PUSH = CHECKS["userAttributes"], CHECKS["webPushSubscription"]
# A user's lines repeat their country, location and attributes: each distinct value is
# checked once (the caches are emptied when full, so they stay small).
_CACHE_SIZE = 8192
_good_places: set[str] = set()
_spliced: dict[bytes, bytes | None] = {}


class Variant(Struct):
    id: Any = None


class Element(Struct):
    """One answer element: only what a row or a verdict needs (vars are not decoded)."""

    success: Any = None
    error: Any = None
    warning: Any = None
    vars: dict[str, Raw] | None = None
    variants: list[Variant] | None = None


class Answer(Struct):
    response: list[Element]


_ANSWER = msgspec.json.Decoder(Answer)

# (line number, row head, action): the head is `{"file":…,"line":…,"userId":…,"deviceId":…,`
Entry = tuple[int, bytes, bytes]


def fast_line(r: Record, data: bytes, later_s: float) -> bytes | None:
    """The line as sent: its own bytes, or with userAttributes and webPushSubscription
    spliced in as the strings the validator makes of them; None when the validator
    must decide (a problem, or a normalisation the fast path does not do)."""
    t = r.time
    if type(t) is float:
        if t.is_integer() or t > later_s:  # whole seconds are rewritten; the future is refused
            return None
    elif t is not UNSET:
        return None
    if r.userId is UNSET and r.deviceId is UNSET:
        return None
    if ((r.country is not UNSET and r.country not in _good_places
         and not _good(r.country, _COUNTRY))
            or (r.location is not UNSET and r.location not in _good_places
                and not _good(r.location, _LOCATION))):
        return None
    if r.userAttributes is not UNSET:
        data = _splice(data, b'"userAttributes":', bytes(r.userAttributes), _ATTRIBUTES)
    if r.webPushSubscription is not UNSET and data:
        data = _splice(data, b'"webPushSubscription":', bytes(r.webPushSubscription), _PUSH)
    return data or None


def _good(value: str, check: Any) -> bool:
    if type(check(value)) is Problem:
        return False
    if len(_good_places) >= _CACHE_SIZE:
        _good_places.clear()
    _good_places.add(value)
    return True


def _splice(data: bytes, key: bytes, raw: bytes, check: Any) -> bytes:
    """`data` with the value `raw` of `key` replaced by what `check` makes of it (as JSON);
    b"" when the check finds a problem or the value is not where it is expected. A key
    cannot occur inside a string (its quotes would be escaped), only as a key."""
    at = data.find(key) + len(key)
    if data[at:at + len(raw)] != raw or data.count(key) != 1:
        return b""
    made = _spliced.get(raw, b"")
    if made == b"":
        value = check(orjson.loads(raw))
        made = None if type(value) is Problem else orjson.dumps(value)
        if len(_spliced) >= _CACHE_SIZE:
            _spliced.clear()
        _spliced[raw] = made
    return b"" if made is None else data[:at] + made + data[at + len(raw):]


class Lean:
    """The whole replayer: intake, lanes, batches, answers, rows."""

    def __init__(self, path: Path, out: Path, *, endpoint: str, app_id: str, key: str,
                 concurrency: int, retry: RetryPolicy, timeout_s: float,
                 batch: bool = True) -> None:
        self.path, self.file = path, display_name(str(path))
        self.file_json = orjson.dumps(self.file)
        self.batch = batch
        self.url = f"{endpoint}?action={'multi' if batch else 'start'}"
        self.max_users, self.max_actions = (MAX_USERS, MAX_ACTIONS) if batch else (1, 1)
        # Read on while fewer users than one request takes are ready (one per sender
        # without batching); an action is a `multi` element or, unbatched, the parameters.
        self.want_ready = MAX_USERS if batch else concurrency
        self.params_at = len(_START) if batch else 1
        self.auth = auth_prefix(app_id, key)
        self.key = KeyText(key)  # the key's text never reaches a row (one search per write)
        self.concurrency, self.retry, self.timeout_s = concurrency, retry, timeout_s
        self.deadlines = Deadlines(timeout_s)  # one timer for every request, as replayer
        self.rng = random.Random(0)
        out.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        self.results_fd = os.open(out / "results.ndjson", flags, 0o644)
        self.failures_fd = os.open(out / "failures.ndjson", flags, 0o644)
        self.journal_fd = os.open(out / "journal.log", flags, 0o644)
        self.results: list[bytes] = []
        self.failures: list[bytes] = []
        self.buffered = 0
        self.lanes: dict[str, deque[Entry]] = {}
        self.ready: deque[str] = deque()
        self.busy: set[str] = set()
        self.tries: dict[int, int] = {}  # line -> attempts so far, for records tried again
        self.pending = 0
        self.lines = self.delivered = self.failed = self.not_delivered = self.requests = 0
        self.source = open(path, "rb")  # noqa: SIM115 (closed in run)
        self.line_no = 0
        self.eof = False
        self.changed = asyncio.Event()

    # ---- intake ------------------------------------------------------------------------

    def fill(self) -> None:
        """Reads, validates and queues the next chunk of lines."""
        numbered: list[tuple[int, bytes]] = []
        source, line_no = self.source, self.line_no
        while len(numbered) < CHUNK_LINES:
            data = source.readline(MAX_LINE_BYTES + 1)
            if not data:
                self.eof = True
                break
            line_no += 1
            if len(data) > MAX_LINE_BYTES and not data.endswith(b"\n"):  # too long: not parsed
                while (rest := source.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                self.lines += 1
                self._invalid(RawLine(self.file, line_no, data[:MAX_LINE_BYTES], True), 0.0)
            elif data.strip():
                numbered.append((line_no, data[:-1] if data.endswith(b"\n") else data))
        self.line_no = line_no
        self.lines += len(numbered)
        if not numbered:
            return
        lines = [data for _, data in numbered]
        joined = b"\n".join(lines)
        try:  # the common case: every line of the chunk typed in one pass
            if (b"\r" in joined or b"\xef\xbb\xbf" in joined or may_name_secret(joined)
                    or not joined.startswith(b"{")
                    or joined.count(b"\n{") != len(lines) - 1):
                raise ValueError
            records: list[Record | None] = list(_LINES.decode(b"[" + b",".join(lines) + b"]"))
        except (msgspec.DecodeError, ValueError):
            records = [self._one(data) for data in lines]
        now_s = time.time()
        later = now_s + 86400.0
        batch = self.batch
        stamp = b'{"action":"start","time":' + orjson.dumps(now_s) + b","
        for (n, data), r in zip(numbered, records, strict=True):
            sent = fast_line(r, data, later) if r is not None else None
            if r is not None and sent is not None:
                user = r.userId or r.deviceId
                head = orjson.dumps({"file": self.file, "line": n, "userId": r.userId or None,
                                     "deviceId": r.deviceId or None})[:-1] + b","
                action = ((_START if r.time is not UNSET else stamp) + sent[1:] if batch
                          else sent)
            else:
                parsed = self._invalid(RawLine(self.file, n, data), now_s)
                if parsed is None:
                    continue
                user = parsed.user_id or parsed.device_id or ""
                head = orjson.dumps({"file": self.file, "line": n, "userId": parsed.user_id,
                                     "deviceId": parsed.device_id})[:-1] + b","
                # a valid record has an ID, so its body is never {}
                action = ((_START if parsed.time_s is not None else stamp) + parsed.body[1:]
                          if batch else parsed.body)
            lane = self.lanes.get(user)
            if lane is None:
                lane = self.lanes[user] = deque()
                self.ready.append(user)
            lane.append((n, head, action))
            self.pending += 1

    def _invalid(self, raw: RawLine, now_s: float) -> Session | None:
        """replayer's own validator: the Session, or None once the failure row is written."""
        parsed = parse_line(raw, now_s=now_s)
        if isinstance(parsed, Session):
            return parsed
        self._rows(False, orjson.dumps(invalid_row(parsed)) + b"\n", 1)
        return None

    @staticmethod
    def _one(data: bytes) -> Record | None:
        if data[:1] != b"{" or data.endswith(b"\r") or may_name_secret(data):
            return None
        try:
            return _LINE.decode(data)
        except msgspec.DecodeError:
            return None

    # ---- lanes and batches -------------------------------------------------------------

    def take(self) -> tuple[list[str], list[list[Entry]]] | None:
        """Up to max_users ready users, max_actions actions in all, each user's first ones."""
        if len(self.ready) < self.want_ready and not self.eof and self.pending < MAX_PENDING:
            self.fill()
        ready, lanes, busy = self.ready, self.lanes, self.busy
        if not ready:
            return None
        users: list[str] = []
        parts: list[list[Entry]] = []
        room, max_users = self.max_actions, self.max_users
        while ready and len(users) < max_users and room > 0:
            user = ready.popleft()
            lane = lanes[user]
            n = min(room, len(lane))
            parts.append([lane.popleft() for _ in range(n)])
            users.append(user)
            busy.add(user)
            room -= n
        return users, parts

    def free(self, user: str, back: list[Entry]) -> None:
        """Ends a user's request: records to try again go first, the user is ready again."""
        lane = self.lanes[user]
        if back:
            lane.extendleft(reversed(back))
        self.busy.discard(user)
        if lane:
            self.ready.append(user)
        else:
            del self.lanes[user]
        self.changed.set()

    async def worker(self, http: aiohttp.ClientSession) -> None:
        """Sends batches until the input is read and every record has its row."""
        while True:
            taken = self.take()
            if taken is None:
                if self.eof and not self.pending:
                    self.changed.set()  # wakes the other workers to end too
                    return
                self.changed.clear()
                await self.changed.wait()
                continue
            await self.send(http, *taken)

    async def send(self, http: aiohttp.ClientSession, users: list[str],
                   parts: list[list[Entry]]) -> None:
        entries = [e for part in parts for e in part]
        if self.batch:
            now = orjson.dumps(time.time())
            body = b"".join((self.auth, b',"time":', now, b',"data":[',
                             b",".join([e[2] for e in entries]), b"]}"))
        else:  # one record: the auth fields, then its parameters
            body = self.auth + b"," + entries[0][2][1:]
        _write(self.journal_fd,
               orjson.dumps([self.file, [e[0] for e in entries]]) + b"\n")
        self.requests += 1
        attempt = await post(http, self.url, body, self.deadlines)
        latency = orjson.dumps(round(attempt.latency_ms, 3))
        if attempt.status == 200 and attempt.body is not None and not (
                self.tries and any(e[0] in self.tries for e in entries)):
            answer = _answer(attempt.body)
            # The common case, one branch: as many elements as actions, all alike (compared
            # field by field in C), a plain success.
            if (answer is not None and len(answer) == len(entries)
                    and answer.count(answer[0]) == len(answer) and _plain(answer[0])):
                self._delivered_all(entries, answer[0], latency)
                for user in users:
                    self.free(user, [])
                return
        self._settle(users, parts, attempt, latency)

    def _delivered_all(self, entries: list[Entry], element: Element, latency: bytes) -> None:
        ids = [v.id for v in element.variants or ()]
        tail = (b'"status":"delivered","http_status":200,"attempts":1,"latency_ms":' + latency
                + b',"vars":' + str(len(element.vars or ())).encode()
                + b',"variants":' + orjson.dumps(ids) + b"}\n")
        self._rows(True, tail.join([e[1] for e in entries]) + tail, len(entries))
        self.pending -= len(entries)

    def _settle(self, users: list[str], parts: list[list[Entry]], attempt: Attempt,
                latency: bytes) -> None:
        """Any other answer: replayer's own classify, a row or a retry per record."""
        n = sum(len(p) for p in parts)
        outcomes = iter(classify(attempt, n))
        tails: dict[tuple[Any, ...], bytes] = {}
        for user, part in zip(users, parts, strict=True):
            back: list[Entry] = []
            retry_in = 0.0
            for entry in part:
                outcome = next(outcomes)
                tries = self.tries.pop(entry[0], 0) + 1
                verdict = outcome.verdict
                if verdict is Verdict.RETRYABLE or verdict is Verdict.AMBIGUOUS:
                    delay = self.retry.next_delay(tries, self.rng)
                    if delay is not None:  # waits, first in its lane; the lane waits too
                        self.tries[entry[0]] = tries
                        back.append(entry)
                        retry_in = max(retry_in, delay)
                        continue
                key = (verdict, outcome.kind, outcome.message, outcome.http_status, tries,
                       _element_key(outcome))
                tail = tails.get(key)
                if tail is None:
                    tail = tails[key] = _tail(outcome, tries, latency)
                delivered = verdict is Verdict.DELIVERED
                if delivered:
                    self._rows(True, entry[1] + tail, 1)
                else:
                    self.not_delivered += 1
                    self._rows(False, entry[1] + tail[:-2] + b',"record":{'
                               + entry[2][self.params_at:] + b"}\n", 1)
                self.pending -= 1
            if back:
                asyncio.get_running_loop().call_later(retry_in, self.free, user, back)
            else:
                self.free(user, [])

    # ---- rows --------------------------------------------------------------------------

    def _rows(self, delivered: bool, data: bytes, count: int) -> None:
        if delivered:
            self.results.append(data)
            self.delivered += count
        else:
            self.failures.append(data)
            self.failed += count
        self.buffered += len(data)
        if self.buffered >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        for fd, rows in ((self.results_fd, self.results), (self.failures_fd, self.failures)):
            if rows:
                _write(fd, self.key.mask_json(b"".join(rows)))
                rows.clear()
        self.buffered = 0

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0)
        try:
            async with (aiohttp.ClientSession(connector=connector,
                                              timeout=NO_LIMIT) as http,
                        asyncio.TaskGroup() as group):
                for _ in range(self.concurrency):
                    group.create_task(self.worker(http))
        finally:
            self.deadlines.close()
            self.flush()
            self.source.close()
            for fd in (self.results_fd, self.failures_fd, self.journal_fd):
                os.close(fd)


_START = b'{"action":"start",'


def _answer(body: bytes) -> list[Element] | None:
    try:
        return _ANSWER.decode(body).response
    except msgspec.DecodeError:
        return None


def _plain(element: Element) -> bool:
    return element.success is True and element.error is None and element.warning is None


def _element_key(outcome: Outcome) -> tuple[Any, ...]:
    element = outcome.element or {}
    variants = element.get("variants")
    ids = tuple(v.get("id") for v in variants if isinstance(v, dict)) \
        if isinstance(variants, list) else ()
    return len(element.get("vars") or {}), ids


def _tail(outcome: Outcome, tries: int, latency: bytes) -> bytes:
    """A row's tail after its head, newline included."""
    if outcome.verdict is Verdict.DELIVERED:
        n_vars, ids = _element_key(outcome)
        doc: dict[str, Any] = {"status": "delivered", "http_status": outcome.http_status,
                               "attempts": tries, "latency_ms": orjson.Fragment(latency),
                               "vars": n_vars, "variants": list(ids)}
    else:
        doc = {"kind": outcome.kind, "message": outcome.message,
               "http_status": outcome.http_status, "attempts": tries}
    return orjson.dumps(doc)[1:] + b"\n"


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path", type=Path)
    p.add_argument("--endpoint", required=True, help="the API URL, e.g. http://h:p/api")
    p.add_argument("--out", type=Path, required=True, help="folder for the rows and journal")
    p.add_argument("--concurrency", type=int, default=DEFAULTS.concurrency)
    p.add_argument("--max-attempts", type=int, default=DEFAULTS.max_attempts)
    p.add_argument("--backoff-base", type=float, default=DEFAULTS.backoff_base_s)
    p.add_argument("--timeout", type=float, default=DEFAULTS.timeout_s)
    p.add_argument("--no-batch", dest="batch", action="store_false",
                   help="one `start` call per record (the yardstick for replayer's --no-batch)")
    args = p.parse_args(list(argv) if argv is not None else None)
    lean = Lean(args.path, args.out, endpoint=args.endpoint,
                app_id=os.environ["LEANPLUM_APP_ID"], key=os.environ["LEANPLUM_CLIENT_KEY"],
                concurrency=args.concurrency, timeout_s=args.timeout, batch=args.batch,
                retry=RetryPolicy(max_attempts=args.max_attempts, base_s=args.backoff_base,
                                  max_s=max(args.backoff_base, DEFAULTS.backoff_max_s)))
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(lean.run())
    print(f"lines={lean.lines} delivered={lean.delivered} failed={lean.failed} "
          f"requests={lean.requests}", flush=True)
    return 0 if lean.delivered + lean.failed == lean.lines and not lean.not_delivered else 1


if __name__ == "__main__":
    sys.exit(main())
