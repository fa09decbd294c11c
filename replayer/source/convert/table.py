"""The events of one conversion as a table in DuckDB: duplicates dropped and sessions cut
by out-of-core queries, so neither the order of the input nor its size matters.

Accepted events are spooled to a JSON-lines file in a private temporary folder, loaded into
a DuckDB database file there (where DuckDB also spills), then read back sorted by session
start; memory is DuckDB's `memory_limit`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Self

import orjson

ENGINE_HINT = "convert needs DuckDB, a dependency of replayer: pip install 'duckdb>=1.1'"
DEFAULT_MEMORY_LIMIT = "512MB"
MEMORY_LIMIT = re.compile(r"\d+(\.\d+)?\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)", re.IGNORECASE)
_FETCH_ROWS = 10_000
_COLUMNS = ("{usr: 'VARCHAR', k: 'VARCHAR', t: 'DOUBLE', mark: 'BOOLEAN', dup: 'VARCHAR', "
            "f: 'INTEGER', n: 'BIGINT', uid: 'VARCHAR', did: 'VARCHAR', attrs: 'VARCHAR', "
            "ks: 'DOUBLE', data: 'VARCHAR'}")
_LOAD = """
CREATE TABLE ev AS
SELECT row_number() OVER () AS id, *, md5(data) AS h
FROM read_json(?, format='newline_delimited', columns={columns})
"""
# Sessions are cut on narrow rows (the line's bytes only as their hash), then joined back
# to the lines and sorted once: the window functions stay small, the sort spills. Ties on
# time are broken by the hash of the line's bytes, never by its place: the same events in
# any order give the same sessions, the same first events and the same copy of a duplicate.
# A change of user ID (a login, a logout, an identity merge) opens a session too: no
# event is put under a user who did not do it. A session starts at its first event, or at the earlier start its key names (ks) when it
# is its key's first session and that start is less than the gap earlier (no session spans
# a pause of the gap: a key further back names no start this export can vouch for).
_CUT = """
CREATE TABLE cut AS
WITH kept AS (
    SELECT id, usr, k, t, mark, h, ks, uid FROM ev
    QUALIFY dup IS NULL OR row_number() OVER (PARTITION BY usr, dup ORDER BY t, h, data) = 1
),
flagged AS (
    SELECT *, CASE WHEN lag(t) OVER w IS NULL OR t - lag(t) OVER w >= ?
                     OR (? AND mark AND k IS NULL)
                     OR uid IS DISTINCT FROM lag(uid) OVER w THEN 1 ELSE 0 END AS opens,
           lag(t) OVER w IS NULL AS key_first
    FROM kept WINDOW w AS (PARTITION BY usr, k ORDER BY t, h)
),
numbered AS (
    SELECT *, sum(opens) OVER (PARTITION BY usr, k ORDER BY t, h
                               ROWS UNBOUNDED PRECEDING) AS s
    FROM flagged
),
timed AS (
    SELECT *, min(t) OVER p AS first_t, bool_or(key_first) OVER p AS keyed
    FROM numbered WINDOW p AS (PARTITION BY usr, k, s)
)
SELECT id, usr, k, s, t, h, opens,
       CASE WHEN keyed AND ks < first_t AND first_t - ks < ? THEN ks ELSE first_t END AS start
FROM timed
"""
_SESSIONS = """
SELECT c.opens, c.start, e.t, e.uid, e.did, e.attrs, e.data, e.f, e.n
FROM cut c JOIN ev e USING (id)
ORDER BY c.start, c.usr, c.k NULLS FIRST, c.s, c.t, c.h, e.data
"""
_DUPLICATES = """
SELECT f, count(*) - count(*) FILTER (WHERE kept) FROM (
    SELECT f, row_number() OVER (PARTITION BY usr, dup ORDER BY t, h, data) = 1 AS kept
    FROM ev WHERE dup IS NOT NULL
) GROUP BY f ORDER BY f
"""


class EngineMissing(Exception):
    """DuckDB is not installed: the conversion cannot start (its message says what to do)."""

    def __init__(self) -> None:
        super().__init__(ENGINE_HINT)


class EngineFailure(Exception):
    """The engine could not finish (memory too small, temporary files not writable): one line."""


def engine_available() -> bool:
    """Whether DuckDB can be imported (checked before any output is opened)."""
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Row:
    """One accepted event as the table holds it; `opens` marks its session's first event."""

    opens: bool
    start_s: float  # its session's start
    time_s: float
    user_id: str | None
    device_id: str | None
    attributes: dict[str, Any] | None
    data: bytes
    file_no: int
    line_no: int


class EventTable:
    """Collects events (`add`), then gives them back as sessions' rows (`rows`); a context
    manager that removes its temporary folder."""

    def __init__(self, *, memory_limit: str, temp_dir: str | None = None) -> None:
        try:
            import duckdb
        except ImportError:
            raise EngineMissing() from None
        self._folder = tempfile.mkdtemp(prefix="replayer-convert-", dir=temp_dir)
        self._spool_path = os.path.join(self._folder, "events.ndjson")
        self._spool: IO[bytes] | None = open(self._spool_path, "wb")  # noqa: SIM115
        # A database file, not memory: the loaded table lives on disk past the memory limit.
        self._db = duckdb.connect(os.path.join(self._folder, "events.duckdb"), config={
            "memory_limit": memory_limit, "temp_directory": os.path.join(self._folder, "spill"),
            "preserve_insertion_order": False})
        self._db.execute("SET enable_progress_bar = false")
        self._loaded = False
        self._memory_limit = memory_limit
        self.events = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, _type: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Frees the connection and deletes every temporary file."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self._db.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def add(self, *, user: str, key: str | None, time_s: float, marker: bool,
            duplicate_key: str | None, file_no: int, line_no: int, user_id: str | None,
            device_id: str | None, attributes: dict[str, Any] | None, data: bytes,
            key_start_s: float | None = None) -> None:
        """Spools one accepted event (its line as read, to map its fields later);
        `key_start_s` is the start its session key names, if it names one."""
        assert self._spool is not None, "add() after rows()"
        self._spool.write(orjson.dumps({
            "usr": user, "k": key, "t": time_s, "mark": marker, "dup": duplicate_key,
            "f": file_no, "n": line_no, "uid": user_id, "did": device_id,
            "attrs": None if attributes is None else orjson.dumps(attributes).decode(),
            "ks": key_start_s, "data": data.decode()}, option=orjson.OPT_APPEND_NEWLINE))
        self.events += 1

    def _load(self) -> None:
        """Ends the spool and loads it into the table, once."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._loaded or not self.events:
            return
        with self._engine_errors():
            self._db.execute(_LOAD.format(columns=_COLUMNS), [self._spool_path])
        os.remove(self._spool_path)
        self._loaded = True

    def duplicates(self) -> dict[int, int]:
        """Copies dropped per file number: events with the user and duplicate key of an
        earlier (by time, then bytes) event."""
        self._load()
        if not self.events:
            return {}
        with self._engine_errors():
            found = self._db.execute(_DUPLICATES).fetchall()
        return {int(f): int(n) for f, n in found if n}

    @contextmanager
    def _engine_errors(self) -> Iterator[None]:
        """DuckDB's failures that end the conversion, as one line (EngineFailure)."""
        import duckdb
        try:
            yield
        except duckdb.OutOfMemoryException:
            raise EngineFailure(f"--memory-limit {self._memory_limit} is too small to sort "
                                "these events: give more") from None
        except duckdb.IOException as exc:
            raise EngineFailure(f"cannot spill to {self._folder}: {_first_line(exc)}") from None

    def rows(self, *, gap_s: float, markers: bool) -> Iterator[Row]:
        """Every kept event, sessions by start time, each session's events by time; a pause of
        `gap_s` or more, a marker (with `markers`, for events without a session key) or a
        change of user ID opens a session."""
        self._load()
        if not self.events:
            return
        with self._engine_errors():
            self._db.execute(_CUT, [gap_s, markers, gap_s])
            result = self._db.execute(_SESSIONS)
            batch = result.fetchmany(_FETCH_ROWS)
        while batch:
            for opens, start_s, time_s, uid, did, attrs, data, file_no, line_no in batch:
                yield Row(bool(opens), start_s, time_s, uid, did,
                          None if attrs is None else orjson.loads(attrs),
                          data.encode(), file_no, line_no)
            with self._engine_errors():
                batch = result.fetchmany(_FETCH_ROWS)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
